"""Bad input gets a clear error and the state after it is the state before it."""
import numpy as np
import pytest
from helpers import insert_tokens, make_cache, snapshot

from radixlib import OutOfPages


@pytest.fixture
def cache():
    cache = make_cache(num_pages=8, page_size=2)
    insert_tokens(cache, [1, 2, 3, 4, 5, 6])
    insert_tokens(cache, [1, 2, 7, 8])
    return cache


def _unchanged(cache, call, error, match, held=()):
    """``call`` raises ``error`` and leaves cache and allocator as they were."""
    before = snapshot(cache)
    with pytest.raises(error, match=match):
        call()
    assert snapshot(cache) == before
    cache.check_invariants(held=held)


@pytest.mark.parametrize("tokens, error, match", [
    ([], ValueError, "empty token list"),
    ([1, 2.5], TypeError, "token ids must be integers, got 2.5 at position 1"),
    (["a", "b"], TypeError, "token ids must be integers, got 'a' at position 0"),
    ([1, -3], ValueError, "token ids must be >= 0 and < 2\\*\\*64, got -3 at position 1"),
    ([1, 2 ** 64], ValueError, "token ids must be >= 0 and < 2\\*\\*64, got 18446744073709551616 at position 1"),
    ([[1, 2]], TypeError, "token ids must be integers, got \\[1, 2\\] at position 0"),
    (None, TypeError, "tokens must be a sequence of integer token ids, got None"),
    (123, TypeError, "tokens must be a sequence of integer token ids, got 123"),
    ("1 2", TypeError, "tokens must be a sequence of integer token ids, got '1 2'"),
    (b"\x01\x02", TypeError, "tokens must be a sequence of integer token ids"),
    (np.array([1.0, 2.0]), TypeError, "token ids must be integers, got 1.0 at position 0"),
    (np.array([[1, 2], [7, 8]]), TypeError, "token ids must be integers, got \\[1, 2\\] at position 0"),
])
def test_bad_tokens_in_match_and_insert(cache, tokens, error, match):
    _unchanged(cache, lambda: cache.match_prefix(tokens), error, match)
    pages = cache.allocator.alloc(1)
    _unchanged(cache, lambda: cache.insert(tokens, pages), error, match, held=pages)


def test_a_generator_of_floats_is_named_not_called_empty(cache):
    _unchanged(cache, lambda: cache.match_prefix(x / 2 for x in range(4)), TypeError,
               "token ids must be integers, got 0.0 at position 0")


def test_numpy_integer_tokens_are_accepted(cache):
    assert cache.match_prefix(np.array([1, 2, 7, 8])).prefix_len == 4
    assert cache.match_prefix([np.int64(1), np.int32(2)]).prefix_len == 2


def test_torch_tensor_tokens_match_like_the_same_ints_and_are_never_stored(cache):
    torch = pytest.importorskip("torch")
    assert cache.match_prefix(torch.tensor([1, 2, 7, 8])).prefix_len == 4
    pages = cache.allocator.alloc(3)
    assert cache.insert(torch.tensor([1, 2, 3, 4, 9, 9]), pages) == 4      # no second copy of [1 2 3 4]
    cache.allocator.free(pages[:2])
    assert cache.total_size == 10 and all(type(t) is int for n in cache.nodes() for t in n.key)
    cache.check_invariants(held=[])
    for bad in (torch.tensor([1.0, 2.0]), torch.tensor([[1, 2]]), torch.tensor(5)):
        _unchanged(cache, lambda bad=bad: cache.match_prefix(bad), TypeError, "token ids must be integers|a sequence")


@pytest.mark.parametrize("num_pages, match", [(1, "need 2 pages, got 1"), (4, "need 2 pages, got 4")])
def test_tokens_and_pages_of_different_lengths(cache, num_pages, match):
    pages = cache.allocator.alloc(num_pages)
    _unchanged(cache, lambda: cache.insert([9, 9, 9, 9], pages), ValueError, match, held=pages)


def test_floor_or_ceil_pages_are_both_accepted(cache):
    pages = cache.allocator.alloc(2)
    assert cache.insert([9, 9, 9, 9, 9], pages) == 0     # floor(5/2) = 2 pages, ceil = 3
    assert cache.total_size == 12
    cache.check_invariants(held=[])


def test_pages_that_are_not_allocated(cache):
    free_page = next(p for p in range(8) if cache.allocator.is_free(p))
    _unchanged(cache, lambda: cache.insert([9, 9], [free_page]), ValueError, "distinct and held by the caller")
    _unchanged(cache, lambda: cache.insert([9, 9], [42]), ValueError, "distinct and held by the caller")
    pages = cache.allocator.alloc(1)
    _unchanged(cache, lambda: cache.insert([9, 9, 9, 9], pages * 2), ValueError, "distinct and held by the caller",
               held=pages)


def test_pages_that_the_tree_already_owns_for_new_tokens(cache):
    tree_page = cache.match_prefix([1, 2]).pages[0]
    _unchanged(cache, lambda: cache.insert([9, 9], [tree_page]), ValueError, "belongs to the radix tree")


def test_double_free_through_the_allocator(cache):
    tree_pages = cache.match_prefix([1, 2, 3, 4]).pages
    cache.evict(10 ** 6)
    _unchanged(cache, lambda: cache.allocator.free(tree_pages), ValueError, "double free")


