"""Helpers the tests share: a caller that fills the cache the way the router will."""
from __future__ import annotations

import os

import pytest

from radixlib import PageAllocator, RadixCache
from radixlib.pages import page_aligned, pages_needed


def cache_tokens(cache: RadixCache, tokens: list[int], priority: int = 0) -> int:
    """Allocate pages for ``tokens``, insert them, free the duplicates and the unaligned tail.

    Returns the number of tokens that were already cached.
    """
    ps = cache.page_size
    pages = cache.allocator.alloc(pages_needed(len(tokens), ps))
    present = cache.insert(tokens, pages, priority=priority)
    aligned = page_aligned(len(tokens), ps) // ps
    cache.allocator.free(pages[: present // ps] + pages[aligned:])
    return present


def snapshot(cache: RadixCache) -> tuple:
    """Everything observable about a cache and its allocator."""
    alloc = cache.allocator
    return (str(cache), cache.clock, alloc.available, sorted(alloc.allocated()),
            cache.evictable_size, cache.protected_size)


def make_cache(num_pages: int = 64, page_size: int = 1, policy: str = "lru") -> RadixCache:
    return RadixCache(PageAllocator(num_pages, page_size), policy=policy)


def skip_or_fail(reason: str | None, required_by: str) -> None:
    """Skip the test for ``reason`` (something is missing), or fail if env ``required_by=1``."""
    if reason and os.environ.get(required_by) == "1":
        pytest.fail(f"{reason}, and {required_by}=1 requires it", pytrace=False)
    if reason:
        pytest.skip(reason)
