"""Hashed blocks: vLLM v1's prefix cache, over the same pages as the radix tree.

No tree: each *full* block's hash chains its parent block's hash with its own token ids
(and extra keys: a cache salt on the first block), and one table maps hash -> blocks.
Read in vllm 0.33.0, ``vllm/v1/core/``: ``kv_cache_utils.py`` (``hash_block_tokens``,
``FreeKVCacheBlockQueue``), ``block_pool.py`` (``BlockPool``), ``single_type_kv_cache_manager.py``
(``FullAttentionManager.find_longest_cache_hit``, ``free``), ``kv_cache_manager.py``::

    tokens  [a b c d | e f g h | i j]          block_size 4; the partial block gets no hash
    hashes   h0 = H(seed, abcd, salt)   h1 = H(h0, efgh, None)
    table   {h0: [page 7], h1: [page 3]}       a lookup walks h0, h1, ... and stops at a miss
    queue   [page 9, page 3, page 7]           cached pages nobody holds; the front goes first

A page is a block; one nobody holds is free in the allocator (no hash) or queued (cached).
A request frees its pages tail first; a queued page is evicted only when an allocation
pops it, and its table entry goes then. Hits stop at ``len - 1`` tokens, in whole blocks.
Equal blocks are not merged: a block computed again is cached again, under the same hash.
``H`` is vLLM's default ``sha256`` (of the pickled ``(parent, tokens, extra keys)``, the first
parent from the seed ``"vllm-none-hash"``), so the hashes equal vLLM's byte for byte.
"""
from __future__ import annotations

import hashlib
import pickle
import sys
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .pages import PageAllocator, pages_needed
from .radix_cache import InvariantError, token_array
from .replay import Replay, replay_through
from .router import Served

SEED = "vllm-none-hash"            # vLLM's NONE_HASH seed when PYTHONHASHSEED is unset


def sha256_pickle(obj: Any) -> bytes:
    """vLLM's default block hash (``sha256``): SHA-256 of ``obj`` pickled with the highest protocol."""
    return hashlib.sha256(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).digest()


def block_hashes(tokens: Sequence[int], block_size: int, cache_salt: str | None = None,
                 hash_fn: Callable[[Any], Any] = sha256_pickle, known: Sequence[Any] = ()) -> list[Any]:
    """The chained hash of every full block of ``tokens``, after the ``known`` leading ones.

    Block ``i`` hashes ``(hash of block i-1, its tokens, extra keys)``; block 0's parent is
    ``hash_fn(SEED)`` and its extra keys ``(("cache_salt", salt),)`` if salted, else ``None``.
    """
    hashes = list(known)
    for start in range(len(hashes) * block_size, len(tokens) - block_size + 1, block_size):
        parent = hashes[-1] if hashes else hash_fn(SEED)
        extra = (("cache_salt", cache_salt),) if start == 0 and cache_salt else None
        hashes.append(hash_fn((parent, tuple(tokens[start: start + block_size]), extra)))
    return hashes


@dataclass
class BlockRequest:
    """A request's view of the cache: its tokens, their block hashes and its pages."""
    tokens: list[int]
    cache_salt: str | None
    hashes: list[Any]                          # one per full block of tokens
    pages: list[int] = field(default_factory=list)
    prefix_len: int = 0                        # tokens the cache supplied at admission
    num_cached: int = 0                        # leading pages already entered in the table
    owner: Any = field(default=None, repr=False)   # the cache holding its pages (None once freed)


