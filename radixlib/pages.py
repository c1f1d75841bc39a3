"""Pages: the unit of KV memory, and who owns each one.

The KV pool is cut into ``num_pages`` pages of ``page_size`` token slots each.
Page ``p`` owns the slots ``[p * page_size, (p + 1) * page_size)``::

    slot:  0 1 2 3 | 4 5 6 7 | 8 9 10 11 | ...
    page:     0    |    1    |     2     | ...        (page_size = 4)

A request that holds ``n`` tokens needs ``ceil(n / page_size)`` pages; the slots
past ``n`` in its last page are the alignment waste that chapter 01 measures.

Every page has exactly one owner, and the allocator records which (the page manager
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
from collections.abc import Iterable, Sequence
from itertools import chain

FREE, HELD, TREE = 0, 1, 2                  # a page's owner: nobody, a caller, the radix tree
OWNERS = ("free", "a caller", "the radix tree")


class OutOfPages(RuntimeError):
    """Raised by ``PageAllocator.alloc`` when fewer pages are free than asked for."""


class PageAllocator:
    """Hands out page ids ``0 .. num_pages-1``, lowest ready id first (deterministic).

    Freed pages are not sorted back in one by one: they wait, merged and sorted only when
    the ready list runs short. That is SGLang's *sorted* path (``mem_cache/allocator.py``:
    ``alloc`` calls ``merge_and_sort_free`` when ``need_sort`` is set, which
    ``model_runner_kv_cache_mixin.py`` does only for prefill/decode disaggregation). By
    default SGLang's ``free`` returns pages at once: the paged allocator puts them at the
    front of its free list (reused first), the token allocator (page size 1) at the back;
    and page 0 is kept for padding. radixlib keeps the sorted order, so that page ids stay
    small and readable in every drawing (DEVIATIONS.md #13)::

        ready:     [9 8 7 6]     (descending; alloc pops the lowest from the end)
        released:  [2 0]         (freed by callers since the last merge)
        reclaimed: [[5 4] [3]]   (evicted nodes' page lists, since the last merge)

    One byte per page records its owner. Pages change owner a run of consecutive ids
    at a time (a slice of that bytearray), and the lowest-first order keeps runs long:
    an alloc or an insert's new pages is one to three runs. An evicted node's pages
    count as free at once, at no cost per page; their bytes are set at the merge, when
    sorting has made the runs long.

    Every method validates before it changes anything, so a failed call leaves the
    allocator exactly as it was.
    """

    def __init__(self, num_pages: int, page_size: int = 1):
        self.num_pages = positive_int(num_pages, "num_pages")
        self.page_size = positive_int(page_size, "page_size")
        self._ready = list(range(num_pages - 1, -1, -1))
        self._released: list[int] = []
        self._reclaimed: list[list[int]] = []
        self._num_reclaimed = 0
        self._reclaimed_set: set[int] | None = set()   # built on demand
        self._owner = bytearray(num_pages)          # FREE, HELD or TREE by page id (TREE until merged)
        self._ids = array("Q", range(num_pages))    # 0 1 2 ...: runs are slices equal to it

    @property
    def available(self) -> int:
        """Number of free pages."""
        return len(self._ready) + len(self._released) + self._num_reclaimed

    @property
    def num_slots(self) -> int:
        return self.num_pages * self.page_size

    @property
    def tree_pages(self) -> int:
        """Number of pages the tree owns."""
        return self._owner.count(TREE) - self._num_reclaimed

    def alloc(self, n: int) -> list[int]:
        """Take ``n`` free pages (lowest ready ids first); ``OutOfPages`` if fewer are free."""
        n = non_negative_int(n, "number of pages to allocate")
        if n > self.available:
            raise OutOfPages(f"asked for {n} pages, only {self.available} of {self.num_pages} are free")
        if n > len(self._ready):                    # merge the freed pages back in, sorted
            self._merge()
        pages = self._ready[len(self._ready) - n:][::-1]
        self._move(array("Q", pages), FREE, HELD)
        del self._ready[len(self._ready) - n:]
        return pages

    def free(self, pages: Iterable[int]) -> None:
        """A caller gives back pages it holds. Free or tree pages, repeats and junk raise, freeing nothing."""
        self._released += self._take(page_list(pages), HELD, FREE, "double free or unknown page")

    def adopt(self, pages: list[int]) -> list[int]:
        """The tree takes ``pages`` from the caller that holds them (``RadixCache.insert``).

        Returns them as plain ints (numpy integers converted), for the tree to keep.
        """
        return self._take(pages, HELD, TREE, "pages must be distinct and held by the caller")

    def reclaim(self, pages: list[int]) -> None:
        """The tree gives back an evicted node's pages (``RadixCache.evict``; trusted, by
        invariant). The list itself is kept, unchanged, until the next merge."""
        self._reclaimed.append(pages)
        self._num_reclaimed += len(pages)
        self._reclaimed_set = None

    def owner(self, page: int) -> str:
        """Who owns ``page``: ``"free"``, ``"a caller"`` or ``"the radix tree"``."""
        if not isinstance(page, int) or not 0 <= page < self.num_pages:
            raise ValueError(f"page id {page!r} is not an integer in 0..{self.num_pages - 1}")
        if self._reclaimed_set is None:
            self._reclaimed_set = set(chain.from_iterable(self._reclaimed))
        return OWNERS[FREE if page in self._reclaimed_set else self._owner[page]]

    def is_free(self, page: int) -> bool:
        return self.owner(page) == OWNERS[FREE]

    def held(self) -> set[int]:
        """The ids of the pages callers hold (handed out and not adopted by the tree)."""
        return {p for p, owner in enumerate(self._owner) if owner == HELD}

    def allocated(self) -> set[int]:
        """The ids of all pages currently handed out: held by callers or owned by the tree."""
        return {p for p, owner in enumerate(self._owner) if owner != FREE}.difference(*self._reclaimed)

    # ------------------------------------------------------------ ownership
    def _merge(self) -> None:
        """Sort the freed pages back into the ready list; the reclaimed ones become free."""
        reclaimed = sorted(chain.from_iterable(self._reclaimed))
        self._move(array("Q", reclaimed), TREE, FREE)
        self._ready = sorted(self._ready + self._released + reclaimed, reverse=True)
        self._released, self._reclaimed, self._num_reclaimed, self._reclaimed_set = [], [], 0, set()

    def _take(self, pages: list[int], old: int, new: int, what: str) -> list[int]:
        """Move ``pages`` from owner ``old`` to ``new``; return them as plain ints.
        ``ValueError``, with nothing changed, unless they are distinct pages of ``old``."""
        try:
            ids = array("Q")
            ids.fromlist(pages)                     # every id an integer
            self._move(ids, old, new)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"{what}: {self._why_not(pages, old)}") from None
        return pages if type(sum(pages)) is int else ids.tolist()     # numpy integers: plain ints

    def _move(self, ids: array, old: int, new: int) -> None:
        """Give the pages ``ids`` from ``old`` to ``new``, a run at a time; ``ValueError``
        (every run given back) if one is not ``old``'s or comes twice."""
        done: list[tuple[int, int]] = []
        for first, stop in self._runs(ids):
            if self._owner.count(old, first, stop) != stop - first:
                for given, end in done:
                    self._owner[given:end] = bytes((old,)) * (end - given)
                raise ValueError(f"pages {first}..{stop - 1} are not all {OWNERS[old]}'s")
            self._owner[first:stop] = bytes((new,)) * (stop - first)
            done.append((first, stop))

    def _runs(self, ids: array) -> list[tuple[int, int]]:
        """``ids`` cut into runs of consecutive page ids, as ``(first, last + 1)``.

        [7 8 9 3 4]  ->  [(7, 10), (3, 5)]
        """
        if ids and ids == self._ids[ids[0]: ids[0] + len(ids)]:
            return [(ids[0], ids[0] + len(ids))]    # one run: the common case
        runs, i = [], 0
        while i < len(ids):
            first = ids[i]
            n = common_prefix_len(ids, self._ids, i, first)
            if n == 0:
                raise ValueError(f"page id {first} is out of range")
            runs.append((first, first + n))
            i += n
        return runs

    def _why_not(self, pages: Sequence[int], old: int) -> str:
        seen: set[int] = set()
        for p in pages:
            if not isinstance(p, int) or not 0 <= p < self.num_pages:
                return f"page id {p!r} is not an integer in 0..{self.num_pages - 1}"
            if p in seen:
                return f"page {p} appears twice"
            if self.owner(p) != OWNERS[old]:
                return f"page {p} is free" if self.is_free(p) else f"page {p} belongs to {self.owner(p)}"
            seen.add(p)
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return (f"PageAllocator(num_pages={self.num_pages}, page_size={self.page_size}, "
                f"available={self.available})")


def common_prefix_len(a: Sequence, b: Sequence, i: int = 0, j: int = 0) -> int:
    """Length of the longest common prefix of ``a[i:]`` and ``b[j:]``, by C-level slice
    compares: windows that double in size until one differs, then halving that window,
    so the time grows with the prefix found, not with the sequences."""
    n, lo, width = max(0, min(len(a) - i, len(b) - j)), 0, 16
    while lo < n:                  # invariant: a[i:i+lo] == b[j:j+lo]
        hi = min(lo + width, n)
        if a[i + lo: i + hi] != b[j + lo: j + hi]:
            break
        lo, width = hi, 2 * width
    else:
        return n
    while hi - lo > 1:             # and a[i:i+hi] != b[j:j+hi]
        mid = (lo + hi) // 2
        if a[i + lo: i + mid] == b[j + lo: j + mid]:
            lo = mid
        else:
            hi = mid
    return lo


def common_prefix_len_plain(a: Sequence, b: Sequence, i: int = 0, j: int = 0) -> int:
    """``common_prefix_len`` the obvious way, item by item (a property test checks they agree)."""
    n = 0
    for x, y in zip(a[i:], b[j:]):
        if x != y:
            break
        n += 1
    return n


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


def page_rounded_up(num_tokens: int, page_size: int) -> int:
    """``num_tokens`` rounded up to whole pages, in tokens."""
    return pages_needed(num_tokens, page_size) * page_size


def page_aligned(num_tokens: int, page_size: int) -> int:
    """The largest multiple of ``page_size`` that is ``<= num_tokens``."""
    return num_tokens - num_tokens % page_size


def slots_of(pages: Sequence[int], page_size: int, num_tokens: int | None = None) -> list[int]:
    """Slot ids of the first ``num_tokens`` tokens stored in ``pages`` (all of them by default).

    pages [5, 2], page_size 4, num_tokens 6  ->  [20 21 22 23 | 8 9]
    """
    slots = [p * page_size + i for p in pages for i in range(page_size)]
    return slots if num_tokens is None else slots[:num_tokens]
