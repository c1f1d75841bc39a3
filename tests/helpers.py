"""Helpers the tests share.

Request-level tests go through the ``Router`` (``serve``, or its request calls); the
cache's own unit tests use ``insert_tokens``, the bare caller of ``RadixCache.insert``
(no match, no lock), because they test ``insert`` itself.
"""
from __future__ import annotations

import os

import pytest

from radixlib import PageAllocator, RadixCache
from radixlib.pages import pages_needed
from radixlib.request import Request
from radixlib.router import Router


def insert_tokens(cache: RadixCache, tokens: list[int], priority: int = 0) -> int:
    """Allocate pages for ``tokens``, insert them, give back the pages the tree did not take.

    Returns ``insert``'s answer: how many tokens were already cached.
    """
    ps = cache.page_size
    pages = cache.allocator.alloc(pages_needed(len(tokens), ps))
    present = cache.insert(tokens, pages, priority=priority)
    cache.allocator.free(pages[: present // ps] + pages[len(tokens) // ps:])
    return present


def prefill(router: Router, req: Request) -> None:
    """What the engine does around one prefill: match, reserve, (forward), cache_unfinished."""
    router.match(req)
    router.reserve(req, len(req.prompt))
    req.kv_len = len(req.prompt)
    router.cache_unfinished(req)


def finish(router: Router, req: Request, output: list[int]) -> None:
    """What the engine does after decoding ``output``: reserve its K/V, cache_finished."""
    req.output = list(output)
    router.reserve(req, len(req.prompt) + len(output) - 1)
    req.kv_len = len(req.prompt) + len(output) - 1        # the last token has no K/V yet
    router.cache_finished(req)


def snapshot(cache: RadixCache) -> tuple:
    """Everything observable about a cache and its allocator."""
    alloc = cache.allocator
    return (str(cache), cache.clock, alloc.available, sorted(alloc.allocated()),
            cache.evictable_size, cache.protected_size)


def make_cache(num_pages: int = 64, page_size: int = 1, eviction: str = "lru") -> RadixCache:
    return RadixCache(PageAllocator(num_pages, page_size), eviction)


def skip_or_fail(reason: str | None, required_by: str) -> None:
    """Skip the test for ``reason`` (something is missing), or fail if env ``required_by=1``."""
    if reason and os.environ.get(required_by) == "1":
        pytest.fail(f"{reason}, and {required_by}=1 requires it", pytrace=False)
    if reason:
        pytest.skip(reason)
