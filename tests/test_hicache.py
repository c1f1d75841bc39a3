"""The two-tier cache (``radixlib.hicache``): SGLang's HiRadixCache semantics, pinned.

Each unit test names the SGLang 0.5.12 function (``mem_cache/hiradix_cache.py`` unless
said otherwise) whose behaviour it pins; ``tests/faithfulness/test_hicache_faithfulness.py``
replays long streams through SGLang's own class. The property test runs random operation
sequences against a naive two-tier reference and checks every invariant after every
operation. The model test proves that a load-back moves the real K/V bytes.
"""
from __future__ import annotations

import pytest
from helpers import insert_tokens
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radixlib import POLICIES, OutOfPages, PageAllocator
from radixlib.hicache import (
    LOAD_BACK_THRESHOLD,
    WRITE_POLICIES,
    HiRadixCache,
    HiRouter,
    hi_replay,
    host_pool_pages,
    kv_transfer,
    should_load_back,
    tiered_hit_rates,
)
from radixlib.radix_cache import InvariantError
from radixlib.replay import replay
from radixlib.workloads import block_tokens


def make(num_pages: int = 32, host_pages: int = 64, page_size: int = 1, write_policy: str = "write_through",
         eviction: str = "lru", **kwargs) -> HiRadixCache:
    return HiRadixCache(PageAllocator(num_pages, page_size), PageAllocator(host_pages, page_size),
                        write_policy, eviction, **kwargs)


def node_of(cache: HiRadixCache, tokens: list[int]):
    """The node whose edge ends exactly at ``tokens`` (read without touching the tree)."""
    node, length = cache.root, 0
    while length < len(tokens):
        node = node.children[cache._child_key(tokens, length)]
        length += len(node.key)
    assert length == len(tokens)
    return node


A, B, C = list(range(1, 13)), list(range(1, 7)) + list(range(50, 56)), list(range(80, 92))


# ----------------------------------------------------------- write policies
def test_write_through_backs_up_on_the_first_insert():
    """``_inc_hit_count``: threshold 1 for write_through; ``insert`` counts a hit on the new leaf."""
    cache = make()
    insert_tokens(cache, A)
    node = node_of(cache, A)
    assert node.backuped and not node.evicted and node.hits == 1
    assert cache.host_size == cache.written_tokens == 12
    cache.check_invariants(held=[])


def test_write_through_selective_backs_up_on_the_second_hit():
    """threshold 2 (``write_through_threshold``): the first insert writes nothing, the second does."""
    cache = make(write_policy="write_through_selective")
    insert_tokens(cache, A)
    assert not node_of(cache, A).backuped and cache.written_tokens == 0
    insert_tokens(cache, A)
    assert node_of(cache, A).backuped and cache.written_tokens == 12


def test_write_back_writes_only_when_it_evicts_and_counts_no_hits():
    """``_inc_hit_count`` returns at once under write_back; ``evict`` writes the victim first."""
    cache = make(write_policy="write_back")
    insert_tokens(cache, A)
    insert_tokens(cache, A)
    node = node_of(cache, A)
    assert not node.backuped and node.hits == 0 and cache.written_tokens == 0
    assert cache.evict(1) == 12
    assert node.evicted and node.backuped and cache.written_tokens == 12
    assert cache.total_size == 0 and cache.host_size == 12
    cache.check_invariants(held=[])


def test_a_node_is_backed_up_only_under_a_backed_up_parent():
    """``write_backup``: outside write-back it skips a node whose parent has no host copy."""
    cache = make(write_policy="write_through_selective")
    insert_tokens(cache, A)                       # [1..12]: 1 hit
    insert_tokens(cache, B)                       # splits [1..6] (2 hits: written) / [7..12] (1 hit)
    insert_tokens(cache, B)                       # [50..55] reaches 2 hits under the written [1..6]
    assert node_of(cache, A[:6]).backuped and node_of(cache, B).backuped
    assert not node_of(cache, A).backuped
    small = make(host_pages=4, write_policy="write_through_selective")
    insert_tokens(small, A[:6])
    insert_tokens(small, A)                       # [1..6]: 2 hits, but 6 tokens do not fit in 4 pages
    insert_tokens(small, A[:10])                  # [7..10]: 2 hits and room, but its parent has no copy
    assert small.host_size == 0 and node_of(small, A[:10]).hits == 2
    small.check_invariants(held=[])