class BlockCache:
    """vLLM v1's prefix caching (one full-attention group) over a ``PageAllocator``."""

    def __init__(self, allocator: PageAllocator, hash_fn: Callable[[Any], Any] = sha256_pickle):
        self.allocator, self.block_size, self.hash_fn = allocator, allocator.page_size, hash_fn
        self._table: dict[Any, list[int]] = {}         # hash -> pages with that block (lookups take the first)
        self._hash: dict[int, Any] = {}                # cached page -> its hash
        self._refs: dict[int, int] = {}                # held page -> requests holding it
        self._queue: OrderedDict[int, None] = OrderedDict()   # cached pages nobody holds, LRU first
        self.evicted_blocks = 0

    @property
    def free_pages(self) -> int:
        """Pages an allocation may take: free ones, then cached ones nobody holds."""
        return self.allocator.available + len(self._queue)

    def request(self, tokens: Sequence[int], cache_salt: str | None = None) -> BlockRequest:
        """Validate ``tokens`` and the salt, and hash the full blocks (vLLM hashes a request on arrival)."""
        if cache_salt is not None and not isinstance(cache_salt, str):
            raise TypeError(f"cache_salt must be a string or None, got {cache_salt!r}")
        tokens = token_array(tokens).tolist()
        return BlockRequest(tokens, cache_salt, block_hashes(tokens, self.block_size, cache_salt, self.hash_fn))

    def lookup(self, hashes: Sequence[Any], max_tokens: int) -> list[int]:
        """Pages of the longest run of cached blocks from the start, ``max_tokens`` at most."""
        pages = []
        for h in hashes[: max_tokens // self.block_size]:
            if h not in self._table:
                break
            pages.append(self._table[h][0])
        return pages

    def peek(self, tokens: Sequence[int], cache_salt: str | None = None) -> int:
        """Cached tokens ``admit`` would give ``tokens`` now; changes nothing."""
        req = self.request(tokens, cache_salt)
        return len(self.lookup(req.hashes, len(req.tokens) - 1)) * self.block_size

    def admit(self, tokens: Sequence[int], cache_salt: str | None = None) -> BlockRequest | None:
        """Hold the hit (all but the last token, whole blocks), allocate the rest, cache full blocks.

        ``None`` (nothing changed) if the free pages do not cover it; a hit page that waits
        in the queue counts against them, since holding it takes it out.
        """
        req = self.request(tokens, cache_salt)
        hit = self.lookup(req.hashes, len(req.tokens) - 1)
        fresh = pages_needed(len(req.tokens), self.block_size) - len(hit)
        if fresh + sum(page in self._queue for page in hit) > self.free_pages:
            return None
        for page in hit:
            self._queue.pop(page, None)
            self._refs[page] = self._refs.get(page, 0) + 1
        req.pages = hit + self._take(fresh)
        req.num_cached, req.prefix_len, req.owner = len(hit), len(hit) * self.block_size, self
        self._cache_full(req)
        return req

    def extend(self, req: BlockRequest, tokens: Sequence[int]) -> bool:
        """Append computed tokens (decode) and cache the blocks they fill; ``False``: no room, no change."""
        self._check_live(req)
        new = tuple(token_array(tokens))
        fresh = pages_needed(len(req.tokens) + len(new), self.block_size) - len(req.pages)
        if fresh > self.free_pages:
            return False
        req.tokens += new
        req.hashes = block_hashes(req.tokens, self.block_size, req.cache_salt, self.hash_fn, req.hashes)
        req.pages += self._take(fresh)
        self._cache_full(req)
        return True

    def free(self, req: BlockRequest) -> None:
        """Release the request's pages tail first: cached ones join the queue's end, the rest are freed."""
        self._check_live(req)
        plain = []
        for page in reversed(req.pages):
            self._refs[page] -= 1
            if self._refs[page] == 0:
                del self._refs[page]
                if page in self._hash:
                    self._queue[page] = None
                else:
                    plain.append(page)
        self.allocator.free(plain)
        req.pages, req.owner = [], None

    def serve(self, tokens: Sequence[int], cache_salt: str | None = None) -> Served:
        """One prompt's life with no output: admit, then free (a prompt that cannot fit is not cached)."""
        req = self.admit(tokens, cache_salt)
        if req is None:
            return Served(self.peek(tokens, cache_salt), False)
        self.free(req)
        return Served(req.prefix_len, True)

    def snapshot(self) -> tuple[list[Any], list[Any]]:
        """The queue's hashes (next victim first), and every cached block's hash (sorted, with repeats)."""
        return [self._hash[page] for page in self._queue], sorted(self._hash.values())

    def _take(self, n: int) -> list[int]:
        """``n`` pages: free ones first, then the queue's front, whose table entries go (evicted)."""
        pages = self.allocator.alloc(min(n, self.allocator.available))
        while len(pages) < n:
            page, _ = self._queue.popitem(last=False)
            h = self._hash.pop(page)
            self._table[h].remove(page)
            if not self._table[h]:
                del self._table[h]
            self.evicted_blocks += 1
            pages.append(page)
        self._refs.update((page, 1) for page in pages)
        return pages

    def _cache_full(self, req: BlockRequest) -> None:
        """Enter the request's newly full blocks in the table (even where an equal block is)."""
        for page, h in zip(req.pages[req.num_cached: len(req.hashes)], req.hashes[req.num_cached:]):
            self._hash[page] = h
            self._table.setdefault(h, []).append(page)
        req.num_cached = len(req.hashes)

    def _check_live(self, req: BlockRequest) -> None:
        if req.owner is not self:
            raise ValueError("the request holds no pages of this cache (already freed, or admitted elsewhere)")

    def check_invariants(self, requests: Iterable[BlockRequest]) -> None:
        """Each page is free, queued or held; refs count holders; the table and page hashes agree."""
        holds = Counter(page for r in requests for page in r.pages)
        queued, cached = self._queue.keys(), self._hash.keys()
        _require(holds == self._refs, f"ref counts {self._refs} != holders {holds}")
        _require(queued <= cached and not queued & self._refs.keys(), "a queued page is uncached or held")
        held_or_queued = self._refs.keys() | queued
        _require(self.allocator.allocated() == held_or_queued and cached <= held_or_queued, "allocator disagrees")
        table = sorted((page, h) for h, pages in self._table.items() for page in pages)
        _require(table == sorted(self._hash.items()), "the table and the page hashes disagree")


def replay_blocks(prompts: Sequence[Sequence[int]], num_pages: int, block_size: int) -> Replay:
    """Serve ``prompts`` in order through a fresh ``BlockCache`` (``replay.replay``'s twin: one
    request at a time, to its end before the next; vLLM's scheduler loop is not modelled)."""
    cache = BlockCache(PageAllocator(num_pages, block_size))
    run = replay_through(cache.serve, cache.allocator, prompts, "blocks")
    cache.check_invariants([])
    return run


def metadata_bytes(root: Any, exclude: Iterable[Any] = ()) -> int:
    """``sys.getsizeof`` of every object reachable from ``root`` (items, attributes), each once,
    stopping at ``exclude``, classes, functions and modules."""
    seen, stack, total = {id(x) for x in exclude}, [root], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, ModuleType)) or callable(obj):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack += obj
        else:
            stack += [*getattr(obj, "__dict__", {}).values()]
            stack += [getattr(obj, s) for s in getattr(type(obj), "__slots__", ()) if hasattr(obj, s)]
    return total


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InvariantError(message)
