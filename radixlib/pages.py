"""Pages: the unit of KV memory.

The KV pool is cut into ``num_pages`` pages of ``page_size`` token slots each.
Page ``p`` owns the slots ``[p * page_size, (p + 1) * page_size)``::

    slot:  0 1 2 3 | 4 5 6 7 | 8 9 10 11 | ...
    page:     0    |    1    |     2     | ...        (page_size = 4)

A request that holds ``n`` tokens needs ``ceil(n / page_size)`` pages; the slots
past ``n`` in its last page are the alignment waste that chapter 01 measures.
"""
from __future__ import annotations

import heapq
from typing import Iterable, Sequence


class OutOfPages(RuntimeError):
    """Raised by ``PageAllocator.alloc`` when fewer pages are free than asked for."""


class PageAllocator:
    """Hands out page ids ``0 .. num_pages-1``; lowest free id first (deterministic).

    ``alloc`` and ``free`` validate everything before they change anything, so a
    failed call leaves the allocator exactly as it was.
    """

    def __init__(self, num_pages: int, page_size: int = 1):
        if num_pages < 1 or page_size < 1:
            raise ValueError(f"need num_pages >= 1 and page_size >= 1, got {num_pages}, {page_size}")
        self.num_pages = num_pages
        self.page_size = page_size
        self._free_heap = list(range(num_pages))  # a sorted list is already a heap
        self._is_free = [True] * num_pages

    @property
    def available(self) -> int:
        """Number of free pages."""
        return len(self._free_heap)

    @property
    def num_slots(self) -> int:
        return self.num_pages * self.page_size

    def alloc(self, n: int) -> list[int]:
        """Take ``n`` free pages (lowest ids first); ``OutOfPages`` if fewer are free."""
        if n < 0:
            raise ValueError(f"cannot allocate a negative number of pages ({n})")
        if n > self.available:
            raise OutOfPages(f"asked for {n} pages, only {self.available} of {self.num_pages} are free")
        pages = [heapq.heappop(self._free_heap) for _ in range(n)]
        for p in pages:
            self._is_free[p] = False
        return pages

    def free(self, pages: Iterable[int]) -> None:
        """Give pages back. Unknown ids, pages already free and repeats raise, freeing nothing."""
        pages = list(pages)
        self._check_allocated(pages)
        for p in pages:
            self._is_free[p] = True
            heapq.heappush(self._free_heap, p)

    def is_free(self, page: int) -> bool:
        return self._is_free[page]

    def allocated(self) -> set[int]:
        """The ids of all pages currently handed out."""
        return {p for p, free in enumerate(self._is_free) if not free}

    def _check_allocated(self, pages: Sequence[int]) -> None:
        if len(set(pages)) != len(pages):
            raise ValueError(f"double free: a page appears twice in {sorted(pages)}")
        for p in pages:
            if type(p) is not int or not 0 <= p < self.num_pages:
                raise ValueError(f"page id {p!r} is not in 0..{self.num_pages - 1}")
            if self._is_free[p]:
                raise ValueError(f"double free: page {p} is not allocated")

    def __repr__(self) -> str:
        return (f"PageAllocator(num_pages={self.num_pages}, page_size={self.page_size}, "
                f"available={self.available})")


def pages_needed(num_tokens: int, page_size: int) -> int:
    """Pages that hold ``num_tokens`` tokens: ``ceil(num_tokens / page_size)``."""
    return -(-num_tokens // page_size)


def page_aligned(num_tokens: int, page_size: int) -> int:
    """The largest multiple of ``page_size`` that is ``<= num_tokens``."""
    return num_tokens - num_tokens % page_size


def slots_of(pages: Sequence[int], page_size: int, num_tokens: int | None = None) -> list[int]:
    """Slot ids of the first ``num_tokens`` tokens stored in ``pages`` (all of them by default).

    pages [5, 2], page_size 4, num_tokens 6  ->  [20 21 22 23 | 8 9]
    """
    slots = [p * page_size + i for p in pages for i in range(page_size)]
    return slots if num_tokens is None else slots[:num_tokens]