def test_a_node_too_big_for_the_host_stays_unwritten_and_its_prefix_is_written_later():
    cache = make(host_pages=6)                    # room for [1..6] only
    insert_tokens(cache, A)
    assert not node_of(cache, A).backuped
    insert_tokens(cache, A[:6])                   # splits: [1..6] is written at its next hit
    upper, lower = node_of(cache, A[:6]), node_of(cache, A)
    assert upper.backuped and not lower.backuped
    cache.check_invariants(held=[])


# ---------------------------------------------------------- device eviction
def test_device_eviction_drops_a_backed_up_node_but_deletes_one_without_a_copy():
    """``evict``: ``_evict_backuped`` keeps the node (host only), ``_evict_regular`` deletes it."""
    cache = make(host_pages=12)
    insert_tokens(cache, A)                       # written (12 host pages: full)
    insert_tokens(cache, C)                       # no room on the host (nothing host-only to evict)
    assert node_of(cache, A).backuped and not node_of(cache, C).backuped
    assert cache.evict(24) == 24
    assert node_of(cache, A).evicted and node_of(cache, A).backuped
    assert cache.root.children.get(C[0]) is None
    assert cache.allocator.available == 32 and cache.host_size == 12
    cache.check_invariants(held=[])


def test_a_parent_joins_the_eviction_heap_once_its_children_are_off_the_device():
    """``evict``: the parent is pushed when every child is evicted (host-only children count)."""
    cache = make()
    insert_tokens(cache, A)
    insert_tokens(cache, B)                       # [1..6] with children [7..12] and [50..55]
    assert cache.evict(30) == 18
    assert all(node.evicted for node in cache.nodes()) and cache.total_size == 0


def test_write_back_that_finds_the_host_full_leaves_the_node_on_the_device():
    """``evict`` under write_back: ``write_backup`` returns 0, the node stays, nothing is freed."""
    cache = make(host_pages=4, write_policy="write_back")
    insert_tokens(cache, A)
    assert cache.evict(12) == 0
    assert not node_of(cache, A).evicted and cache.total_size == 12
    cache.check_invariants(held=[])


# ------------------------------------------------------------ host eviction
def test_host_eviction_takes_host_only_leaves_first_and_skips_protected_ones():
    """``evict_host``: evicted nodes only, leaves first, not while ``host_ref_counter`` > 0."""
    cache = make()
    insert_tokens(cache, A)
    insert_tokens(cache, B)
    insert_tokens(cache, C)
    cache.evict(12)                                # LRU: [1..6]'s subtree is older than C
    on_host = [n for n in cache.nodes() if n.evicted]
    assert {tuple(n.key) for n in on_host} == {tuple(A[6:]), tuple(B[6:])}
    cache.protect_host(node_of(cache, A))
    assert cache.evict_host(100) == 6             # [7..12] protected; [1..6] is on the device
    assert [tuple(n.key) for n in cache.nodes() if n.evicted] == [tuple(A[6:])]
    cache.release_host(node_of(cache, A))
    assert cache.evict_host(1) == 6 and cache.host_size == 18
    cache.check_invariants(held=[])


def test_a_full_host_pool_evicts_host_only_leaves_to_make_room_for_a_write():
    """``write_backup``: when ``write`` fails, ``evict_host(len)`` then ``write`` again."""
    cache = make(num_pages=12, host_pages=24)
    insert_tokens(cache, A)
    cache.evict(12)                                # A host only
    insert_tokens(cache, C)                        # C written: host full (24)
    assert cache.host_size == 24
    cache.evict(12)                                # C host only too
    insert_tokens(cache, [7] * 12)                 # needs 12 host pages: the older host leaf (A) goes
    assert cache.root.children.get(A[0]) is None and node_of(cache, C).evicted
    assert cache.host_evicted_tokens == 12
    cache.check_invariants(held=[])


