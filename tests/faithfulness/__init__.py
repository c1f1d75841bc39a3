"""Faithfulness: the same operations through SGLang 0.5.12's RadixCache and through ours.

    ops.py             the operations a stream is made of, and the outcomes the two sides report
    ours.py            our RadixCache as one side of the comparison
    sglang_adapter.py  SGLang's own RadixCache, imported from the wheel, as the other side
    streams.py         seeded operation streams, played the way a serving engine plays them
    differential.py    runs a stream through both sides and names the first difference

``benchmarks/faithful_ops.py`` times the same streams through both sides.
"""
