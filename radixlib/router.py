"""Router: decides what of a request is cached, and hands pages back to the tree.

It is the only place that talks to both the ``RadixCache`` and the ``PageAllocator``
on a request's behalf (SGLang's counterparts on the right)::

    lookup(req)           tokens[:len-1] -> tree      the admission match    Req.init_next_round_input
    admit(req, found)     lock the hit, req.pages = hit pages             PrefillAdder.add_one_req's lock
    match(req)            lookup + admit
    reserve(req, n)       allocator -> req.pages      evict (policy order) if the pool is short
    cache_unfinished(req) req.pages -> tree           prompt so far, so others can hit it
                                                                          RadixCache.cache_unfinished_req
    cache_finished(req)   req.pages -> tree           prompt + output[:-1], then unlock
                                                      (SGLang: release_kv_cache -> cache_finished_req)
    release(req)          req.pages -> allocator      abort / retraction: nothing inserted, unlock
                                                      (SGLang: release_kv_cache(is_insert=False))

    serve(tokens)         all of the above for one prompt with no output (trace replays, the lab)

A request's tokens are its prompt and the output it has so far (a retracted request
keeps its output and computes both again). The scheduler sees only a narrow view:
``peek`` (the uncapped match it orders its queue by: SGLang's ``match_prefix_for_req``),
``free_tokens``, ``available_tokens``, ``unlocked_tokens``, ``capacity``, and
``evict_for`` (SGLang's ``evict_from_tree_cache``).

A request's own pages are ``req.pages[req.prefix_len // page_size:]``; the ones before
belong to tree nodes and are only borrowed (the lock keeps them alive).
"""
from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from .pages import OutOfPages, page_aligned, pages_needed
from .radix_cache import InvariantError, MatchResult, RadixCache, TreeNode
from .request import Request


class MatchStatus(enum.Enum):
    FULL = "full"          # everything matchable (all but the last token, in whole pages) was cached
    PARTIAL = "partial"    # some whole pages were cached
    MISS = "miss"          # nothing was cached


class Admission(NamedTuple):
    """What ``Router.match`` decided for a request."""
    status: MatchStatus
    prefix_len: int        # cached tokens the request will not compute
    pages: list[int]       # the tree's pages holding them
    node: TreeNode         # the locked end of the prefix


class Served(NamedTuple):
    """What ``Router.serve`` did with one prompt."""
    prefix_len: int        # prompt tokens the cache supplied (the rest were computed)
    stored: bool           # False: no room even after evicting, so the prompt was not cached