# ---------------------------------------------------------------- matching
def test_a_match_reports_the_device_prefix_and_the_host_only_run_after_it():
    """``match_prefix``: device indices of non-evicted nodes, ``host_hit_length`` of the evicted
    ones, ``last_device_node``; a match ending inside a host-only node splits it."""
    cache = make()
    insert_tokens(cache, A)
    insert_tokens(cache, B)
    cache.evict(6)                                 # [7..12] goes host only (LRU)
    found = cache.match_prefix(A[:10])
    assert (found.prefix_len, found.host_len) == (6, 4)
    assert found.node is node_of(cache, A[:6]) and found.host_node is node_of(cache, A[:10])
    assert found.host_node.evicted and len(found.host_node.host_pages) == 4
    cache.check_invariants(held=[])


def test_an_insert_over_a_host_only_node_puts_the_recomputed_pages_on_the_device():
    """``insert``: a fully matched evicted node takes the caller's value; its length does not
    count as present, so the caller's pages for it become the tree's."""
    cache = make()
    insert_tokens(cache, A)
    cache.evict(12)
    pages = cache.allocator.alloc(12)
    assert cache.insert(A, pages) == 0
    node = node_of(cache, A)
    assert node.pages == pages and node.backuped and node.hits == 1      # no hit counted for it
    assert cache.allocator.held() == set()
    cache.check_invariants(held=[])


# --------------------------------------------------------------- load back
def test_load_back_copies_the_whole_host_only_chain_or_nothing():
    """``load_back``: every evicted node up to the device ancestor, in one allocation."""
    cache = make()
    insert_tokens(cache, A)
    insert_tokens(cache, A[:6])
    cache.evict(100)
    found = cache.match_prefix(A)
    assert (found.prefix_len, found.host_len) == (0, 12)
    pages, node = cache.init_load_back(found.host_node)
    assert len(pages) == 12 and node is found.host_node and not node.evicted
    assert node_of(cache, A[:6]).pages == pages[:6] and node.pages == pages[6:]
    assert cache.loaded_tokens == 12 and cache.match_prefix(A).prefix_len == 12
    cache.check_invariants(held=[])


@pytest.mark.parametrize("host_len, quota, newly_locked, loads", [
    (9, None, 0, False), (10, None, 0, True),                      # load_back_threshold = 10
    (12, 12, 0, True), (12, 11, 0, False), (12, 20, 8, True), (12, 20, 9, False),   # quota + delta
])
def test_the_load_back_decision(host_len, quota, newly_locked, loads):
    """``load_back``: skip if ``len < load_back_threshold`` or ``len > mem_quota + delta``,
    where ``delta`` is minus the tokens that locking the ancestors took from the evictable pool."""
    assert should_load_back(host_len, LOAD_BACK_THRESHOLD, quota, newly_locked) is loads


def test_a_short_host_hit_is_not_loaded_back():
    cache = make()
    insert_tokens(cache, A[:9])
    cache.evict(9)
    found = cache.match_prefix(A[:9])
    assert found.host_len == 9
    assert cache.init_load_back(found.host_node) == ([], cache.root)
    assert cache.loaded_tokens == 0 and found.host_node.evicted


def test_the_quota_counts_the_ancestors_that_loading_locks():
    cache = make(load_back_threshold=1)
    insert_tokens(cache, A)
    insert_tokens(cache, B)
    cache.evict(6)                                 # [7..12] host only, [1..6] on the device, unlocked
    found = cache.match_prefix(A)
    assert cache.init_load_back(found.host_node, mem_quota=11)[0] == []      # 6 > 11 - 6
    assert len(cache.init_load_back(found.host_node, mem_quota=12)[0]) == 6


