"""One test per semantic point of SGLang 0.5.12's RadixCache, at page sizes 1, 4 and 16."""
import pytest
from helpers import insert_tokens, make_cache

from radixlib import POLICIES


def blocks(ps: int, *ids: int) -> list[int]:
    """One page of tokens per id: block ``b`` is ``[100*b, 100*b+1, ...]``."""
    return [100 * b + i for b in ids for i in range(ps)]


def test_child_key_is_first_token_or_first_page(page_size):
    cache = make_cache(page_size=page_size)
    insert_tokens(cache, blocks(page_size, 1, 2))
    (key,) = cache.root.children
    assert key == (100 if page_size == 1 else tuple(range(100, 100 + page_size)))


def test_keys_are_cut_to_whole_pages(page_size):
    cache = make_cache(page_size=page_size)
    tokens = blocks(page_size, 1, 2) + [7] * (page_size - 1)   # two pages and a partial one
    assert insert_tokens(cache, tokens) == 0
    assert cache.total_size == 2 * page_size
    m = cache.match_prefix(tokens + [8])
    assert m.prefix_len == 2 * page_size and len(m.pages) == 2


def test_match_is_whole_pages_only():
    cache = make_cache(page_size=4)
    insert_tokens(cache, [1, 2, 3, 4, 5, 6, 7, 8])
    assert cache.match_prefix([1, 2, 3, 4, 5, 6, 7, 0]).prefix_len == 4   # mismatch inside page 2
    assert cache.match_prefix([1, 2, 3, 0, 5, 6, 7, 8]).prefix_len == 0
    assert cache.match_prefix([1, 2, 3]).prefix_len == 0                   # shorter than a page


def test_match_returns_pages_along_the_path_in_order(page_size):
    cache = make_cache(page_size=page_size)
    insert_tokens(cache, blocks(page_size, 1, 2, 3))
    insert_tokens(cache, blocks(page_size, 1, 2, 4))
    m = cache.match_prefix(blocks(page_size, 1, 2, 4, 9))
    assert m.prefix_len == 3 * page_size
    assert m.pages == [0, 1, 5]          # blocks 1, 2 from the first insert; 4 from the second's pages [3 4 5]
    assert m.node.key.tolist() == blocks(page_size, 4)


def test_match_that_ends_inside_a_node_splits_it(page_size):
    cache = make_cache(page_size=page_size)
    insert_tokens(cache, blocks(page_size, 1, 2, 3))
    assert len(list(cache.nodes())) == 1
    m = cache.match_prefix(blocks(page_size, 1, 2, 9))
    assert m.prefix_len == 2 * page_size
    nodes = list(cache.nodes())
    assert [len(n.key) for n in nodes] == [2 * page_size, page_size]     # upper, then tail
    assert m.node is nodes[0] and nodes[1].parent is m.node
    assert m.node.pages == [0, 1] and nodes[1].pages == [2]
    cache.check_invariants(held=[])


def test_match_refreshes_access_time_of_every_node_walked(page_size):
    cache = make_cache(page_size=page_size)
    insert_tokens(cache, blocks(page_size, 1, 2))
    insert_tokens(cache, blocks(page_size, 1, 2, 3))
    before = {n.id: n.last_access for n in cache.nodes()}
    cache.match_prefix(blocks(page_size, 1, 2, 3))
    after = {n.id: n.last_access for n in cache.nodes()}
    assert all(after[i] > before[i] for i in before)
    assert len(set(after.values())) == 1          # one tick for the whole path
    assert cache.root.last_access == cache.clock


def test_match_does_not_count_hits_insert_does(page_size):
    cache = make_cache(page_size=page_size)
    insert_tokens(cache, blocks(page_size, 1, 2))
    (node,) = cache.nodes()
    assert node.hits == 1
    cache.match_prefix(blocks(page_size, 1, 2))
    assert node.hits == 1
    insert_tokens(cache, blocks(page_size, 1, 2))
    assert node.hits == 2


