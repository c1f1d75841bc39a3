"""Every stream gives identical results through SGLang 0.5.12's RadixCache and ours.

For each workload x page size x eviction policy, a stream of at least ``NUM_OPS``
cache operations is recorded and replayed through both caches; every operation's
outcome (matched length and pages, the node's edge length, the present length of an
insert, each node an evict frees in order, evictable and protected sizes) must be
equal, and every ``TREE_CHECK_EVERY`` operations so must the total sizes and the
whole trees. The first difference fails the test with its index and both answers.
"""
from __future__ import annotations

from collections import Counter

import pytest

from radixlib import POLICIES
from radixlib.reference.differential import compare
from radixlib.reference.ops import CACHE_OPS, Evict, Insert, Match, Op
from radixlib.reference.sides import OursSide, SGLangSide
from radixlib.reference.streams import WORKLOADS, record_stream

NUM_OPS = 20_000
PAGE_SIZES = (1, 16)


@pytest.mark.parametrize("eviction", sorted(POLICIES))
@pytest.mark.parametrize("page_size", PAGE_SIZES)
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_stream_gives_identical_results(workload: str, page_size: int, eviction: str):
    ops = record_stream(workload, page_size, eviction, NUM_OPS)
    ours = OursSide(WORKLOADS[workload].capacity_tokens // page_size, page_size, eviction)
    counts = compare(ops, ours, SGLangSide(page_size, eviction))
    assert sum(counts.values()) >= NUM_OPS
    assert set(counts) == {kind.__name__ for kind in CACHE_OPS}


CASES = ["match ends inside a node", "match misses", "insert of a present key",
         "evict frees more than asked", "evict runs out of unlocked leaves"]
EXERCISED = {"random": CASES,     # built to exercise every case
             "mooncake": [c for c in CASES if c != "insert of a present key"],   # at page size 1
                                  # a trace request's fresh output tail is never present
             "chat": CASES}       # a regenerated answer re-inserts a cached prompt; new chats miss


@pytest.mark.parametrize("page_size", PAGE_SIZES)
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_stream_exercises_every_case(workload: str, page_size: int):
    ops = record_stream(workload, page_size, "lru", NUM_OPS)
    seen = census(ops, OursSide(WORKLOADS[workload].capacity_tokens // page_size, page_size, "lru"))
    assert {case: seen[case] for case in EXERCISED[workload] if seen[case] < 10} == {}


def census(ops: list[Op], side: OursSide) -> Counter[str]:
    """The cases a stream exercises, read off our cache as it replays the stream.

    The cache's logical clock ticks once per lookup and once per new node, so a
    lookup that took two ticks split the node it ended in.
    """
    seen: Counter[str] = Counter()
    page_size = side.allocator.page_size
    for index, op in enumerate(ops):
        before = side.cache.clock
        outcome = side.apply(index, op)
        match op:
            case Match() if side.cache.clock - before == 2:
                seen["match ends inside a node"] += 1
            case Match() if outcome.result.length == 0:
                seen["match misses"] += 1
            case Insert(tokens) if outcome.result == len(tokens) - len(tokens) % page_size > 0:
                seen["insert of a present key"] += 1
            case Evict(num_tokens) if outcome.result.freed > num_tokens:
                seen["evict frees more than asked"] += 1
            case Evict(num_tokens) if outcome.result.freed < num_tokens:
                seen["evict runs out of unlocked leaves"] += 1
    return seen