def test_load_back_evicts_to_make_room_but_never_the_ancestors_it_loads_under():
    """``load_back``: on a failed ``load``, ``evict(len)`` and retry, with the ancestor locked."""
    cache = make(num_pages=24, load_back_threshold=1)
    insert_tokens(cache, A)
    insert_tokens(cache, B)                        # 18 tokens: [1..6], [7..12], [50..55]
    cache.evict(6)                                 # [7..12] host only
    insert_tokens(cache, [90] * 12)                # the device is full
    assert cache.allocator.available == 0
    found = cache.match_prefix(A)
    pages, node = cache.init_load_back(found.host_node)
    assert len(pages) == 6 and not node_of(cache, A[:6]).evicted and node_of(cache, B).evicted
    cache.check_invariants(held=[])


def test_a_load_back_holds_the_host_copies_it_is_loading_while_it_evicts():
    """Here, not in SGLang (DEVIATIONS.md row 16): a write-back eviction inside ``load_back``
    may evict host leaves, but never the chain being loaded."""
    x, w, y = list(range(12)), list(range(100, 112)), list(range(200, 224))
    cache = make(num_pages=24, host_pages=25, write_policy="write_back")
    for tokens in (x, w):
        insert_tokens(cache, tokens)
        cache.evict(12)                            # host only
    insert_tokens(cache, y)                        # the device is full
    found = cache.match_prefix(x)                  # x is now the most recent host leaf, w the oldest
    assert cache.init_load_back(found.host_node) == ([], cache.root)
    assert found.host_node.backuped and found.host_node.host_ref == 0 and w[0] not in cache.root.children
    cache.check_invariants(held=[])


def test_a_lookup_refreshes_every_node_it_passes():
    """``_match_prefix_helper``: each node on the path gets a new access time, so LRU spares it."""
    cache = make()
    insert_tokens(cache, A)
    insert_tokens(cache, C)
    cache.match_prefix(A)
    cache.evict(1)
    assert node_of(cache, A).backuped and not node_of(cache, A).evicted and node_of(cache, C).evicted


def test_a_load_that_cannot_find_room_leaves_the_host_copy_and_returns_the_device_node():
    """``init_load_back``: a failed load walks back to the last node on the device."""
    cache = make(num_pages=12)
    insert_tokens(cache, A)
    cache.evict(12)
    held = cache.allocator.alloc(12)               # a request holds the whole pool
    found = cache.match_prefix(A)
    assert cache.init_load_back(found.host_node) == ([], cache.root)
    assert found.host_node.evicted and found.host_node.backuped
    cache.check_invariants(held=held)


def test_host_pool_size_follows_hicache_ratio_or_an_explicit_size():
    """``memory_pool_host.py: HostKVCache.__init__``: ratio x device tokens (or bytes / bytes
    per token), in whole pages, plus one page."""
    assert host_pool_pages(100, 16, ratio=2.0) == 201
    assert host_pool_pages(100, 1, ratio=1.0) == 101
    assert host_pool_pages(100, 16, size_bytes=10**9, bytes_per_token=2**17) == 10**9 // 2**17 // 16 + 1


# ---------------------------------------------------------- the router
def test_the_router_loads_a_host_hit_back_and_counts_it_as_cached():
    cache = make(num_pages=16, host_pages=64, page_size=4)
    router = HiRouter(cache)
    prompt = list(range(100, 140))
    assert router.serve(prompt).prefix_len == 0
    cache.evict(100)
    assert cache.total_size == 0 and cache.host_size == 40
    assert router.serve(prompt).prefix_len == 36               # whole pages of all but the last token
    assert cache.loaded_tokens == 36
    router.check_invariants([])


def test_a_host_tier_that_holds_nothing_replays_like_one_tier():
    """Nodes of 2 pages or more and a 1-page host pool: nothing is ever written, so every
    decision is the one-tier cache's (hit rates are computed the same way for both)."""
    prompts = [block_tokens([i % 7, (i * 3) % 11, i % 5], 40) for i in range(60)]     # 120 tokens
    one = replay(prompts, 10, 16)
    two = hi_replay(prompts, 10, 1, 16)
    assert two.prefix_lens == one.prefix_lens and two.written_tokens == 0


