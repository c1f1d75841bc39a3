"""Our RadixCache against SGLang 0.5.12's own, on the faithfulness streams.

    python benchmarks/faithful_ops.py [--ops 20000] [--rounds 5] [--eviction lru]

Each stream (radixlib/reference/streams.py: random, mooncake, chat) is recorded once,
checked to give identical results on both caches, then replayed through fresh caches,
the two alternating round by round in this one process. Only the cache calls are timed; each side's arguments
are built beforehand in its own form (token lists and page ids for ours, RadixKey and
slot tensors for SGLang). ops/s per operation type is the best of the rounds.

radixlib runs over its real ``PageAllocator``: page validation and the frees of ``evict``
are in its figures. SGLang frees into a stand-in that only records (its real allocator is
torch code that would only slow it down), so the comparison leans SGLang's way. The
caller's own allocations and frees between cache calls are not timed on either side.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence

from radixlib.reference.differential import compare
from radixlib.reference.ops import CACHE_OPS, Op, Side
from radixlib.reference.sglang import sglang_unavailable
from radixlib.reference.sides import OursSide, SGLangSide
from radixlib.reference.streams import WORKLOADS, record_stream

PAGE_SIZES = (1, 16)
KINDS = [kind.__name__ for kind in CACHE_OPS]


def replay(side: Side, ops: Sequence[Op], args: list[tuple]) -> dict[str, float]:
    """Seconds spent in the cache calls, per operation type."""
    spent: dict[str, float] = defaultdict(float)
    clock = time.perf_counter
    for index, (op, arg) in enumerate(zip(ops, args)):
        start = clock()
        side.call(index, op, arg)
        spent[type(op).__name__] += clock() - start
    return spent


def measure(workload: str, page_size: int, eviction: str, num_ops: int, rounds: int) -> list[str]:
    """Markdown rows for one stream and page size."""
    ops = record_stream(workload, page_size, eviction, num_ops)
    num_pages = WORKLOADS[workload].capacity_tokens // page_size
    compare(ops, OursSide(num_pages, page_size, eviction), SGLangSide(page_size, eviction))
    sides = {"radixlib": lambda: OursSide(num_pages, page_size, eviction),
             "SGLang": lambda: SGLangSide(page_size, eviction)}
    args = {name: list(map(make().prepare, ops)) for name, make in sides.items()}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for _ in range(rounds):                                  # interleaved, round by round
        for name, make in sides.items():
            runs[name].append(replay(make(), ops, args[name]))
    counts = {kind: sum(type(op).__name__ == kind for op in ops) for kind in KINDS}
    counts["all"] = sum(counts.values())
    rows = []
    for kind, n in counts.items():
        ours, theirs = (n / min(_seconds(run, kind) for run in runs[name]) for name in sides)
        rows.append(f"| {workload} | {page_size} | {kind} | {n} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x |")
    return rows


def _seconds(run: dict[str, float], kind: str) -> float:
    return sum(run.get(k, 0.0) for k in KINDS) if kind == "all" else run[kind]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000, help="cache operations per stream")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--eviction", default="lru")
    args = parser.parse_args()
    if reason := sglang_unavailable():
        sys.exit(reason)
    print(f"eviction {args.eviction}, at least {args.ops} cache ops per stream, best of {args.rounds} rounds\n")
    print("| stream | page size | operation | ops | radixlib ops/s | SGLang ops/s | radixlib/SGLang |")
    print("|---|---|---|---|---|---|---|")
    for workload in WORKLOADS:
        for page_size in PAGE_SIZES:
            print("\n".join(measure(workload, page_size, args.eviction, args.ops, args.rounds)), flush=True)
    print("\nBoth caches gave identical results on every stream (checked before timing).")


if __name__ == "__main__":
    main()