def test_a_caller_cannot_free_a_page_the_tree_owns(cache):
    tree_page = cache.match_prefix([1, 2]).pages[0]
    _unchanged(cache, lambda: cache.allocator.free([tree_page]), ValueError,
               f"page {tree_page} belongs to the radix tree")
    cache.evict(10 ** 6)                     # the tree frees it once, itself
    pages = cache.allocator.alloc(cache.allocator.num_pages)
    assert sorted(pages) == list(range(cache.allocator.num_pages))         # every page exactly once


def test_one_page_in_both_the_present_and_the_new_part_of_an_insert(cache):
    """The tree takes the page for the new tokens; the caller's free of its duplicate is refused."""
    page = cache.allocator.alloc(1)
    assert cache.insert([1, 2, 9, 9], page * 2) == 2                        # [1 2] present, [9 9] new
    _unchanged(cache, lambda: cache.allocator.free(page), ValueError, "belongs to the radix tree")
    cache.evict(10 ** 6)
    pages = cache.allocator.alloc(cache.allocator.num_pages)
    assert len(set(pages)) == len(pages) == cache.allocator.num_pages


@pytest.mark.parametrize("pages, match", [
    ([1.0], "page id 1.0 is not an integer"),
    (["a"], "page id 'a' is not an integer"),
    ([[1]], "page id \\[1\\] is not an integer"),
    (None, "pages must be a sequence of page ids, got None"),
])
def test_page_ids_that_are_not_integers(cache, pages, match):
    held = cache.allocator.alloc(1)
    error = TypeError if pages is None else ValueError
    _unchanged(cache, lambda: cache.insert([9, 9], pages), error, match, held=held)
    _unchanged(cache, lambda: cache.allocator.free(pages), error, match, held=held)


def test_numpy_page_ids_are_kept_as_plain_ints(cache):
    pages = cache.allocator.alloc(2)
    assert cache.insert([9, 9, 8, 8], np.array(pages)) == 0
    assert cache.insert([7, 7], [np.int64(cache.allocator.alloc(1)[0])]) == 0
    assert all(type(p) is int for n in cache.nodes() for p in n.pages)
    cache.check_invariants(held=[])


@pytest.mark.parametrize("priority", ["high", [1], float("nan"), object()])
def test_a_priority_that_is_not_a_number_changes_nothing(cache, priority):
    pages = cache.allocator.alloc(3)                 # on an existing path: would split [5 6] off, count hits
    _unchanged(cache, lambda: cache.insert([1, 2, 3, 4, 9, 9], pages, priority=priority), TypeError,
               "priority must be a real number", held=pages)


def test_priority_none_counts_as_zero_as_in_sglang():
    """SGLang's ``_insert_helper`` turns a ``None`` priority into 0; so do we, and priority eviction works after it."""
    cache = make_cache(page_size=1, eviction="priority")
    insert_tokens(cache, [1, 1], priority=None)
    insert_tokens(cache, [2, 2], priority=1)
    assert [n.priority for n in cache.nodes()] == [0, 1]
    assert cache.evict(1) == 2 and cache.match_prefix([2, 2]).prefix_len == 2
    cache.check_invariants(held=[])


@pytest.mark.parametrize("num_tokens, error", [("5", TypeError), (None, TypeError), (2.5, TypeError), (-1, ValueError)])
def test_evict_needs_a_count(cache, num_tokens, error):
    _unchanged(cache, lambda: cache.evict(num_tokens), error,
               f"number of tokens to evict must be an integer >= 0, got {num_tokens!r}")


@pytest.mark.parametrize("node", ["abc", None, 3])
def test_lock_and_unlock_need_a_tree_node(cache, node):
    for call in (cache.lock, cache.unlock):
        _unchanged(cache, lambda call=call: call(node), TypeError, "take a TreeNode \\(a match's node\\), got")


def test_unlock_below_zero(cache):
    node = cache.match_prefix([1, 2, 7, 8]).node
    _unchanged(cache, lambda: cache.unlock(node), ValueError, "unlock below zero")
    cache.lock(node)
    cache.unlock(node)
    _unchanged(cache, lambda: cache.unlock(node), ValueError, "unlock below zero")


def test_lock_or_unlock_of_an_evicted_node(cache):
    node = cache.match_prefix([1, 2, 7, 8]).node
    cache.evict(10 ** 6)
    _unchanged(cache, lambda: cache.lock(node), ValueError, "not in this tree")
    other = make_cache(page_size=2)
    insert_tokens(other, [1, 2])
    _unchanged(cache, lambda: cache.lock(other.match_prefix([1, 2]).node), ValueError, "not in this tree")


def test_alloc_beyond_capacity(cache):
    _unchanged(cache, lambda: cache.allocator.alloc(cache.allocator.available + 1), OutOfPages, "asked for")


@pytest.mark.parametrize("n, error", [(2.5, TypeError), ("2", TypeError), (None, TypeError), (-1, ValueError)])
def test_alloc_needs_a_count(cache, n, error):
    _unchanged(cache, lambda: cache.allocator.alloc(n), error,
               f"number of pages to allocate must be an integer >= 0, got {n!r}")
