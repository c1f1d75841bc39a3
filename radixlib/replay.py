"""Replaying a prompt stream through a cache: hit rate, occupancy, and Belady's optimum.

A replay serves each prompt through ``Router.serve``, one request at a time and to the end
before the next: match all but the last token, lock the hit, allocate pages for the rest
(evicting only the shortfall), insert the prompt once, free the duplicate pages and the
unaligned tail, unlock. Which loop that models: SGLang's with one request in flight and no
output tokens, insert-at-finish only. It is NOT SGLang's serving loop, which also checkpoints
the prompt into the tree after its prefill (0.5.12 counted a second hit there) and, in 0.5.12,
evicted the whole need rather than the shortfall. It records, per request, the tokens served
from the cache, so one run gives the hit rate, the cached-vs-computed split and the pool's
occupancy over time (chapters 00 and 03).

``belady`` replays the same stream through a clairvoyant cache of whole pages: when it
must make room it drops the page whose next use lies furthest in the future (Belady's
MIN). A page stands for its whole prefix, and a child page is never needed before its
parent, so MIN keeps the cache prefix-closed and its hit rate is the ceiling that no
online policy reaches. Its hits obey the same len-1 cap as the router's.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .pages import PageAllocator, page_aligned, pages_needed
from .radix_cache import RadixCache
from .router import Router


class Replay(NamedTuple):
    """What one replay saw, request by request."""
    eviction: str           # the eviction policy ("belady" for the clairvoyant optimum)
    num_pages: int
    page_size: int
    prefix_lens: list[int]  # prompt tokens served from the cache
    prompt_lens: list[int]  # prompt tokens
    occupancy: list[int]    # pages held by the cache after the request

    @property
    def hit_rate(self) -> float:
        """Cached prompt tokens over all prompt tokens."""
        return sum(self.prefix_lens) / sum(self.prompt_lens)


def replay(prompts: Sequence[Sequence[int]], num_pages: int, page_size: int,
           eviction: str = "lru") -> Replay:
    """Serve ``prompts`` in order (``Router.serve``) through a fresh cache of ``num_pages`` pages."""
    router = Router(RadixCache(PageAllocator(num_pages, page_size), eviction))
    run = replay_through(router.serve, router.allocator, prompts, eviction)
    router.check_invariants([])
    return run


def replay_through(serve: Callable[[Sequence[int]], Any], allocator: PageAllocator,
                   prompts: Sequence[Sequence[int]], name: str) -> Replay:
    """Serve ``prompts`` in order through ``serve`` (its result has a ``prefix_len``),
    recording each prefix length and the pages of ``allocator`` in use after it."""
    prefix_lens, occupancy = [], []
    for tokens in prompts:
        prefix_lens.append(serve(tokens).prefix_len)
        occupancy.append(allocator.num_pages - allocator.available)
    return Replay(name, allocator.num_pages, allocator.page_size, prefix_lens, [len(p) for p in prompts], occupancy)


def prefix_page_ids(prompts: Sequence[Sequence[int]], page_size: int) -> list[list[int]]:
    """Each prompt's whole pages as ids, where an id names a page *and its whole prefix*.

    Two prompts get the same id for their k-th page exactly when their first k pages agree.
    """
    ids: dict[tuple[int, tuple[int, ...]], int] = {}
    out = []
    for tokens in prompts:
        parent, row = -1, []
        for start in range(0, page_aligned(len(tokens), page_size), page_size):
            parent = ids.setdefault((parent, tuple(tokens[start: start + page_size])), len(ids))
            row.append(parent)
        out.append(row)
    return out


def hittable_pages(prompt_len: int, page_size: int) -> int:
    """How many of a prompt's leading pages can be served from the cache: the whole pages of all
    but its last token (the router's len-1 cap; a one-token prompt can hit nothing)."""
    return max(prompt_len - 1, 0) // page_size


def next_uses(rows: list[list[int]], hittable: list[int]) -> list[list[int]]:
    """For each page of each request, the index of the next request that can HIT it (or len):
    a later request whose first ``hittable`` pages include it. A use beyond the cap (the last
    page of a prompt, a one-token prompt) re-inserts the page but can never be served by it,
    so it does not count: keeping a page for such a use would be wasted room."""
    upcoming: dict[int, int] = {}
    out = [[] for _ in rows]
    for i in range(len(rows) - 1, -1, -1):
        out[i] = [upcoming.get(page, len(rows)) for page in rows[i]]
        upcoming.update((page, i) for page in rows[i][:hittable[i]])
    return out


def belady(prompts: Sequence[Sequence[int]], num_pages: int, page_size: int) -> Replay:
    """Belady's MIN over whole pages: the best hit rate any eviction order can reach.

    After each request every page it used is cached; while more than ``num_pages`` are
    cached, the one whose next *hit* lies furthest in the future goes (deeper pages first on
    ties, so a child never outlives its parent). Hits are the leading cached pages of each
    prompt, at most the whole pages of all but its last token (the router's cap), and only
    such uses count as a page's next use (``next_uses``): counting a use that cannot hit
    would keep a useless page, and an online policy could then beat "the optimum".
    """
    rows = prefix_page_ids(prompts, page_size)
    hittable = [hittable_pages(len(p), page_size) for p in prompts]
    cached_at: dict[int, int] = {}          # page -> its next use (valid heap entry)
    heap: list[tuple[int, int, int]] = []   # (-next use, -depth, page), stale entries skipped
    prefix_lens, occupancy = [], []
    for row, cap, uses in zip(rows, hittable, next_uses(rows, hittable)):
        hit = next((d for d, page in enumerate(row[:cap]) if page not in cached_at), cap)
        prefix_lens.append(hit * page_size)
        for depth, (page, use) in enumerate(zip(row, uses)):
            cached_at[page] = use
            heapq.heappush(heap, (-use, -depth, page))
        while len(cached_at) > num_pages:
            use, _, page = heapq.heappop(heap)
            if cached_at.get(page) == -use:
                del cached_at[page]
        occupancy.append(len(cached_at))
    return Replay("belady", num_pages, page_size, prefix_lens, [len(p) for p in prompts], occupancy)


def distinct_pages(prompts: Sequence[Sequence[int]], page_size: int) -> int:
    """Whole pages an unbounded cache would end up holding (distinct prefixes)."""
    return len({page for row in prefix_page_ids(prompts, page_size) for page in row})


def capacity_pages(prompts: Sequence[Sequence[int]], page_size: int, fractions: Sequence[float]) -> list[int]:
    """Pages for each capacity (a fraction of ``distinct_pages``), never fewer than the longest prompt needs."""
    distinct = distinct_pages(prompts, page_size)
    longest = max(pages_needed(len(p), page_size) for p in prompts)
    return [max(longest, int(distinct * f)) for f in fractions]


def hit_rate_curves(prompts: Sequence[Sequence[int]], page_size: int, fractions: Sequence[float],
                    evictions: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
    """Hit rate at each capacity (a fraction of ``distinct_pages``) per eviction policy, plus ``"belady"``."""
    sizes = capacity_pages(prompts, page_size, fractions)
    curves = {name: [(f, replay(prompts, n, page_size, name).hit_rate) for f, n in zip(fractions, sizes)]
              for name in evictions}
    curves["belady"] = [(f, belady(prompts, n, page_size).hit_rate) for f, n in zip(fractions, sizes)]
    return curves