def test_more_host_memory_never_hurts_on_this_trace():
    prompts = [block_tokens([i % 13, (i * 7) % 17, i % 3 + 30], 16) for i in range(150)]
    rates = tiered_hit_rates(prompts, 16, [0.2], [0, 2, 4])
    assert rates[0][0][1] < rates[2][0][1] <= rates[4][0][1]


# ----------------------------------------------------------- bad input
def snapshot(cache: HiRadixCache) -> tuple:
    return (str(cache), cache.clock, sorted(cache.allocator.allocated()), sorted(cache.host_allocator.allocated()),
            cache.written_tokens, cache.loaded_tokens)


def test_bad_calls_raise_and_change_nothing():
    cache = make(write_policy="write_back")
    insert_tokens(cache, A)
    insert_tokens(cache, B)
    cache.evict(6)
    device, host = node_of(cache, A[:6]), node_of(cache, A)
    other = make()
    insert_tokens(other, A)
    before = snapshot(cache)
    for call, error, message in [
        (lambda: cache.load_back(device), ValueError, "on the device"),
        (lambda: cache.load_back(node_of(other, A)), ValueError, "not in this tree"),
        (lambda: cache.load_back("node"), TypeError, "TreeNode"),
        (lambda: cache.load_back(host, mem_quota=-1), ValueError, "mem_quota"),
        (lambda: cache.evict_host(-1), ValueError, ">= 0"),
        (lambda: cache.protect_host(device), ValueError, "no host copy"),
        (lambda: cache.release_host(host), ValueError, "not protected"),
        (lambda: cache.insert(C, [0] * 12), ValueError, "held by the caller"),
        (lambda: cache.insert(C, cache.allocator.alloc(3)), ValueError, "need 12 pages"),
    ]:
        with pytest.raises(error, match=message):
            call()
        cache.allocator.free(list(cache.allocator.held()))
        assert snapshot(cache) == before
        cache.check_invariants(held=[])


def test_a_cache_needs_a_known_policy_and_matching_pools():
    with pytest.raises(ValueError, match="write policy"):
        make(write_policy="write_around")
    with pytest.raises(ValueError, match="page_size 4"):
        HiRadixCache(PageAllocator(8, 4), PageAllocator(8, 1))
    with pytest.raises(ValueError, match="load_back_threshold"):
        make(load_back_threshold=-1)


def test_check_invariants_catches_a_lost_host_copy_and_a_leaked_host_page():
    cache = make()
    insert_tokens(cache, A)
    cache.evict(12)
    node = node_of(cache, A)
    pages, node.host_pages = node.host_pages, None
    with pytest.raises(InvariantError, match="no host copy"):
        cache.check_invariants()
    node.host_pages = pages
    cache.host_allocator.alloc(1)
    with pytest.raises(InvariantError, match="owned by no node"):
        cache.check_invariants()


# ------------------------------------------ property test: a naive two-tier reference
class NaiveTwoTier:
    """Sets of page-aligned prefixes on the device and on the host, hit counts per prefix,
    locked device prefixes and protected nodes. Matches by brute force; after an eviction it
    checks what left (only what may leave, at least what must) instead of predicting it."""

    def __init__(self, page_size: int, write_policy: str):
        self.ps, self.policy = page_size, write_policy
        self.device: set[tuple] = set()
        self.host: set[tuple] = set()
        self.hits: dict[tuple, int] = {}
        self.locked: list[tuple] = []
        self.protected: list = []                # nodes whose host copy is held

    def prefixes(self, tokens) -> list[tuple]:
        aligned = len(tokens) - len(tokens) % self.ps
        return [tuple(tokens[:n]) for n in range(self.ps, aligned + 1, self.ps)]

    def longest(self, tokens, where: set) -> int:
        return max((len(p) for p in self.prefixes(tokens) if p in where), default=0)

    def locked_set(self) -> set[tuple]:
        return {p for p in self.device if any(lk[:len(p)] == p for lk in self.locked)}

    def size(self, prefixes) -> int:
        return self.ps * len(prefixes)


