"""Every stream gives identical results through SGLang 0.5.12's HiRadixCache and ours.

SGLang's own ``HiRadixCache`` runs from the wheel with a synchronous stand-in for its
cache controller (``radixlib/reference/hicache_side.py`` says what stands in and why).
For each workload x page size x write policy, a stream of two-tier operations (matches,
load-backs, inserts, locks, device and host evictions, the caller's page allocations) is
recorded and replayed through both caches; every outcome must be equal: matched device
length and pages, the host-only run after them, loaded pages, present lengths, each node
an eviction frees in order, the pages the device pool hands out, evictable, protected and
host sizes, and the tokens written and loaded so far; every 1,000 operations, the whole
trees (keys, device pages, host copy sizes, locks, hits, priorities, time order).

The last tests pin the deviations (``DEVIATIONS.md``, rows 14-17) on both sides.
"""
from __future__ import annotations

from collections import Counter

import pytest

from radixlib import POLICIES, PageAllocator
from radixlib.hicache import WRITE_POLICIES, HiRadixCache, host_pool_pages
from radixlib.radix_cache import token_array
from radixlib.reference.differential import compare
from radixlib.reference.hicache_side import (
    EvictHost,
    LoadBack,
    OursHiSide,
    load_sglang_hicache,
    record_hi_stream,
    sglang_hicache,
    sides,
)
from radixlib.reference.ops import Evict, Insert, Match
from radixlib.reference.streams import WORKLOADS

NUM_OPS = 4_000
PAGE_SIZES = (1, 16)
HOST_RATIOS = {"random": 1.0, "mooncake": 2.0, "chat": 2.0}    # random: a host barely larger than the device


@pytest.fixture(scope="module", autouse=True)
def sglang_hicache_module() -> None:
    load_sglang_hicache()


@pytest.mark.parametrize("write_policy", WRITE_POLICIES)
@pytest.mark.parametrize("page_size", PAGE_SIZES)
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_stream_gives_identical_results(workload: str, page_size: int, write_policy: str):
    ratio = HOST_RATIOS[workload]
    ops = record_hi_stream(workload, page_size, write_policy, NUM_OPS, host_ratio=ratio)
    counts = compare(ops, *sides(workload, page_size, write_policy, host_ratio=ratio))
    assert sum(counts.values()) >= NUM_OPS


OTHER_POLICIES = sorted(set(POLICIES) - {"lru"})
# Under write-back, mru and filo host-evict first the chain a load-back has just matched (the
# most recently used, the newest), whenever a load must evict and the host is full: row 16.
WRITE_BACK_POLICIES = [policy for policy in OTHER_POLICIES if policy not in ("mru", "filo")]


@pytest.mark.parametrize("write_policy, eviction", [("write_through", policy) for policy in OTHER_POLICIES]
                         + [("write_back", policy) for policy in WRITE_BACK_POLICIES])
def test_every_eviction_policy_orders_both_tiers_alike(write_policy: str, eviction: str):
    """A host 4x the device under write-back, so that few loads need a host eviction (row 16)."""
    ratio = 4.0 if write_policy == "write_back" else 2.0
    ops = record_hi_stream("chat", 16, write_policy, 2_000, eviction, host_ratio=ratio)
    compare(ops, *sides("chat", 16, write_policy, eviction, host_ratio=ratio))


CASES = ["host hit", "load back", "load back skipped or failed", "load back evicts first",
         "insert over a host-only node", "host eviction for a write", "host eviction asked"]


