"""RadixCache: a radix tree over token ids whose nodes own pages of the KV pool.

Each edge into a node carries a run of tokens (``node.key``) and the pages that hold
their K/V (``node.pages``, one page per ``page_size`` tokens). A path from the root
spells a cached prefix::

    root ── [1 2 3 4 | 5 6 7 8] ──┬── [9 9 9 9]        prompt A = 1..8 + 9 9 9 9
         pages [0, 1]             └── [7 7 7 7]        prompt B = 1..8 + 7 7 7 7
                                      pages [3]

The semantics follow SGLang 0.5.12's ``RadixCache`` (see the README's Deviations):
keys are cut to whole pages, a child is found by its first page of tokens, a lookup
refreshes access times and splits the node it ends inside, ``insert`` returns how
much was already there, and ``evict`` frees whole unlocked leaves in policy order.
Time is a logical clock: every lookup/insert takes one tick, every new node another.
"""
from __future__ import annotations

import heapq
import operator
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from .eviction import policy_key
from .pages import PageAllocator, page_aligned, pages_needed


class InvariantError(AssertionError):
    """``check_invariants`` found the tree, its counters or the allocator inconsistent."""


class TreeNode:
    """One edge of the tree and the node it leads to."""

    __slots__ = ("id", "key", "pages", "parent", "children", "lock_ref",
                 "last_access", "created", "hits", "priority")

    def __init__(self, id: int, parent: TreeNode | None, key: tuple[int, ...],
                 pages: list[int], time: int, priority: int = 0):
        self.id = id                      # stable per-cache number (for drawings)
        self.key = key                    # tokens on the edge into this node
        self.pages = pages                # len(key) // page_size page ids
        self.parent = parent
        self.children: dict = {}          # child key (first token / first page) -> node
        self.lock_ref = 0                 # requests whose matched path runs through here
        self.last_access = time
        self.created = time
        self.hits = 0
        self.priority = priority

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def __lt__(self, other: TreeNode) -> bool:
        # heap tie-break, as SGLang's TreeNode: older access first (then id, to be deterministic)
        return (self.last_access, self.id) < (other.last_access, other.id)

    def __repr__(self) -> str:
        return f"TreeNode(#{self.id}, len={len(self.key)}, pages={self.pages}, lock={self.lock_ref})"


class MatchResult(NamedTuple):
    """What ``match_prefix`` found."""
    prefix_len: int      # matched tokens, a multiple of page_size
    pages: list[int]     # the pages holding them, in order (prefix_len // page_size)
    node: TreeNode       # deepest matched node (the root on a miss); lock it to keep the prefix


