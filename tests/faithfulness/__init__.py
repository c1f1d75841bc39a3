"""Faithfulness: the same operations through SGLang 0.5.12's own code and through ours.

The machinery (SGLang loaded from its wheel, both sides, streams, the comparison) is
``radixlib.reference``; ``benchmarks/faithful_ops.py`` times the same streams.
"""