def test_insert_returns_present_length_and_splits(page_size):
    cache = make_cache(page_size=page_size)
    assert insert_tokens(cache, blocks(page_size, 1, 2, 3)) == 0
    assert insert_tokens(cache, blocks(page_size, 1, 2, 3)) == 3 * page_size
    assert insert_tokens(cache, blocks(page_size, 1, 5)) == page_size
    assert sorted(len(n.key) for n in cache.nodes()) == [page_size, page_size, 2 * page_size]
    upper = cache.match_prefix(blocks(page_size, 1)).node
    assert upper.hits == 3        # split copies the hits (2) and the insert counts one more
    assert cache.total_size == 4 * page_size
    cache.check_invariants(held=[])


def test_insert_leaves_duplicate_pages_to_the_caller(page_size):
    cache = make_cache(num_pages=16, page_size=page_size)
    first = cache.allocator.alloc(2)
    cache.insert(blocks(page_size, 1, 2), first)
    second = cache.allocator.alloc(3)
    assert cache.insert(blocks(page_size, 1, 2, 3), second) == 2 * page_size
    assert cache.match_prefix(blocks(page_size, 1, 2, 3)).pages == first + second[2:]
    cache.check_invariants(held=second[:2])       # the caller still holds its duplicates
    cache.allocator.free(second[:2])
    cache.check_invariants(held=[])


def test_insert_raises_priority_along_the_path():
    cache = make_cache(page_size=1)
    insert_tokens(cache, [1, 2, 3], priority=1)
    insert_tokens(cache, [1, 2, 4], priority=5)
    upper, low, high = cache.nodes()
    assert (upper.priority, low.priority, high.priority) == (5, 1, 5)


def test_evict_frees_whole_leaves_first_and_pages_return_to_the_allocator(page_size):
    cache = make_cache(num_pages=8, page_size=page_size)
    insert_tokens(cache, blocks(page_size, 1, 2, 3))
    insert_tokens(cache, blocks(page_size, 1, 2, 4))
    assert cache.allocator.available == 4
    freed = cache.evict(1)                       # asks for 1 token, frees a whole leaf
    assert freed == page_size
    assert cache.allocator.available == 5
    assert cache.match_prefix(blocks(page_size, 1, 2, 3)).prefix_len == 2 * page_size  # lru: 3 went first
    cache.check_invariants(held=[])


def test_evict_pushes_a_parent_that_becomes_a_leaf(page_size):
    cache = make_cache(page_size=page_size)
    insert_tokens(cache, blocks(page_size, 1, 2))
    insert_tokens(cache, blocks(page_size, 1, 3))
    assert cache.evict(10 ** 6) == 3 * page_size     # leaves, then their parent: the whole tree
    assert cache.total_size == 0 and list(cache.nodes()) == []
    assert cache.allocator.available == cache.allocator.num_pages


def test_lock_moves_sizes_between_evictable_and_protected(page_size):
    cache = make_cache(page_size=page_size)
    insert_tokens(cache, blocks(page_size, 1, 2, 3))
    node = cache.match_prefix(blocks(page_size, 1, 2)).node       # splits: [1 2] and [3]
    cache.lock(node)
    assert (cache.protected_size, cache.evictable_size) == (2 * page_size, page_size)
    cache.lock(node)
    assert node.lock_ref == 2 and cache.protected_size == 2 * page_size
    assert cache.evict(10 ** 6) == page_size                      # only the unlocked tail goes
    assert cache.match_prefix(blocks(page_size, 1, 2)).prefix_len == 2 * page_size
    cache.unlock(node)
    cache.unlock(node)
    assert (cache.protected_size, cache.evictable_size) == (0, 2 * page_size)
    assert cache.evictable_size + cache.protected_size == cache.total_size
    cache.check_invariants(held=[])


def test_lock_walks_to_the_root_and_the_root_stays_locked(page_size):
    cache = make_cache(page_size=page_size)
    insert_tokens(cache, blocks(page_size, 1, 2))
    insert_tokens(cache, blocks(page_size, 1, 2, 3))
    leaf = cache.match_prefix(blocks(page_size, 1, 2, 3)).node
    cache.lock(leaf)
    assert [n.lock_ref for n in cache.nodes()] == [1, 1]
    assert cache.root.lock_ref == 1
    cache.lock(cache.root)                # locking the root (a miss) is a no-op, as in SGLang
    assert cache.root.lock_ref == 1