class Router:
    """Prefix matching, page reservation and caching for requests, over one cache.

    ``enable_cache=False``: every request is a miss and nothing is cached.
    """

    def __init__(self, cache: RadixCache, enable_cache: bool = True):
        self.cache = cache
        self.allocator = cache.allocator
        self.page_size = cache.page_size
        self.enable_cache = enable_cache
        self.evicted_tokens = 0           # freed by make_room and evict_for so far

    # ------------------------------------------------------- the scheduler's view
    @property
    def capacity(self) -> int:
        """Token slots in the whole pool."""
        return self.allocator.num_slots

    @property
    def free_tokens(self) -> int:
        """Tokens that could be allocated now: free slots plus what eviction could free."""
        return self.allocator.available * self.page_size + self.cache.evictable_size

    @property
    def available_tokens(self) -> int:
        """Free slots, without evicting (SGLang: ``allocator.available_size()``)."""
        return self.allocator.available * self.page_size

    def unlocked_tokens(self, node: TreeNode) -> int:
        """Cached tokens from ``node`` up to the root that no lock protects yet: what
        locking ``node`` would take out of ``free_tokens``."""
        return self.cache.unlocked_len(node)

    def evict_for(self, num_tokens: int) -> None:
        """With fewer than ``num_tokens`` free slots, evict ``num_tokens`` tokens' worth of
        unlocked leaves: the whole amount, not the shortfall (SGLang's ``evict_from_tree_cache``)."""
        if self.available_tokens < num_tokens:
            self.evicted_tokens += self.cache.evict(num_tokens)

    def peek(self, tokens: Sequence[int]) -> MatchResult:
        """The uncapped match of ``tokens`` the scheduler orders its queue by; locks nothing.

        Like every lookup it refreshes access times and may split a node (SGLang's
        ``match_prefix_for_req``). A disabled cache holds nothing, so it matches nothing.
        """
        return self.cache.match_prefix(tokens)

    # ------------------------------------------------------------ a request's life
    def lookup(self, req: Request) -> Admission:
        """The longest cached prefix of ``req.tokens``, capped so one token is left to compute.

        SGLang's ``Req.init_next_round_input``: prompt + output so far, at most
        ``len - 1`` tokens, in whole pages. Locks nothing and leaves ``req`` as it was;
        like every lookup it refreshes access times and may split a node.
        """
        cap = len(req.tokens) - 1                      # the last token must run for logits
        hit = self._admission_match(req.tokens[:cap]) if self.enable_cache and cap else None
        if hit is None:
            return Admission(MatchStatus.MISS, 0, [], self.cache.root)
        status = (MatchStatus.MISS if hit.prefix_len == 0 else
                  MatchStatus.FULL if hit.prefix_len == page_aligned(cap, self.page_size) else
                  MatchStatus.PARTIAL)
        return Admission(status, hit.prefix_len, list(hit.pages), hit.node)

    def _admission_match(self, tokens: Sequence[int]) -> MatchResult:
        """The cached prefix ``lookup`` admits (``hicache.HiRouter`` also loads host copies back)."""
        return self.cache.match_prefix(tokens)

    def admit(self, req: Request, found: Admission) -> None:
        """Lock ``found``'s prefix for ``req`` and lend it the tree's pages."""
        self._require_unadmitted(req)
        self.cache.lock(found.node)
        req.node, req.pages = found.node, list(found.pages)
        req.prefix_len = req.kv_len = found.prefix_len
        if not req.retractions:                        # SGLang counts hits up to the first retraction
            req.cached_tokens = found.prefix_len

    def match(self, req: Request) -> Admission:
        """``lookup`` and ``admit`` in one: give ``req`` its capped prefix, locked."""
        self._require_unadmitted(req)
        found = self.lookup(req)
        self.admit(req, found)
        return found

    def reserve(self, req: Request, num_tokens: int) -> None:
        """Grow ``req.pages`` to hold ``num_tokens`` tokens, evicting if the pool is short."""
        need = pages_needed(num_tokens, self.page_size) - len(req.pages)
        if need > 0:
            self.make_room(need)
            req.pages += self.allocator.alloc(need)

    def make_room(self, num_pages: int) -> None:
        """Evict until ``num_pages`` pages are free; ``OutOfPages`` (evicting nothing) if impossible."""
        short = num_pages - self.allocator.available
        if short <= 0:
            return
        if short * self.page_size > self.cache.evictable_size:
            raise OutOfPages(f"need {num_pages} free pages: {self.allocator.available} free and "
                             f"{self.cache.evictable_size // self.page_size} evictable")
        self.evicted_tokens += self.cache.evict(short * self.page_size)

    def cache_unfinished(self, req: Request) -> None:
        """After a prefill (or a chunk): put the whole pages computed so far into the tree.

        Like SGLang's ``cache_unfinished_req`` it inserts and looks up again even when
        the tree already holds them all: both refresh access times and count hits.
        """
        aligned = page_aligned(req.kv_len, self.page_size)
        if not self.enable_cache or not aligned:
            return
        self._insert(req, aligned)
        hit = self.cache.match_prefix(req.tokens[:aligned])     # tree's pages replace duplicates
        req.pages[: aligned // self.page_size] = hit.pages
        self.cache.lock(hit.node)
        self.cache.unlock(req.node)
        req.node, req.prefix_len = hit.node, aligned

    def cache_finished(self, req: Request) -> None:
        """At the end: cache prompt + output (less the last token, which has no K/V), unlock.

        Inserts even what the tree already holds, as ``cache_finished_req`` does.
        """
        aligned = page_aligned(req.kv_len, self.page_size) if self.enable_cache else 0
        if aligned:
            self._insert(req, aligned)
        self.allocator.free(req.pages[max(aligned, req.prefix_len) // self.page_size:])
        self._detach(req)

    def release(self, req: Request) -> None:
        """Abort or retraction: free the request's own pages, insert nothing, unlock."""
        self.allocator.free(req.pages[req.prefix_len // self.page_size:])
        self._detach(req)

    def serve(self, tokens: Sequence[int]) -> Served:
        """One prompt's whole life with no output: match, reserve, insert, unlock.

        What a trace replay needs: the prompt is computed (its suffix), then cached.
        A prompt that does not fit even after evicting is computed but not cached.
        """
        req = Request(-1, list(tokens))
        self.match(req)
        try:
            self.reserve(req, len(req.prompt))
        except OutOfPages:
            self.release(req)
            return Served(req.cached_tokens, False)
        req.kv_len = len(req.prompt)
        self.cache_finished(req)
        return Served(req.cached_tokens, True)

    # ------------------------------------------------------------------ checks
    def held_pages(self, requests: Iterable[Request]) -> list[int]:
        """The pages live requests own outside the tree (for ``check_invariants``)."""
        return [p for r in requests for p in r.pages[r.prefix_len // self.page_size:]]

    def check_invariants(self, requests: Iterable[Request]) -> None:
        """Tree, allocator and requests agree: every page is free, a node's, or one request's."""
        requests = list(requests)
        self.cache.check_invariants(held=self.held_pages(requests))
        for r in requests:
            if len(r.pages) < pages_needed(r.kv_len, self.page_size):
                raise InvariantError(f"request {r.rid} holds {len(r.pages)} pages for {r.kv_len} tokens")

    def _insert(self, req: Request, aligned: int) -> None:
        """Insert ``req.tokens[:aligned]``; free this request's pages the tree already had."""
        ps = self.page_size
        present = self.cache.insert(req.tokens[:aligned], req.pages[: aligned // ps])
        self.allocator.free(req.pages[req.prefix_len // ps: present // ps])

    def _require_unadmitted(self, req: Request) -> None:
        if req.node is not None or req.pages:
            raise ValueError(f"request {req.rid} is already admitted")

    def _detach(self, req: Request) -> None:
        self.cache.unlock(req.node)
        req.node, req.pages, req.prefix_len, req.kv_len = None, [], 0, 0
