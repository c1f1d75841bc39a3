"""Our RadixCache as one side of the comparison."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from radixlib import PageAllocator, RadixCache, TreeNode

from .ops import (Alloc, Evict, Evicted, Free, Insert, Lock, Match, Matched, Op, Pages,
                  RawNode, Side, Sizes, Unlock, depth_first)


class RecordingAllocator(PageAllocator):
    """A ``PageAllocator`` that also keeps the pages of every ``free`` call, in order."""

    def __init__(self, num_pages: int, page_size: int):
        super().__init__(num_pages, page_size)
        self.freed: list[Pages] = []

    def free(self, pages: Iterable[int], validate: bool = True) -> None:
        pages = tuple(pages)
        super().free(pages, validate)
        self.freed.append(pages)


class OursSide(Side):
    """radixlib's ``RadixCache`` over a pool of ``num_pages`` pages (a ``RecordingAllocator``
    unless ``pool`` names another class with its interface)."""

    name = "radixlib"

    def __init__(self, num_pages: int, page_size: int, policy: str, pool: type = RecordingAllocator):
        self.allocator = pool(num_pages, page_size)
        self.cache = RadixCache(self.allocator, policy)
        self._nodes: dict[int, TreeNode] = {}     # Match op index -> the node it returned

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
        match op:
            case Match():
                found = self.cache.match_prefix(*args)
                self._nodes[index] = found.node
                return found
            case Insert():
                return self.cache.insert(*args)
            case Lock(ref):
                return self.cache.lock(self._nodes[ref])
            case Unlock(ref):
                return self.cache.unlock(self._nodes[ref])
            case Evict():
                self.allocator.freed.clear()
                return self.cache.evict(*args)
            case Alloc():
                return self.allocator.alloc(*args)
            case Free():
                return self.allocator.free(*args)

    def result(self, op: Op, raw: Any) -> Matched | Evicted | int | None:
        match op:
            case Match():
                return Matched(raw.length, tuple(raw.pages), len(raw.node.key))
            case Evict():
                return Evicted(raw, tuple(self.allocator.freed))
        return raw

    def sizes(self) -> Sizes:
        return Sizes(self.cache.evictable_size, self.cache.protected_size)

    def total_size(self) -> int:
        return self.cache.total_size

    def snapshot(self) -> Iterator[RawNode]:
        for node, depth in depth_first(self.cache.root):
            yield RawNode(depth, node.key, tuple(node.pages), node.lock_ref, node.hits,
                          node.priority, node.last_access, node.created)