@pytest.mark.parametrize("write_policy", WRITE_POLICIES)
def test_streams_exercise_every_case(write_policy: str):
    seen = Counter()
    for workload in ("random", "chat"):
        ratio = HOST_RATIOS[workload]
        ops = record_hi_stream(workload, 16, write_policy, NUM_OPS, host_ratio=ratio)
        seen += census(ops, OursHiSide(WORKLOADS[workload].capacity_tokens // 16, 16, write_policy, "lru", ratio))
    expected = CASES + (["write-back on eviction"] if write_policy == "write_back" else [])
    assert {case: seen[case] for case in expected if seen[case] < 10} == {}


def census(ops, side: OursHiSide) -> Counter[str]:
    """The cases a stream exercises, read off our cache's counters as it replays the stream."""
    seen: Counter[str] = Counter()
    cache = side.cache
    for index, op in enumerate(ops):
        before = (cache.written_tokens, cache.host_evicted_tokens, cache.allocator.available)
        over_host_only = isinstance(op, Insert) and any(
            node.evicted for node, _ in cache._walk(cache._aligned(token_array(list(op.tokens))))[0])
        outcome = side.apply(index, op)
        written, host_evicted = cache.written_tokens - before[0], cache.host_evicted_tokens - before[1]
        match op:
            case Match() if outcome.result.host_len:
                seen["host hit"] += 1
            case LoadBack() if outcome.result.pages:
                seen["load back"] += 1
                seen["load back evicts first"] += before[2] < len(outcome.result.pages)
            case LoadBack():
                seen["load back skipped or failed"] += 1
            case Insert() if over_host_only:
                seen["insert over a host-only node"] += 1
            case Evict() if written:
                seen["write-back on eviction"] += 1
            case EvictHost() if host_evicted:
                seen["host eviction asked"] += 1
        seen["host eviction for a write"] += bool(host_evicted and written)
    return seen


@pytest.mark.parametrize("num_pages, page_size, ratio, size_gb", [
    (4096, 1, 2.0, 0), (512, 16, 1.0, 0), (100, 16, 4.0, 0), (100, 16, 2.0, 0.01)])
def test_the_host_pool_is_sized_as_sglang_sizes_it(num_pages, page_size, ratio, size_gb):
    """``HostKVCache.__init__``: ``hicache_size`` GB over the bytes per token, else ratio x
    the device pool, then whole pages plus one."""
    host = sglang_hicache(num_pages, page_size, "write_through", host_ratio=ratio, host_size_gb=size_gb)
    ours = host_pool_pages(num_pages, page_size, ratio, int(size_gb * 1e9), bytes_per_token=1024)
    assert host.token_to_kv_pool_host.page_num == ours


# ------------------------------------------------------------ the deviations
def test_14_sglang_locks_a_node_while_its_write_is_in_flight_radixlib_copies_at_once():
    sg = load_sglang_hicache()
    theirs = sglang_hicache(64, 1, "write_through")
    theirs.insert(sg.InsertParams(key=sg.RadixKey(list(range(12))), value=theirs.cache_controller
                                  .mem_pool_device_allocator.alloc(12)))
    assert theirs.protected_size() == 12                   # locked until the copy is acknowledged
    theirs.check_hicache_events()
    assert theirs.protected_size() == 0 and theirs.evictable_size() == 12
    ours = HiRadixCache(PageAllocator(64), PageAllocator(host_pool_pages(64, 1)))
    ours.insert(list(range(12)), ours.allocator.alloc(12))
    assert ours.protected_size == 0 and ours.host_size == 12
    # Agreement: after the scheduler's event check, which every stream runs after every operation.


def test_15_sglang_refuses_a_host_pool_no_larger_than_the_device_pool():
    with pytest.raises(AssertionError, match="larger than the device"):
        sglang_hicache(64, 1, "write_through", host_ratio=0.5)
    ours = HiRadixCache(PageAllocator(64), PageAllocator(host_pool_pages(64, 1, ratio=0.5)))
    ours.insert(list(range(12)), ours.allocator.alloc(12))
    assert ours.host_size == 12
    # Agreement: every host pool larger than the device pool (every stream).


def test_16_a_write_back_eviction_inside_a_load_back_may_host_evict_the_chain_being_loaded():
    """Device 24 tokens, host 25: X and W host-only (12 each), Y fills the device. Loading X
    must evict Y, whose write-back needs 24 host tokens: SGLang's ``evict_host`` deletes W and
    then X itself, writes Y over X's freed host slots, and loads X from them; X is no longer in
    the tree. radixlib holds the chain's host copies meanwhile: W goes, Y does not fit, X stays."""
    sg = load_sglang_hicache()
    x, w, y = list(range(12)), list(range(100, 112)), list(range(200, 224))
    theirs = sglang_hicache(24, 1, "write_back", host_ratio=1.0)
    alloc = theirs.cache_controller.mem_pool_device_allocator.alloc
    for tokens in (x, w):
        theirs.insert(sg.InsertParams(key=sg.RadixKey(tokens), value=alloc(12)))
        theirs.evict(sg.EvictParams(num_tokens=12))
    theirs.insert(sg.InsertParams(key=sg.RadixKey(y), value=alloc(24)))
    found = theirs.match_prefix(sg.MatchPrefixParams(key=sg.RadixKey(x)))
    loaded, node = theirs.init_load_back(sg.InitLoadBackParams(best_match_node=found.best_match_node,
                                                               host_hit_length=found.host_hit_length))
    assert len(loaded) == 12 and node not in theirs.root_node.children.values()    # loaded, yet gone

    ours = HiRadixCache(PageAllocator(24), PageAllocator(host_pool_pages(24, 1, 1.0)), "write_back")
    for tokens in (x, w):
        ours.insert(tokens, ours.allocator.alloc(12))
        ours.evict(12)
    ours.insert(y, ours.allocator.alloc(24))
    found = ours.match_prefix(x)
    assert ours.init_load_back(found.host_node) == ([], ours.root)
    assert found.host_node.evicted and ours.root.children[x[0]] is found.host_node
    assert w[0] not in ours.root.children and ours.match_prefix(y).prefix_len == 24
    ours.check_invariants(held=[])
    # Agreement: loads that need no host eviction to make device room (every stream).
