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
    ([1, 2.5], TypeError, "must be integers"),
    (["a", "b"], TypeError, "must be integers"),
    ([1, -3], ValueError, "must be >= 0"),
    (None, TypeError, "must be integers"),
])
def test_bad_tokens_in_match_and_insert(cache, tokens, error, match):
    _unchanged(cache, lambda: cache.match_prefix(tokens), error, match)
    pages = cache.allocator.alloc(1)
    _unchanged(cache, lambda: cache.insert(tokens, pages), error, match, held=pages)


def test_numpy_integer_tokens_are_accepted(cache):
    assert cache.match_prefix(np.array([1, 2, 7, 8])).prefix_len == 4


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
    _unchanged(cache, lambda: cache.insert([9, 9], [free_page]), ValueError, "distinct and allocated")
    _unchanged(cache, lambda: cache.insert([9, 9], [42]), ValueError, "distinct and allocated")
    pages = cache.allocator.alloc(1)
    _unchanged(cache, lambda: cache.insert([9, 9, 9, 9], pages * 2), ValueError, "distinct and allocated",
               held=pages)


def test_pages_that_the_tree_already_owns_for_new_tokens(cache):
    tree_page = cache.match_prefix([1, 2]).pages[0]
    _unchanged(cache, lambda: cache.insert([9, 9], [tree_page]), ValueError, "already belong to the tree")


def test_double_free_through_the_allocator(cache):
    tree_pages = cache.match_prefix([1, 2, 3, 4]).pages
    cache.evict(10 ** 6)
    _unchanged(cache, lambda: cache.allocator.free(tree_pages), ValueError, "double free")


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


def test_negative_evict(cache):
    _unchanged(cache, lambda: cache.evict(-1), ValueError, "negative")
