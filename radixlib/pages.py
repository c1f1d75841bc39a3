"""Pages: the unit of KV memory, and who owns each one.

The KV pool is cut into ``num_pages`` pages of ``page_size`` token slots each.
Page ``p`` owns the slots ``[p * page_size, (p + 1) * page_size)``::

    slot:  0 1 2 3 | 4 5 6 7 | 8 9 10 11 | ...
    page:     0    |    1    |     2     | ...        (page_size = 4)

A request that holds ``n`` tokens needs ``ceil(n / page_size)`` pages; the slots
past ``n`` in its last page are the alignment waste that chapter 01 measures.

Every page has exactly one owner, and the allocator knows which (the page manager
and the radix cache are coupled by construction)::

    free ──alloc──► held by a caller ──adopt──► the tree's ──reclaim──► free
      ◄─────────free─────┘

``free`` takes back only pages a caller holds: a page the tree adopted returns to
the pool only through the tree's own eviction (``reclaim``), so no caller can free
it, and no page is ever handed out twice.
"""
from __future__ import annotations

import operator
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import NamedTuple


class OutOfPages(RuntimeError):
    """Raised by ``PageAllocator.alloc`` when fewer pages are free than asked for."""


class Lease(NamedTuple):
    """The pages one ``alloc`` call handed out, and which of them the caller still holds.

    pages: [3 4 7 8 9]   ascending, as alloc hands them out
    held:  [1 1 0 0 1]   0 once freed or adopted by the tree
    """
    pages: array         # page ids, 'q'
    held: bytearray