def tree_prefixes(cache: HiRadixCache) -> tuple[set, set, dict]:
    """Device prefixes, host prefixes and hit counts, read off the tree without touching it."""
    device, host, hits, stack = set(), set(), {}, [(cache.root, ())]
    while stack:
        node, path = stack.pop()
        for child in node.children.values():
            full = path + tuple(child.key)
            own = [full[:n] for n in range(len(path) + cache.page_size, len(full) + 1, cache.page_size)]
            device.update(own if not child.evicted else ())
            host.update(own if child.backuped else ())
            hits.update(dict.fromkeys(own, child.hits))
            stack.append((child, full))
    return device, host, hits


BASE = [0, 1, 2, 3, 0, 1, 2, 3, 2, 2, 1, 0, 3, 3]          # prompts that share prefixes of it meet often
tokens_st = st.one_of(
    st.builds(lambda n, tail: BASE[:n] + tail, st.integers(1, 14), st.lists(st.integers(0, 3), max_size=4)),
    st.lists(st.integers(0, 3), min_size=1, max_size=14))
op_st = st.one_of(
    st.tuples(st.just("insert"), tokens_st),
    st.tuples(st.just("match"), tokens_st),
    st.tuples(st.just("load"), st.tuples(tokens_st, st.one_of(st.none(), st.integers(0, 16)))),
    st.tuples(st.just("lock"), tokens_st),
    st.tuples(st.just("unlock"), st.integers(0, 10)),
    st.tuples(st.just("evict"), st.integers(0, 20)),
    st.tuples(st.just("evict_host"), st.integers(0, 20)),
    st.tuples(st.just("protect"), st.tuples(tokens_st, st.booleans())),
    st.tuples(st.just("serve"), tokens_st.filter(lambda t: len(t) >= 2)),
)


def do_insert(cache, ref, tokens) -> None:
    try:
        present = insert_tokens(cache, tokens)
    except OutOfPages:
        return
    assert present == ref.longest(tokens, ref.device)
    host_before, device_before = ref.host, ref.device
    ref.device, host, _ = tree_prefixes(cache)
    ps = ref.ps
    assert ref.device == device_before | set(ref.prefixes(tokens))
    threshold = {"write_through": 1, "write_through_selective": 2}.get(ref.policy)
    for p in ref.prefixes(tokens):              # the naive hit counts
        if threshold and p in device_before:
            ref.hits[p] += 1
        elif p not in device_before | host_before:
            ref.hits[p] = 1 if threshold else 0
    gone, added = host_before - host, host - host_before
    assert not gone & device_before and added <= set(ref.prefixes(tokens))
    assert all(ref.hits[p] >= (threshold or 10 ** 9) for p in added)     # write_back writes nothing here
    missing = [p for p in ref.prefixes(tokens) if threshold and ref.hits[p] >= threshold and p not in host
               and (len(p) == ps or p[:-ps] in host)]
    if missing:                                   # only for want of room: no reachable host-only copy is left
        assert not host_evictable(ref, host - ref.device)
    ref.host = host


def host_evictable(ref: NaiveTwoTier, host_only: set) -> set:
    """Host-only prefixes that host eviction can reach: none of their extensions is held."""
    held = {p for p in host_only if any(held_covers(n, p) for n in ref.protected)}
    return {p for p in host_only if not any(q[:len(p)] == p for q in held)}


def held_covers(node, prefix) -> bool:
    """``prefix`` ends inside protected ``node`` (its whole path)."""
    path, n = [], node
    while n.parent is not None:
        path.append(tuple(n.key))
        n = n.parent
    full = sum(reversed(path), ())
    return len(full) - len(node.key) < len(prefix) <= len(full) and full[:len(prefix)] == prefix


