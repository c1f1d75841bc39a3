"""The two sides of a cache comparison: our ``RadixCache`` and SGLang's own.

Both replay the same stream of operations (``ops.py``) and report their outcomes in
one common form; pages are our cache's currency, and SGLang's slot indices are
translated to pages (page ``p`` = slots ``p * page_size .. p * page_size + page_size - 1``).
"""
from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any

import torch

from radixlib.pages import PageAllocator
from radixlib.radix_cache import MatchResult, RadixCache, TreeNode

from .ops import (
    Alloc,
    Evict,
    Evicted,
    Free,
    Insert,
    Lock,
    Match,
    Matched,
    Op,
    Pages,
    RawNode,
    Side,
    Sizes,
    Unlock,
    depth_first,
)
from .sglang import load_sglang


class RecordingAllocator(PageAllocator):
    """A ``PageAllocator`` that also keeps the pages of every ``reclaim`` (the tree's
    frees, one per evicted node), in order."""

    def __init__(self, num_pages: int, page_size: int):
        super().__init__(num_pages, page_size)
        self.freed: list[list[int]] = []

    def reclaim(self, pages: list[int]) -> None:
        super().reclaim(pages)
        self.freed.append(pages)        # an evicted node's own list, never changed again


class OursSide(Side):
    """radixlib's ``RadixCache`` over a pool of ``num_pages`` pages (a ``RecordingAllocator``
    unless ``pool`` names another class with its interface)."""

    name = "radixlib"

    def __init__(self, num_pages: int, page_size: int, eviction: str, pool: type = RecordingAllocator):
        self.allocator = pool(num_pages, page_size)
        self.cache = RadixCache(self.allocator, eviction)
        self._nodes: dict[int, TreeNode] = {}     # Match op index -> the node it returned
        self._calls = {Match: self._match, Insert: self._insert, Lock: self._lock, Unlock: self._unlock,
                       Evict: self._evict, Alloc: self._alloc, Free: self._free}

    def prepare(self, op: Op) -> tuple:
        match op:
            case Match(tokens):
                return (list(tokens),)
            case Insert(tokens, pages, priority):
                return list(tokens), list(pages), priority
            case Free(pages):
                return (list(pages),)
        return tuple(op)            # a Match index (Lock, Unlock) or a count (Evict, Alloc)

    def call(self, index: int, op: Op, args: tuple) -> Any:
        return self._calls[type(op)](index, *args)

    def _match(self, index: int, tokens: list[int]) -> MatchResult:
        found = self.cache.match_prefix(tokens)
        self._nodes[index] = found.node
        return found

    def _insert(self, index: int, tokens: list[int], pages: list[int], priority: int) -> int:
        return self.cache.insert(tokens, pages, priority)

    def _lock(self, index: int, ref: int) -> None:
        self.cache.lock(self._nodes[ref])

    def _unlock(self, index: int, ref: int) -> None:
        self.cache.unlock(self._nodes[ref])

    def _evict(self, index: int, num_tokens: int) -> int:
        self.allocator.freed.clear()
        return self.cache.evict(num_tokens)

    def _alloc(self, index: int, num_pages: int) -> list[int]:
        return self.allocator.alloc(num_pages)

    def _free(self, index: int, pages: list[int]) -> None:
        self.allocator.free(pages)

    def result(self, op: Op, raw: Any) -> Matched | Evicted | int | None:
        match op:
            case Match():
                return Matched(raw.prefix_len, tuple(raw.pages), len(raw.node.key))
            case Evict():
                return Evicted(raw, tuple(map(tuple, self.allocator.freed)))
        return raw

    def sizes(self) -> Sizes:
        return Sizes(self.cache.evictable_size, self.cache.protected_size)

    def total_size(self) -> int:
        return self.cache.total_size

    def snapshot(self) -> Iterator[RawNode]:
        for node, depth in depth_first(self.cache.root):
            yield RawNode(depth, tuple(node.key), tuple(node.pages), node.lock_ref, node.hits,
                          node.priority, node.last_access, node.created)


class SlotRecorder:
    """Mock token-to-KV allocator. SGLang's cache only calls ``free`` (when it
    evicts a node); each call's slots are kept, in order."""

    device = "cpu"

    def __init__(self):
        self.freed: list[torch.Tensor] = []

    def free(self, slots: torch.Tensor) -> None:
        self.freed.append(slots)