class PageAllocator:
    """Hands out page ids ``0 .. num_pages-1``, lowest ready id first (deterministic).

    Like SGLang's paged allocator, freed pages are not sorted back in one by one: they
    wait in a released list, merged and sorted only when the ready list runs short::

        ready:    [9 8 7 6]  (descending; alloc pops the lowest from the end)
        released: [2 0]      (freed since the last merge)

    Pages a caller holds are tracked per ``Lease`` (one per ``alloc``), so that a run
    of pages changes owner with one slice of a bytearray rather than page by page; a
    page the allocator handed out that no caller holds is the tree's.

    Every method validates before it changes anything, so a failed call leaves the
    allocator exactly as it was.
    """

    def __init__(self, num_pages: int, page_size: int = 1):
        self.num_pages = positive_int(num_pages, "num_pages")
        self.page_size = positive_int(page_size, "page_size")
        self._ready = list(range(num_pages - 1, -1, -1))
        self._released: list[int] = []
        self._lease_of: dict[int, Lease] = {}      # page -> the lease it was last handed out in
        self._num_held = 0
        self._free_set: set[int] | None = None     # built on demand by is_free

    @property
    def available(self) -> int:
        """Number of free pages."""
        return len(self._ready) + len(self._released)

    @property
    def num_slots(self) -> int:
        return self.num_pages * self.page_size

    @property
    def tree_pages(self) -> int:
        """Number of pages the tree owns (handed out, and held by no caller)."""
        return self.num_pages - self.available - self._num_held

    def alloc(self, n: int) -> list[int]:
        """Take ``n`` free pages (lowest ready ids first); ``OutOfPages`` if fewer are free."""
        n = non_negative_int(n, "number of pages to allocate")
        if n > self.available:
            raise OutOfPages(f"asked for {n} pages, only {self.available} of {self.num_pages} are free")
        if n > len(self._ready):                    # merge the released pages back in, sorted
            self._ready = sorted(self._ready + self._released, reverse=True)
            self._released = []
        pages = self._ready[len(self._ready) - n:][::-1]
        del self._ready[len(self._ready) - n:]
        self._lend(pages)
        return pages

    def free(self, pages: Iterable[int]) -> None:
        """A caller gives back pages it holds. Free or tree pages, repeats and junk raise, freeing nothing."""
        ids = self._take_from_caller(page_list(pages), "double free or unknown page")
        self._released += ids
        self._free_set = None

    def adopt(self, pages: list[int]) -> list[int]:
        """The tree takes ``pages`` from the caller that holds them (``RadixCache.insert``).

        Returns them as plain ints (numpy integers converted), for the tree to keep.
        """
        return self._take_from_caller(pages, "pages must be distinct and held by the caller")

    def reclaim(self, pages: list[int]) -> None:
        """The tree gives back pages it owns (``RadixCache.evict``): no check, by invariant."""
        self._released += pages
        self._free_set = None

    def is_free(self, page: int) -> bool:
        if self._free_set is None:                  # drawings and checks ask page by page
            self._free_set = {*self._ready, *self._released}
        return page in self._free_set

    def held(self) -> set[int]:
        """The ids of the pages callers hold (handed out and not adopted by the tree)."""
        leases = {id(lease): lease for lease in self._lease_of.values()}.values()
        return {p for lease in leases for p, held in zip(lease.pages, lease.held) if held}

    def allocated(self) -> set[int]:
        """The ids of all pages currently handed out: held by callers or owned by the tree."""
        return set(range(self.num_pages)).difference(self._ready, self._released)

    # ------------------------------------------------------------ ownership
    def _lend(self, pages: list[int]) -> None:
        lease = Lease(array("q", pages), bytearray(b"\x01") * len(pages))
        self._lease_of.update(zip(pages, repeat(lease)))
        self._num_held += len(pages)
        self._free_set = None

    def _take_from_caller(self, pages: list[int], what: str) -> list[int]:
        """Mark ``pages`` no longer held by callers and return them as plain ints;
        ``ValueError`` (nothing marked) unless they are distinct pages callers hold."""
        taken: list[tuple[Lease, int, int]] = []
        try:
            ids = array("q")
            ids.fromlist(pages)                     # every id an integer
            if type(sum(pages)) is not int:         # numpy integers: keep plain ints
                pages = ids.tolist()
            i = 0
            while i < len(ids):
                lease, start, stop = self._held_run(ids, i)
                lease.held[start:stop] = bytes(stop - start)      # a repeat later is not held
                taken.append((lease, start, stop))
                i += stop - start
        except (ValueError, TypeError, OverflowError, KeyError):
            for lease, start, stop in taken:      # undo, then explain
                lease.held[start:stop] = b"\x01" * (stop - start)
            raise ValueError(f"{what}: {self._why_not_held(pages)}") from None
        self._num_held -= len(ids)
        return pages

    def _held_run(self, ids: array, i: int) -> tuple[Lease, int, int]:
        """The longest run ``ids[i:]`` starts with that is consecutive held pages of one
        lease, as ``(lease, start, stop)`` positions in it; ``ValueError`` if ``ids[i]`` is not held.

        ids:    [ 7  8  9  3 ]        i = 0
        lease:  [ 3  4  7  8  9 ]     -> (lease, 2, 5)
        held:   [ 1  1  1  1  1 ]
        """
        lease = self._lease_of[ids[i]]              # KeyError: never handed out
        start = bisect_left(lease.pages, ids[i])    # a lease's pages are ascending
        n = min(len(ids) - i, len(lease.pages) - start)
        mine, theirs = ids[i: i + n], lease.pages[start: start + n]
        if mine != theirs:                          # the caller's order leaves the lease's here
            n = next(k for k, (a, b) in enumerate(zip(mine, theirs)) if a != b)
        stop = lease.held.find(0, start, start + n)     # a held page is still this lease's
        stop = start + n if stop < 0 else stop
        if stop == start:
            raise ValueError(f"page {ids[i]} is not held")
        return lease, start, stop

    def _why_not_held(self, pages: Sequence[int]) -> str:
        seen, held = set(), self.held()
        for p in pages:
            if not isinstance(p, int) or not 0 <= p < self.num_pages:
                return f"page id {p!r} is not an integer in 0..{self.num_pages - 1}"
            if p in seen:
                return f"page {p} appears twice"
            if p not in held:
                return f"page {p} is free" if self.is_free(p) else f"page {p} belongs to the radix tree"
            seen.add(p)
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return (f"PageAllocator(num_pages={self.num_pages}, page_size={self.page_size}, "
                f"available={self.available})")


def page_list(pages: Iterable[int]) -> list[int]:
    """``pages`` as a list; arrays and tensors through their ``tolist()``."""
    if type(pages) is list:
        return pages
    if hasattr(pages, "tolist"):
        pages = pages.tolist()
    try:
        return list(pages)
    except TypeError:
        raise TypeError(f"pages must be a sequence of page ids, got {pages!r:.60}") from None


def non_negative_int(value: int, what: str) -> int:
    """``value`` as an ``int`` (numpy integers too); a clear error for anything else or < 0."""
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer >= 0, got {value!r:.60}") from None
    if value < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {value}")
    return value


def positive_int(value: int, what: str) -> int:
    value = non_negative_int(value, what)
    if value == 0:
        raise ValueError(f"{what} must be an integer >= 1, got 0")
    return value


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