def do_load(cache, ref, tokens, quota) -> None:
    found = cache.match_prefix(tokens)
    present = ref.longest(tokens, ref.device | ref.host)
    assert (found.prefix_len, found.host_len) == (ref.longest(tokens, ref.device), present - found.prefix_len)
    if not found.host_len:
        return
    unlocked = {p for p in ref.device if p == tuple(tokens[:len(p)])} - ref.locked_set()
    decision = found.host_len >= 10 and (quota is None or found.host_len <= quota - ref.size(unlocked))
    pages, node = cache.init_load_back(found.host_node, quota)
    device, host, _ = tree_prefixes(cache)
    path = {p for p in ref.prefixes(tokens[:present])}
    if pages:
        assert decision and len(pages) * ref.ps == found.host_len and path <= device
    else:
        assert not (path - ref.device) & device        # nothing of the chain came back
        assert not decision or cache.allocator.available < found.host_len // ref.ps
    assert not ref.locked_set() - device and not (ref.host - host) & path    # the chain kept its copies
    assert ref.policy == "write_back" or host == ref.host
    ref.device, ref.host = device, host


def do_evict(cache, ref, num_tokens) -> None:
    evictable = ref.size(ref.device - ref.locked_set())
    freed = cache.evict(num_tokens)
    device, host, _ = tree_prefixes(cache)
    gone = ref.device - device
    assert device <= ref.device and not gone & ref.locked_set() and freed == ref.size(gone)
    if ref.policy == "write_back":
        assert gone <= host
    else:
        assert host == ref.host and freed >= min(num_tokens, evictable)
    ref.device, ref.host = device, host


def do_evict_host(cache, ref, num_tokens) -> None:
    reachable = host_evictable(ref, ref.host - ref.device)
    freed = cache.evict_host(num_tokens)
    device, host, _ = tree_prefixes(cache)
    gone = ref.host - host
    assert device == ref.device and gone <= reachable and freed == ref.size(gone)
    assert freed >= min(num_tokens, ref.size(reachable))
    ref.host = host


def apply(cache, ref, held_nodes, op) -> None:
    kind, arg = op
    if kind == "insert":
        do_insert(cache, ref, arg)
    elif kind == "load":
        do_load(cache, ref, *arg)
    elif kind in ("match", "lock"):
        found = cache.match_prefix(arg)
        assert found.prefix_len == ref.longest(arg, ref.device)
        assert found.host_len == ref.longest(arg, ref.device | ref.host) - found.prefix_len
        if kind == "lock":
            cache.lock(found.node)
            held_nodes.append(found.node)
            ref.locked.append(tuple(arg[:found.prefix_len]))
    elif kind == "unlock" and held_nodes:
        i = arg % len(held_nodes)
        cache.unlock(held_nodes.pop(i))
        ref.locked.pop(i)
    elif kind == "evict":
        do_evict(cache, ref, arg)
    elif kind == "evict_host":
        do_evict_host(cache, ref, arg)
    elif kind == "protect":
        tokens, release = arg
        if release and ref.protected:
            cache.release_host(ref.protected.pop())
        node = cache.match_prefix(tokens).host_node
        if not release and node.evicted:
            cache.protect_host(node)
            ref.protected.append(node)
    elif kind == "serve":                         # the whole admission path; the tree is read back
        HiRouter(cache).serve(arg)
        ref.device, ref.host, hits = tree_prefixes(cache)
        ref.hits.update(hits)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page_size=st.sampled_from([1, 4]), eviction=st.sampled_from(sorted(POLICIES)),
       write_policy=st.sampled_from(WRITE_POLICIES), num_pages=st.integers(2, 24), host_pages=st.integers(1, 48),
       ops=st.lists(op_st, max_size=40))
def test_random_operations_match_the_naive_two_tier_reference(page_size, eviction, write_policy, num_pages,
                                                              host_pages, ops):
    cache = make(num_pages, host_pages, page_size, write_policy, eviction)
    ref, held_nodes = NaiveTwoTier(page_size, write_policy), []
    for op in ops:
        apply(cache, ref, held_nodes, op)
        device, host, hits = tree_prefixes(cache)
        assert (device, host) == (ref.device, ref.host)
        assert closed(device, page_size) and closed(device | host, page_size)
        assert write_policy == "write_back" or closed(host, page_size)            # contiguity
        assert cache.total_size == ref.size(ref.device) and cache.host_size == ref.size(ref.host)
        assert cache.protected_size == ref.size(ref.locked_set())
        assert all(n.parent is not None and n.backuped for n in ref.protected)
        assert hits == {p: ref.hits[p] for p in hits}
        cache.check_invariants(held=[])