class RadixCache:
    """Prefix cache over a ``PageAllocator``; ``page_size`` comes from the allocator.

    ``eviction`` names the policy that orders victims (``eviction.POLICIES``).
    """

    def __init__(self, allocator: PageAllocator, eviction: str = "lru"):
        self.allocator = allocator
        self.page_size = allocator.page_size
        self.eviction = eviction
        self._eviction_key = policy_key(eviction)
        self._clock = 0
        self._next_id = 0
        self.root = self._new_node(None, (), [])
        self.root.lock_ref = 1                     # the root is never evicted
        self._evictable = 0                        # tokens in nodes with lock_ref == 0
        self._protected = 0                        # tokens in nodes with lock_ref > 0
        self._evictable_leaves: set[TreeNode] = set()
        self._tree_pages: set[int] = set()

    # ----------------------------------------------------------------- sizes
    @property
    def evictable_size(self) -> int:
        return self._evictable

    @property
    def protected_size(self) -> int:
        return self._protected

    @property
    def total_size(self) -> int:
        return self._evictable + self._protected

    @property
    def clock(self) -> int:
        return self._clock

    # ----------------------------------------------------------- public API
    def match_prefix(self, tokens: Sequence[int]) -> MatchResult:
        """Longest cached prefix of ``tokens`` in whole pages.

        Refreshes the access time along the path and, when the match ends inside a
        node, splits it so that the returned ``node`` ends exactly at the match.
        """
        key = self._aligned_key(tokens)
        path = self._walk(key)
        pages: list[int] = []
        for child, n in path:
            pages += child.pages[: n // self.page_size]
        self._touch(path)
        node = self._end_node(path)
        return MatchResult(sum(n for _, n in path), pages, node)

    def cached_len(self, tokens: Sequence[int]) -> int:
        """How many leading tokens of ``tokens`` are cached, in whole pages, without touching
        the tree (no access-time refresh, no split): a look from outside, such as a global index."""
        return sum(n for _, n in self._walk(self._aligned_key(tokens)))

    def insert(self, tokens: Sequence[int], pages: Sequence[int], priority: int = 0) -> int:
        """Cache ``tokens`` (cut to whole pages) whose K/V live in ``pages``.

        ``pages`` cover the tokens: ``ceil`` or ``floor(len(tokens) / page_size)`` of them.
        Returns the number of tokens that were already cached; the pages the caller
        passed for that range stay the caller's to free. Along the path it splits,
        refreshes access times, counts a hit and raises the priority.
        """
        key = self._aligned_key(tokens)
        path = self._walk(key)
        present = sum(n for _, n in path)
        new_pages = self._new_pages(len(tokens), list(pages), present, len(key))
        self._touch(path)
        node = self._end_node(path)
        for n in self._path_to_root(node):
            n.hits += 1
            n.priority = max(n.priority, priority)
        if present < len(key):
            self._add_leaf(node, key[present:], new_pages, priority)
        return present

    def lock(self, node: TreeNode) -> None:
        """Protect ``node`` and its ancestors from eviction (SGLang: ``inc_lock_ref``)."""
        for n in self._locked_path(node):
            if n.lock_ref == 0:                     # evictable -> protected
                self._evictable -= len(n.key)
                self._protected += len(n.key)
            n.lock_ref += 1
            self._update_leaf_status(n)

    def unlock(self, node: TreeNode) -> None:
        """Undo one ``lock(node)`` (SGLang: ``dec_lock_ref``); below zero is an error."""
        path = self._locked_path(node)
        if path and path[0].lock_ref == 0:          # a parent's lock_ref >= its child's
            raise ValueError(f"unlock below zero: node #{node.id} is not locked")
        for n in path:
            n.lock_ref -= 1
            if n.lock_ref == 0:                     # protected -> evictable
                self._protected -= len(n.key)
                self._evictable += len(n.key)
            self._update_leaf_status(n)

    def evict(self, num_tokens: int) -> int:
        """Free at least ``num_tokens`` tokens (whole nodes, so maybe more) or all that is evictable.

        Pops unlocked leaves in policy order; a parent that becomes an unlocked leaf
        joins the heap. Returns the number of tokens freed.
        """
        if num_tokens < 0:
            raise ValueError(f"cannot evict a negative number of tokens ({num_tokens})")
        heap = [(self._eviction_key(n), n) for n in self._evictable_leaves]
        heapq.heapify(heap)
        freed = 0
        while freed < num_tokens and heap:
            _, leaf = heapq.heappop(heap)
            parent = self._delete_leaf(leaf)
            freed += len(leaf.key)
            if not parent.children and parent.lock_ref == 0:
                heapq.heappush(heap, (self._eviction_key(parent), parent))
        return freed

    def nodes(self) -> Iterator[TreeNode]:
        """Every node below the root, parents before children, children by key."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node is not self.root:
                yield node
            stack.extend(node.children[k] for k in sorted(node.children, reverse=True))

    def evictable_leaves(self) -> list[TreeNode]:
        """Unlocked leaves, next eviction victim first."""
        return sorted(self._evictable_leaves, key=lambda n: (self._eviction_key(n), n))

    # -------------------------------------------------------- tree mechanics
    def _walk(self, key: tuple[int, ...]) -> list[tuple[TreeNode, int]]:
        """The path ``key`` follows from the root: ``(node, tokens matched in it)``.

        Read-only. Every node but the last is matched whole; the last may be partial.
        """
        path, node, length = [], self.root, 0
        while length < len(key):
            child = node.children.get(self._child_key(key, length))
            if child is None:
                break
            n = self._match_len(child.key, key, length)
            path.append((child, n))
            length += n
            if n < len(child.key):
                break
            node = child
        return path

    def _touch(self, path: list[tuple[TreeNode, int]]) -> None:
        """One tick of the clock for the whole path (the root included)."""
        self._clock += 1
        self.root.last_access = self._clock
        for child, _ in path:
            child.last_access = self._clock

    def _end_node(self, path: list[tuple[TreeNode, int]]) -> TreeNode:
        """The node the path ends at, splitting the last node if the path ends inside it."""
        if not path:
            return self.root
        child, n = path[-1]
        return self._split(child, n) if n < len(child.key) else child

    def _split(self, child: TreeNode, n: int) -> TreeNode:
        """Cut ``child`` after ``n`` tokens; return the new upper part.

        before:  parent ── child[k0 .. kL)
        after:   parent ── upper[k0 .. kn) ── child[kn .. kL)
        """
        cut = n // self.page_size
        upper = self._new_node(child.parent, child.key[:n], child.pages[:cut], child.priority)
        upper.hits, upper.lock_ref = child.hits, child.lock_ref
        child.key, child.pages, child.parent = child.key[n:], child.pages[cut:], upper
        upper.children[self._child_key(child.key, 0)] = child
        upper.parent.children[self._child_key(upper.key, 0)] = upper
        return upper

    def _add_leaf(self, parent: TreeNode, key: tuple[int, ...], pages: list[int], priority: int) -> None:
        leaf = self._new_node(parent, key, list(pages), priority)
        leaf.hits = 1
        parent.children[self._child_key(key, 0)] = leaf
        self._evictable += len(key)
        self._tree_pages.update(pages)
        self._update_leaf_status(parent)
        self._update_leaf_status(leaf)

    def _delete_leaf(self, leaf: TreeNode) -> TreeNode:
        """Free ``leaf``'s pages, unhook it (``parent = None`` marks it gone); return its parent."""
        self.allocator.free(leaf.pages, validate=False)      # tree pages are allocated (invariant)
        parent, leaf.parent = leaf.parent, None
        del parent.children[self._child_key(leaf.key, 0)]
        self._evictable -= len(leaf.key)
        self._evictable_leaves.discard(leaf)
        self._tree_pages.difference_update(leaf.pages)
        self._update_leaf_status(parent)
        return parent

    def _update_leaf_status(self, node: TreeNode) -> None:
        if node.children or node.lock_ref > 0:
            self._evictable_leaves.discard(node)
        else:
            self._evictable_leaves.add(node)

    def _new_node(self, parent, key, pages, priority: int = 0) -> TreeNode:
        self._clock += 1
        self._next_id += 1
        return TreeNode(self._next_id - 1, parent, key, pages, self._clock, priority)

    def _path_to_root(self, node: TreeNode) -> Iterator[TreeNode]:
        """``node``, its parent, ... up to (not including) the root."""
        while node is not self.root:
            yield node
            node = node.parent

    def _child_key(self, key: tuple[int, ...], start: int):
        """A child is found by its first token (page_size 1) or its first page of tokens."""
        return key[start] if self.page_size == 1 else key[start: start + self.page_size]

    def _match_len(self, node_key: tuple[int, ...], key: tuple[int, ...], start: int) -> int:
        """Tokens of ``node_key`` that ``key[start:]`` matches, rounded down to whole pages."""
        segment = key[start: start + len(node_key)]
        if segment == node_key:
            return len(node_key)
        n = common_prefix_len(node_key, segment)
        return n - n % self.page_size

    # ------------------------------------------------------------ validation
    def _aligned_key(self, tokens: Sequence[int]) -> tuple[int, ...]:
        key = as_token_tuple(tokens)
        return key[: page_aligned(len(key), self.page_size)]

    def _new_pages(self, num_tokens: int, pages: list[int], present: int, aligned: int) -> list[int]:
        """The pages the tree takes from an insert: those after the ``present`` tokens.

        pages:  [ 0 .. present/ps)  caller's duplicates | [present/ps .. aligned/ps) new | tail
        """
        whole, covering = num_tokens // self.page_size, pages_needed(num_tokens, self.page_size)
        if len(pages) not in (whole, covering):
            raise ValueError(f"{num_tokens} tokens at page_size {self.page_size} need "
                             f"{covering} pages, got {len(pages)}")
        new = pages[present // self.page_size: aligned // self.page_size]
        try:
            self.allocator.check_allocated(new)
        except ValueError as e:
            raise ValueError(f"pages must be distinct and allocated: {e}") from None
        if not self._tree_pages.isdisjoint(new):
            raise ValueError(f"pages {sorted(self._tree_pages.intersection(new))} already belong to the tree")
        return new

    def _locked_path(self, node: TreeNode) -> list[TreeNode]:
        """``node`` .. the root's child; an error if ``node`` is not in this tree."""
        path, start = [], node
        while node is not self.root:
            if node is None:
                raise ValueError(f"{start!r} is not in this tree (evicted or foreign)")
            path.append(node)
            node = node.parent
        return path

    # ------------------------------------------------------------ invariants
    def check_invariants(self, held: Iterable[int] | None = None) -> None:
        """Raise ``InvariantError`` naming the first inconsistency.

        Checks the tree's shape, lock refs, size counters and evictable-leaf set, and
        that every tree page is allocated and owned by one node. With ``held`` (the
        pages requests hold outside the tree) it also checks that free, tree and held
        pages partition the pool exactly.
        """
        owner: dict[int, TreeNode] = {}
        evictable = protected = 0
        for node in self.nodes():
            self._check_node(node)
            for p in node.pages:
                _require(p not in owner, f"page {p} owned by #{owner.get(p, node).id} and #{node.id}")
                _require(not self.allocator.is_free(p), f"page {p} of #{node.id} is free in the allocator")
                owner[p] = node
            if node.lock_ref:
                protected += len(node.key)
            else:
                evictable += len(node.key)
        _require((evictable, protected) == (self._evictable, self._protected),
                 f"sizes (evictable, protected) are {(self._evictable, self._protected)}, "
                 f"tree says {(evictable, protected)}")
        leaves = {n for n in self.nodes() if n.is_leaf and n.lock_ref == 0}
        _require(leaves == self._evictable_leaves, "evictable-leaf set out of date")
        _require(set(owner) == self._tree_pages, "tree page set out of date")
        _require(self.root.lock_ref == 1, f"root lock_ref is {self.root.lock_ref}, must stay 1")
        if held is not None:
            self._check_partition(set(owner), list(held))

    def _check_node(self, node: TreeNode) -> None:
        parent = node.parent
        _require(len(node.key) > 0 and len(node.key) % self.page_size == 0,
                 f"#{node.id} key length {len(node.key)} is not a positive multiple of {self.page_size}")
        _require(len(node.pages) == len(node.key) // self.page_size,
                 f"#{node.id} has {len(node.pages)} pages for {len(node.key)} tokens")
        _require(parent.children.get(self._child_key(node.key, 0)) is node,
                 f"#{node.id} is not filed under its first page in #{parent.id}")
        _require(0 <= node.lock_ref <= parent.lock_ref or parent is self.root,
                 f"#{node.id} lock_ref {node.lock_ref} exceeds its parent's {parent.lock_ref}")
        _require(node.lock_ref >= 0, f"#{node.id} lock_ref is negative")
        _require(node.last_access <= self._clock and node.created <= self._clock,
                 f"#{node.id} has a time stamp from the future")

    def _check_partition(self, tree: set[int], held: list[int]) -> None:
        free = {p for p in range(self.allocator.num_pages) if self.allocator.is_free(p)}
        _require(len(set(held)) == len(held), "a held page is listed twice")
        _require(not tree & set(held), f"pages {sorted(tree & set(held))} are both held and in the tree")
        _require(not free & set(held), f"pages {sorted(free & set(held))} are held but free")
        leaked = set(range(self.allocator.num_pages)) - free - tree - set(held)
        _require(not leaked, f"pages {sorted(leaked)} are allocated but owned by nobody (leak)")

    # ------------------------------------------------------------- text dump
    def __str__(self) -> str:
        head = (f"RadixCache(page_size={self.page_size}, eviction={self.eviction}) "
                f"total={self.total_size} evictable={self.evictable_size} "
                f"protected={self.protected_size} free_pages={self.allocator.available}")
        return "\n".join([head, "root"] + self._dump(self.root, ""))

    def _dump(self, node: TreeNode, indent: str) -> list[str]:
        lines = []
        keys = sorted(node.children)
        for i, k in enumerate(keys):
            child, last = node.children[k], i == len(keys) - 1
            lines.append(f"{indent}{'└── ' if last else '├── '}{describe(child)}")
            lines += self._dump(child, indent + ("    " if last else "│   "))
        return lines


def describe(node: TreeNode, max_tokens: int = 8) -> str:
    """One line: ``#3 [5 6 7 8] len=4 pages=[1] lock=0 hits=1 t=7``."""
    shown = " ".join(map(str, node.key[:max_tokens]))
    more = f" …+{len(node.key) - max_tokens}" if len(node.key) > max_tokens else ""
    return (f"#{node.id} [{shown}{more}] len={len(node.key)} pages={node.pages} "
            f"lock={node.lock_ref} hits={node.hits} t={node.last_access}")


def as_token_tuple(tokens: Sequence[int]) -> tuple[int, ...]:
    """Validate token ids (non-empty, integers, >= 0) and return them as a tuple."""
    try:
        key = tuple(tokens)
        array("Q", key)                       # C-speed check: every id an integer >= 0
    except OverflowError:
        raise ValueError(f"token ids must be >= 0, got {min(key)}") from None
    except TypeError:                         # not integers, or integers of another type (numpy)
        key = _index_tuple(tokens)
    if not key:
        raise ValueError("empty token list")
    return key


def _index_tuple(tokens: Sequence[int]) -> tuple[int, ...]:
    try:
        key = tuple(map(operator.index, tokens))
    except TypeError:
        raise TypeError(f"token ids must be integers, got {repr(tokens)[:60]}") from None
    if key and min(key) < 0:
        raise ValueError(f"token ids must be >= 0, got {min(key)}")
    return key


def common_prefix_len(a: Sequence, b: Sequence) -> int:
    """Length of the longest common prefix, by binary search over C-level slice compares."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n                  # invariant: a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InvariantError(message)
