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

Keys are ``array('Q')`` (unsigned 64-bit token ids): building one from a list checks
every id at C speed, and slicing and comparing them are memory copies and compares.
Pages move between owners through the allocator (``pages.py``): ``insert`` adopts
the pages it keeps from the caller, ``evict`` reclaims them; nothing else frees them.
"""
from __future__ import annotations

import heapq
import numbers
import operator
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from .eviction import policy_key
from .pages import PageAllocator, common_prefix_len, non_negative_int, page_aligned, page_list, pages_needed


class InvariantError(AssertionError):
    """``check_invariants`` found the tree, its counters or the allocator inconsistent."""


class TreeNode:
    """One edge of the tree and the node it leads to."""

    __slots__ = ("id", "key", "pages", "parent", "children", "lock_ref",
                 "last_access", "created", "hits", "priority")

    def __init__(self, id: int, parent: TreeNode | None, key: array,
                 pages: list[int], time: int, priority: float = 0):
        self.id = id                      # stable per-cache number (for drawings)
        self.key = key                    # tokens on the edge into this node, array('Q')
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
    node_type: type[TreeNode] = TreeNode    # what ``_new_node`` builds (a subclass may extend the node)

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
    def match_prefix(self, tokens: Iterable[int]) -> MatchResult:
        """Longest cached prefix of ``tokens`` in whole pages.

        Refreshes the access time along the path and, when the match ends inside a
        node, splits it so that the returned ``node`` ends exactly at the match.
        """
        key = self._aligned(token_array(tokens))
        path, length = self._walk(key)
        pages: list[int] = []
        for child, n in path:
            pages += child.pages[: n // self.page_size]
        self._touch(path)
        return MatchResult(length, pages, self._end_node(path))

    def cached_len(self, tokens: Iterable[int]) -> int:
        """How many leading tokens of ``tokens`` are cached, in whole pages, without touching
        the tree (no access-time refresh, no split): a look from outside, such as a global index."""
        return self._walk(self._aligned(token_array(tokens)))[1]

    def insert(self, tokens: Iterable[int], pages: Sequence[int], priority: float = 0) -> int:
        """Cache ``tokens`` (cut to whole pages) whose K/V live in ``pages``.

        ``pages`` cover the tokens: ``ceil`` or ``floor(len(tokens) / page_size)`` of them.
        Returns the number of tokens that were already cached; the pages the caller
        passed for that range stay the caller's to free, the others become the tree's.
        Along the path it splits, refreshes access times, counts a hit and raises the
        priority (``None`` counts as 0, as in SGLang).
        """
        tokens, priority = token_array(tokens), check_priority(priority)
        key = self._aligned(tokens)
        path, present = self._walk(key)
        new_pages = self._adopt_pages(len(tokens), page_list(pages), present, len(key))
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
        num_tokens = non_negative_int(num_tokens, "number of tokens to evict")
        heap = self._victim_heap(self._evictable_leaves)
        freed = 0
        while freed < num_tokens and heap:
            _, leaf = heapq.heappop(heap)
            parent = self._delete_leaf(leaf)
            freed += len(leaf.key)
            if not parent.children and parent.lock_ref == 0:
                heapq.heappush(heap, (self._eviction_key(parent), parent))
        return freed

    def _victim_heap(self, nodes: Iterable[TreeNode]) -> list[tuple[Any, TreeNode]]:
        """``(policy key, node)`` for ``nodes``, as a heap: the next victim on top."""
        heap = [(self._eviction_key(node), node) for node in nodes]
        heapq.heapify(heap)
        return heap

    def nodes(self) -> Iterator[TreeNode]:
        """Every node below the root, parents before children, children by key."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node is not self.root:
                yield node
            stack.extend(node.children[k] for k in sorted(node.children, reverse=True))

    def unlocked_len(self, node: TreeNode) -> int:
        """Tokens from ``node`` up to the root that no lock protects: what locking ``node``
        takes out of the evictable size."""
        return sum(len(n.key) for n in self._path_to_root(node) if n.lock_ref == 0)

    def evictable_leaves(self) -> list[TreeNode]:
        """Unlocked leaves, next eviction victim first."""
        return sorted(self._evictable_leaves, key=lambda n: (self._eviction_key(n), n))

    # -------------------------------------------------------- tree mechanics
    def _walk(self, key: array) -> tuple[list[tuple[TreeNode, int]], int]:
        """The path ``key`` follows from the root, ``(node, tokens matched in it)`` per node,
        and the number of tokens matched.

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
        return path, length

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

    def _add_leaf(self, parent: TreeNode, key: array, pages: list[int], priority: float) -> TreeNode:
        leaf = self._new_node(parent, key, pages, priority)
        leaf.hits = 1
        parent.children[self._child_key(key, 0)] = leaf
        self._evictable += len(key)
        self._update_leaf_status(parent)
        self._update_leaf_status(leaf)
        return leaf

    def _delete_leaf(self, leaf: TreeNode) -> TreeNode:
        """Free ``leaf``'s pages, unhook it (``parent = None`` marks it gone); return its parent."""
        self.allocator.reclaim(leaf.pages)
        parent = self._unhook(leaf)
        self._evictable -= len(leaf.key)
        self._evictable_leaves.discard(leaf)
        self._update_leaf_status(parent)
        return parent

    def _unhook(self, leaf: TreeNode) -> TreeNode:
        """Take ``leaf`` out of the tree (``parent = None`` marks it gone); return its parent."""
        parent, leaf.parent = leaf.parent, None
        del parent.children[self._child_key(leaf.key, 0)]
        return parent

    def _update_leaf_status(self, node: TreeNode) -> None:
        if node.children or node.lock_ref > 0:
            self._evictable_leaves.discard(node)
        else:
            self._evictable_leaves.add(node)

    def _new_node(self, parent, key, pages, priority: int = 0) -> TreeNode:
        """A ``node_type`` with the next id, born at the next tick."""
        self._clock += 1
        self._next_id += 1
        return self.node_type(self._next_id - 1, parent, key, pages, self._clock, priority)

    def _path_to_root(self, node: TreeNode) -> Iterator[TreeNode]:
        """``node``, its parent, ... up to (not including) the root."""
        while node is not self.root:
            yield node
            node = node.parent

    def _child_key(self, key: array, start: int):
        """A child is found by its first token (page_size 1) or its first page of tokens."""
        return key[start] if self.page_size == 1 else tuple(key[start: start + self.page_size])

    def _match_len(self, node_key: array, key: array, start: int) -> int:
        """Tokens of ``node_key`` that ``key[start:]`` matches, rounded down to whole pages."""
        segment = key[start: start + len(node_key)]
        if segment == node_key:
            return len(node_key)
        n = common_prefix_len(node_key, segment)
        return n - n % self.page_size

    # ------------------------------------------------------------ validation
    def _aligned(self, key: array) -> array:
        """``key`` cut to whole pages."""
        aligned = page_aligned(len(key), self.page_size)
        return key if aligned == len(key) else key[:aligned]

    def _adopt_pages(self, num_tokens: int, pages: list[int], present: int, aligned: int) -> list[int]:
        """Take the pages after the ``present`` tokens from the caller (the last check of an insert).

        pages:  [ 0 .. present/ps)  caller's duplicates | [present/ps .. aligned/ps) new | tail
        """
        whole, covering = num_tokens // self.page_size, pages_needed(num_tokens, self.page_size)
        if len(pages) not in (whole, covering):
            raise ValueError(f"{num_tokens} tokens at page_size {self.page_size} need "
                             f"{covering} pages, got {len(pages)}")
        return self.allocator.adopt(pages[present // self.page_size: aligned // self.page_size])

    def _locked_path(self, node: TreeNode) -> list[TreeNode]:
        """``node`` .. the root's child; an error if ``node`` is not in this tree."""
        if not isinstance(node, TreeNode):
            raise TypeError(f"lock/unlock take a TreeNode (a match's node), got {node!r:.60}")
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
        that the pages the allocator counts as the tree's are exactly the nodes' pages,
        one node each. With ``held`` (the pages requests hold outside the tree) it also
        checks that those are exactly the pages the allocator has handed to callers.
        """
        owner: dict[int, TreeNode] = {}
        evictable = protected = 0
        for node in self.nodes():
            self._check_node(node)
            for p in node.pages:
                _require(p not in owner, f"page {p} owned by #{owner.get(p, node).id} and #{node.id}")
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
        _require(self.root.lock_ref == 1, f"root lock_ref is {self.root.lock_ref}, must stay 1")
        self._check_pages(owner, held)

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

    def _check_pages(self, owner: dict[int, TreeNode], held: Iterable[int] | None) -> None:
        """The allocator agrees with the nodes' pages (``owner``) and, given, with ``held``."""
        handed_out = self.allocator.held()
        self._check_tree_pages(owner, handed_out)
        if held is not None:
            self._check_held(set(owner), list(held), handed_out)

    def _check_tree_pages(self, owner: dict[int, TreeNode], held: set[int]) -> None:
        """The allocator's tree pages (neither free nor ``held`` by callers) are the nodes' pages."""
        for p, node in owner.items():
            _require(not self.allocator.is_free(p), f"page {p} of #{node.id} is free in the allocator")
            _require(p not in held, f"page {p} of #{node.id} is held by a caller in the allocator")
        _require(len(owner) == self.allocator.tree_pages,
                 f"the allocator counts {self.allocator.tree_pages} tree pages, the nodes hold {len(owner)}")

    def _check_held(self, tree: set[int], held: list[int], handed_out: set[int]) -> None:
        """``held`` (what requests say they own) is exactly what the allocator ``handed_out`` to callers."""
        listed = set(held)
        _require(len(listed) == len(held), "a held page is listed twice")
        _require(not tree & listed, f"pages {sorted(tree & listed)} are both held and in the tree")
        free = {p for p in listed - handed_out if self.allocator.is_free(p)}
        _require(not free, f"pages {sorted(free)} are held but free")
        leaked = handed_out - listed
        _require(not leaked, f"pages {sorted(leaked)} are allocated but owned by nobody (leak)")

    # ------------------------------------------------------------- text dump
    def __str__(self) -> str:
        head = (f"RadixCache(page_size={self.page_size}, eviction={self.eviction}) "
                f"total={self.total_size} evictable={self.evictable_size} "
                f"protected={self.protected_size} free_pages={self.allocator.available}")
        return "\n".join([head, "root"] + self._dump(self.root, ""))

    def _describe(self, node: TreeNode) -> str:
        """The dump's line for ``node`` (``hicache.HiRadixCache`` adds the host copy)."""
        return describe(node)

    def _dump(self, node: TreeNode, indent: str) -> list[str]:
        lines = []
        keys = sorted(node.children)
        for i, k in enumerate(keys):
            child, last = node.children[k], i == len(keys) - 1
            lines.append(f"{indent}{'└── ' if last else '├── '}{self._describe(child)}")
            lines += self._dump(child, indent + ("    " if last else "│   "))
        return lines


def describe(node: TreeNode, max_tokens: int = 8) -> str:
    """One line: ``#3 [5 6 7 8] len=4 pages=[1] lock=0 hits=1 t=7``."""
    shown = " ".join(map(str, node.key[:max_tokens]))
    more = f" …+{len(node.key) - max_tokens}" if len(node.key) > max_tokens else ""
    return (f"#{node.id} [{shown}{more}] len={len(node.key)} pages={node.pages} "
            f"lock={node.lock_ref} hits={node.hits} t={node.last_access}")


def token_array(tokens: Iterable[int]) -> array:
    """Validate token ids (at least one, integers in 0..2**64-1) into an ``array('Q')``.

    A list converts at C speed; tuples, generators, numpy arrays and torch tensors
    (through their ``tolist()``) go through a list first. Nothing else is accepted.
    """
    if type(tokens) is not list:
        tokens = _token_list(tokens)
    key = array("Q")
    try:
        key.fromlist(tokens)                 # every id an integer (or __index__) in range
    except (TypeError, OverflowError):
        raise _bad_token(tokens) from None
    if not key:
        raise ValueError("empty token list: a key needs at least one token id")
    return key


def _token_list(tokens: Iterable[int]) -> list:
    original = tokens
    if hasattr(tokens, "tolist"):                # numpy arrays, torch tensors: plain ints
        tokens = tokens.tolist()
    if isinstance(tokens, (str, bytes, bytearray)) or not hasattr(tokens, "__iter__"):
        raise TypeError(f"tokens must be a sequence of integer token ids, got {original!r:.60}")
    return tokens if type(tokens) is list else list(tokens)


def _bad_token(tokens: list) -> Exception:
    """The error for the first id that is not an integer in 0..2**64-1."""
    for i, token in enumerate(tokens):
        try:
            value = operator.index(token)
        except TypeError:
            return TypeError(f"token ids must be integers, got {token!r:.40} at position {i}")
        if not 0 <= value < 2 ** 64:
            return ValueError(f"token ids must be >= 0 and < 2**64, got {value} at position {i}")
    raise AssertionError("unreachable")


def check_priority(priority: float | None) -> float:
    """An insert's priority: a real number, ``None`` meaning 0 (SGLang's ``_insert_helper``)."""
    if priority is None:
        return 0
    if type(priority) is int or (isinstance(priority, numbers.Real) and priority == priority):   # not NaN
        return priority
    raise TypeError(f"priority must be a real number (or None for 0), got {priority!r:.40}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InvariantError(message)
