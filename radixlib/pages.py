"""Pages: the unit of KV memory.

The KV pool is cut into ``num_pages`` pages of ``page_size`` token slots each.
Page ``p`` owns the slots ``[p * page_size, (p + 1) * page_size)``::

    slot:  0 1 2 3 | 4 5 6 7 | 8 9 10 11 | ...
    page:     0    |    1    |     2     | ...        (page_size = 4)

A request that holds ``n`` tokens needs ``ceil(n / page_size)`` pages; the slots
past ``n`` in its last page are the alignment waste that chapter 01 measures.
"""
from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence


class OutOfPages(RuntimeError):
    """Raised by ``PageAllocator.alloc`` when fewer pages are free than asked for."""


class PageAllocator:
    """Hands out page ids ``0 .. num_pages-1``, lowest ready id first (deterministic).

    Like SGLang's paged allocator, freed pages are not sorted back in one by one: they
    wait in a released list, merged and sorted only when the ready list runs short::

        ready:    [9 8 7 6]  (descending; alloc pops the lowest from the end)
        released: [2 0]      (freed since the last merge)

    ``alloc`` and ``free`` validate everything before they change anything, so a
    failed call leaves the allocator exactly as it was.
    """

    def __init__(self, num_pages: int, page_size: int = 1):
        if num_pages < 1 or page_size < 1:
            raise ValueError(f"need num_pages >= 1 and page_size >= 1, got {num_pages}, {page_size}")
        self.num_pages = num_pages
        self.page_size = page_size
        self._ready = list(range(num_pages - 1, -1, -1))
        self._released: list[int] = []
        self._allocated: set[int] = set()

    @property
    def available(self) -> int:
        """Number of free pages."""
        return self.num_pages - len(self._allocated)

    @property
    def num_slots(self) -> int:
        return self.num_pages * self.page_size

    def alloc(self, n: int) -> list[int]:
        """Take ``n`` free pages (lowest ready ids first); ``OutOfPages`` if fewer are free."""
        if n < 0:
            raise ValueError(f"cannot allocate a negative number of pages ({n})")
        if n > self.available:
            raise OutOfPages(f"asked for {n} pages, only {self.available} of {self.num_pages} are free")
        if n > len(self._ready):                    # merge the released pages back in, sorted
            self._ready = sorted(self._ready + self._released, reverse=True)
            self._released = []
        pages = self._ready[len(self._ready) - n:][::-1]
        del self._ready[len(self._ready) - n:]
        self._allocated.update(pages)
        return pages

    def free(self, pages: Iterable[int], validate: bool = True) -> None:
        """Give pages back. Unknown ids, pages already free and repeats raise, freeing nothing.

        ``validate=False`` is for callers that own the pages by invariant (the tree's evict).
        """
        pages = list(pages)
        if validate:
            try:
                self.check_allocated(pages)
            except ValueError as e:
                raise ValueError(f"double free or unknown page: {e}") from None
        self._released += pages
        self._allocated.difference_update(pages)

    def is_free(self, page: int) -> bool:
        return page not in self._allocated

    def allocated(self) -> set[int]:
        """The ids of all pages currently handed out."""
        return set(self._allocated)

    def check_allocated(self, pages: Sequence[int]) -> None:
        """Raise ``ValueError`` unless ``pages`` are distinct ids of allocated pages."""
        try:                                        # all checks at C speed; explain only on failure
            array("q", pages)                       # every id an integer
            ok = len(set(pages)) == len(pages) and self._allocated.issuperset(pages)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(self._why_not_allocated(pages))

    def _why_not_allocated(self, pages: Sequence[int]) -> str:
        for i, p in enumerate(pages):
            if type(p) is not int or not 0 <= p < self.num_pages:
                return f"page id {p!r} is not an integer in 0..{self.num_pages - 1}"
            if p not in self._allocated:
                return f"page {p} is free"
            if p in pages[:i]:
                return f"page {p} appears twice"
        raise AssertionError("unreachable")

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