def closed(prefixes: set, page_size: int) -> bool:
    """Every prefix's parent prefix (one page shorter) is in the set too."""
    return all(len(p) == page_size or p[:-page_size] in prefixes for p in prefixes)


# ------------------------------------------ with a model: the bytes really move
class TwoTierRig:
    """A tiny Llama over a device pool poisoned with NaN, a host pool, and a two-tier router."""

    PAGE_SIZE = 4

    def __init__(self, model, move_bytes: bool = True):
        from radixlib.executor import AttentionExecutor, pool_for
        self.pool, self.host = pool_for(model, 16, self.PAGE_SIZE), pool_for(model, 32, self.PAGE_SIZE)
        self.pool.k.fill_(float("nan"))
        self.pool.v.fill_(float("nan"))
        self.cache = HiRadixCache(PageAllocator(16, self.PAGE_SIZE), PageAllocator(32, self.PAGE_SIZE),
                                  transfer=kv_transfer(self.pool, self.host) if move_bytes else None)
        self.router = HiRouter(self.cache)
        self.executor = AttentionExecutor(model, self.pool, self.cache.allocator)

    def run(self, tokens: list[int]):
        """Admit, compute the uncached suffix, cache the prompt: its last logits and cached length."""
        from radixlib.forward import ForwardRequest
        from radixlib.pages import slots_of
        from radixlib.request import Request
        req = Request(0, tokens)
        self.router.match(req)
        self.router.reserve(req, len(tokens))
        start = req.prefix_len
        logits = self.executor.logits([ForwardRequest(tokens[start:], start, slots_of(req.pages, self.PAGE_SIZE,
                                                                                       len(tokens)))])[0]
        req.kv_len = len(tokens)
        self.router.cache_finished(req)
        return logits, start

    def evict_and_poison(self) -> None:
        """Every device copy goes (each node keeps its host copy); the device pool turns to NaN."""
        self.cache.evict(self.cache.total_size)
        assert self.cache.total_size == 0
        self.pool.k.fill_(float("nan"))
        self.pool.v.fill_(float("nan"))


def test_a_prefix_loaded_back_from_host_gives_the_logits_of_one_never_evicted():
    import copy

    import torch
    from transformers import LlamaConfig

    from radixlib.models import seeded_model
    from radixlib.numerics import as_accurate
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=256, max_position_embeddings=128,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None)
    model = seeded_model(config, seed=0)
    reference = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    prefix, tail_a, tail_b = (torch.randint(0, 256, (n,), generator=gen).tolist() for n in (32, 9, 7))
    a, b = prefix + tail_a, prefix + tail_b
    with torch.no_grad():
        full = reference(torch.tensor([b]), use_cache=False).logits[0, -1]
        exact = reference.to(torch.float64)(torch.tensor([b]), use_cache=False).logits[0, -1]

    kept, loaded, unmoved = TwoTierRig(model), TwoTierRig(model), TwoTierRig(model, move_bytes=False)
    for rig in (kept, loaded, unmoved):
        rig.run(a)                                  # computed in full, cached, written through to host
    for rig in (loaded, unmoved):
        rig.evict_and_poison()
    never_evicted, hit = kept.run(b)
    from_host, loaded_len = loaded.run(b)
    assert hit == loaded_len == 32 and loaded.cache.loaded_tokens == 32 and kept.cache.loaded_tokens == 0
    assert torch.equal(from_host, never_evicted)             # the same arithmetic on the same values
    assert as_accurate(from_host, full, exact)               # and a full forward's, to its own rounding
    # Control: the same load-back without copying the bytes reads the poisoned device slots.
    without_bytes, _ = unmoved.run(b)
    assert unmoved.cache.loaded_tokens == 32 and torch.isnan(without_bytes).all()