def test_split_of_a_locked_node_keeps_it_locked(page_size):
    cache = make_cache(page_size=page_size)
    insert_tokens(cache, blocks(page_size, 1, 2, 3))
    node = cache.match_prefix(blocks(page_size, 1, 2, 3)).node
    cache.lock(node)
    upper = cache.match_prefix(blocks(page_size, 1, 9)).node
    assert upper.lock_ref == 1 and cache.protected_size == 3 * page_size
    cache.unlock(node)
    assert cache.protected_size == 0
    cache.check_invariants(held=[])


def _victims(policy: str) -> list[int]:
    """The first token of each leaf, in the order ``policy`` evicts them."""
    cache = make_cache(page_size=1, eviction=policy)
    insert_tokens(cache, [1, 1], priority=2)     # created first, hit twice
    insert_tokens(cache, [2, 2], priority=0)
    insert_tokens(cache, [3, 3], priority=1)
    insert_tokens(cache, [1, 1], priority=2)     # second hit for [1 1]
    cache.match_prefix([2, 2])                  # most recently touched
    order = []
    while cache.total_size:
        leaf = cache.evictable_leaves()[0]
        assert cache.evict(1) == 2 and leaf.parent is None      # evicted: unhooked from the tree
        order.append(leaf.key[0])
    return order


@pytest.mark.parametrize("policy, order", [
    ("lru", [3, 1, 2]),        # last access: 3 < 1 < 2
    ("mru", [2, 1, 3]),
    ("fifo", [1, 2, 3]),       # creation order
    ("filo", [3, 2, 1]),
    ("lfu", [3, 2, 1]),        # hits: 3 and 2 have one (3 older), 1 has two
    ("slru", [3, 2, 1]),       # [1 1] reached two hits: protected segment
    ("priority", [2, 3, 1]),   # priorities 0 < 1 < 2
])
def test_each_policy_evicts_in_its_key_order(policy, order):
    assert _victims(policy) == order


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown eviction policy 'lrfu'"):
        make_cache(eviction="lrfu")
    assert sorted(POLICIES) == ["fifo", "filo", "lfu", "lru", "mru", "priority", "slru"]


def test_logical_clock_makes_runs_reproducible():
    def run():
        cache = make_cache(page_size=4)
        for tokens in ([1] * 12, [1] * 8 + [2] * 4, [3] * 8):
            insert_tokens(cache, tokens)
        cache.match_prefix([1] * 4)
        cache.evict(4)
        return str(cache)
    assert run() == run()


def test_text_dump_shows_keys_lengths_pages_and_locks():
    cache = make_cache(page_size=2)
    insert_tokens(cache, [1, 2, 3, 4])
    insert_tokens(cache, [1, 2, 5, 6])
    cache.lock(cache.match_prefix([1, 2, 5, 6]).node)
    assert str(cache).splitlines() == [
        "RadixCache(page_size=2, eviction=lru) total=6 evictable=2 protected=4 free_pages=61",
        "root",
        "└── #2 [1 2] len=2 pages=[0] lock=1 hits=2 t=7",
        "    ├── #1 [3 4] len=2 pages=[1] lock=0 hits=1 t=4",
        "    └── #3 [5 6] len=2 pages=[3] lock=1 hits=1 t=7",
    ]


def test_check_invariants_catches_corruption():
    from radixlib import InvariantError
    cache = make_cache(page_size=1)
    insert_tokens(cache, [1, 2, 3])
    (node,) = cache.nodes()
    node.lock_ref = 1                                   # lock without moving sizes
    with pytest.raises(InvariantError, match="sizes"):
        cache.check_invariants()
    node.lock_ref = 0
    cache.allocator.reclaim([node.pages[0]])             # a tree page freed behind the tree's back
    with pytest.raises(InvariantError, match="is free in the allocator"):
        cache.check_invariants()
    fresh = make_cache(page_size=1)
    insert_tokens(fresh, [1, 2, 3])
    leaked = fresh.allocator.alloc(1)                    # held by nobody we were told of
    with pytest.raises(InvariantError, match=f"pages \\[{leaked[0]}\\] are allocated but owned by nobody"):
        fresh.check_invariants(held=[])