class SGLangSide(Side):
    """SGLang's ``RadixCache``; a page ``p`` of the stream becomes its slots."""

    name = "SGLang"

    def __init__(self, page_size: int, eviction: str):
        self.sg = load_sglang()
        self.page_size = page_size
        self.allocator = SlotRecorder()
        self.cache = self.sg.RadixCache(self.sg.CacheInitParams(
            disable=False, req_to_token_pool=None, token_to_kv_pool_allocator=self.allocator,
            page_size=page_size, eviction_policy=eviction))
        self._nodes: dict[int, Any] = {}          # Match op index -> the node it returned
        self._calls = {Match: self._match, Insert: self._insert, Lock: self._lock, Unlock: self._unlock,
                       Evict: self._evict, Alloc: self._caller_op, Free: self._caller_op}

    def prepare(self, op: Op) -> tuple:
        sg = self.sg
        match op:
            case Match(tokens):
                return (sg.MatchPrefixParams(key=sg.RadixKey(list(tokens))),)
            case Insert(tokens, pages, priority):
                slots = slot_tensor(pages, self.page_size, len(tokens))
                return (sg.InsertParams(key=sg.RadixKey(list(tokens)), value=slots, priority=priority),)
            case Evict(num_tokens):
                return (sg.EvictParams(num_tokens=num_tokens),)
        return tuple(op)            # a Match index (Lock, Unlock); Alloc, Free are not the cache's

    def call(self, index: int, op: Op, args: tuple) -> Any:
        return self._calls[type(op)](index, *args)

    def _match(self, index: int, params: Any) -> Any:
        found = self.cache.match_prefix(params)
        self._nodes[index] = found.last_device_node
        return found

    def _insert(self, index: int, params: Any) -> Any:
        return self.cache.insert(params)

    def _lock(self, index: int, ref: int) -> Any:
        return self.cache.inc_lock_ref(self._nodes[ref])

    def _unlock(self, index: int, ref: int) -> Any:
        return self.cache.dec_lock_ref(self._nodes[ref])

    def _evict(self, index: int, params: Any) -> Any:
        self.allocator.freed.clear()
        return self.cache.evict(params)

    def _caller_op(self, index: int, *args: Any) -> None:
        return None                 # Alloc, Free: the caller's pool, not the cache's

    def result(self, op: Op, raw: Any) -> Matched | Evicted | int | None:
        match op:
            case Match():
                node = raw.last_device_node
                return Matched(len(raw.device_indices), self.pages(raw.device_indices), len(node.key))
            case Insert():
                return raw.prefix_len
            case Evict():
                return Evicted(raw.num_tokens_evicted, tuple(map(self.pages, self.allocator.freed)))
        return None                 # Lock, Unlock

    def sizes(self) -> Sizes:
        return Sizes(self.cache.evictable_size(), self.cache.protected_size())

    def total_size(self) -> int:
        return self.cache.total_size()

    def snapshot(self) -> Iterator[RawNode]:
        for node, depth in depth_first(self.cache.root_node):
            yield RawNode(depth, tuple(node.key.token_ids), self.pages(node.value), node.lock_ref,
                          node.hit_count, node.priority, node.last_access_time, node.creation_time)

    def pages(self, slots: torch.Tensor) -> Pages:
        """The pages whose slots ``slots`` are; ``ValueError`` unless they are whole pages."""
        ps = self.page_size
        if ps == 1:
            return tuple(slots.tolist())
        pages = slots[::ps] // ps
        if not torch.equal(slots, (pages[:, None] * ps + torch.arange(ps)).view(-1)):
            raise ValueError(f"SGLang returned slots that are not whole pages: {slots.tolist()[:32]}")
        return tuple(pages.tolist())


def slot_tensor(pages: Pages, page_size: int, num_tokens: int) -> torch.Tensor:
    """``pages.slots_of`` as an int64 tensor, built with tensor operations.

    pages [5, 2], page_size 4, num_tokens 6  ->  tensor([20 21 22 23 | 8 9])
    """
    if not pages:
        return torch.empty(0, dtype=torch.int64)
    ids = torch.frombuffer(array("q", pages), dtype=torch.int64)      # keeps the array alive
    if page_size == 1:
        return ids[:num_tokens]
    return (ids[:, None] * page_size + torch.arange(page_size)).reshape(-1)[:num_tokens]
