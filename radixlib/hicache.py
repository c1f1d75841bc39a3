"""HiCache: a second tier of KV memory in host RAM, under the same radix tree.

SGLang's ``HiRadixCache`` (``mem_cache/hiradix_cache.py``) keeps one tree whose nodes may
hold their tokens' K/V in two pools: the device pool (GPU memory, small) and a host pool
(CPU memory, larger). A prefix evicted from the device lives on in host memory, still
matched by the tree, and is copied back instead of recomputed::

    node.pages       device pages, or None: "evicted" (from the device)
    node.host_pages  host pages, or None: not "backuped"

    on the device only   [..]   None    a hit
    on both              [..]   [..]    a hit; device eviction only drops the device copy
    on the host only     None   [..]    a host hit: load it back (or recompute it)

A node is copied to host (``write_backup``) at a moment the write policy decides:

    write_through            on its first hit (an insert passing it counts one)
    write_through_selective  on its second hit
    write_back               only when the device evicts it

Outside write-back a node is backed up only when its parent is (the backed-up nodes form
a tree hanging from the root: a host hit is always a whole path). On the device, the
unlocked leaves go in policy order (``evict``): a backed-up one just drops its device
pages and stays in the tree; one without a copy is deleted (or, under write-back, copied
first). On the host, ``evict_host`` deletes host-only leaves in policy order when a write
finds the host pool full. A lookup that ends in host-only nodes loads their whole chain
back, all or nothing (``load_back``), unless it is shorter than ``load_back_threshold``.

Every page of either pool is free, held by a caller, or owned by exactly one node: the
tree adopts host pages the moment it writes them and device pages the moment it loads
them, and reclaims either when it evicts (``check_invariants`` proves it).

SGLang's cache controller runs the copies asynchronously (a write stream and a load
stream, acknowledged later; loads overlap the forward layer by layer) and locks the nodes
in flight. Here every copy completes inside the call that starts it, so nothing is ever
in flight: ``transfer`` (``kv_transfer`` with a model) moves the bytes at once.

Standard library only; ``kv_transfer`` calls the methods of the pools it is given.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import NamedTuple

from .pages import PageAllocator, non_negative_int, page_list
from .radix_cache import (
    InvariantError,
    MatchResult,
    RadixCache,
    TreeNode,
    _require,
    check_priority,
    describe,
    token_array,
)
from .replay import capacity_pages, replay
from .router import Router

WRITE_POLICIES = ("write_through", "write_through_selective", "write_back")
WRITE_THRESHOLD = {"write_through": 1, "write_through_selective": 2}     # hits before a node is backed up
LOAD_BACK_THRESHOLD = 10        # tokens: a shorter host hit is recomputed (SGLang's load_back_threshold)


class HiTreeNode(TreeNode):
    """A tree node that may also hold a host copy of its K/V."""

    __slots__ = ("host_pages", "host_ref")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.host_pages: list[int] | None = None    # None: no host copy
        self.host_ref = 0                           # holders of the host copy (it is not evicted while > 0)

    @property
    def evicted(self) -> bool:
        """Its device copy is gone (SGLang: ``value is None``)."""
        return self.pages is None

    @property
    def backuped(self) -> bool:
        """It has a host copy (SGLang: ``host_value is not None``)."""
        return self.host_pages is not None


class HiMatch(NamedTuple):
    """What ``HiRadixCache.match_prefix`` found: a device prefix, then maybe a host-only run.

        key:  [ on the device: prefix_len | host only: host_len | not cached ]
                              node ┘               host_node ┘
    """
    prefix_len: int        # device tokens, whole pages
    pages: list[int]       # their device pages
    node: TreeNode         # deepest matched node on the device (lock it)
    host_len: int          # tokens after prefix_len held in host memory only
    host_node: TreeNode    # deepest matched node (== node when host_len == 0): load it back


class Transfer(NamedTuple):
    """One copy between the pools: ``write`` device -> host, ``load`` host -> device."""
    kind: str
    device_pages: list[int]
    host_pages: list[int]


def should_load_back(host_len: int, threshold: int, mem_quota: int | None, newly_locked: int) -> bool:
    """Whether a host hit of ``host_len`` tokens is loaded back (SGLang: ``HiRadixCache.load_back``).

    All or nothing: the whole host-only run is loaded, or none of it. Not when it is shorter
    than ``threshold``; not when it exceeds ``mem_quota`` (``None``: no quota) less the
    ``newly_locked`` tokens that protecting its device ancestors took out of the evictable pool.
    """
    return host_len >= threshold and (mem_quota is None or host_len <= mem_quota - newly_locked)


def host_pool_pages(num_pages: int, page_size: int, ratio: float = 2.0, size_bytes: int = 0,
                    bytes_per_token: int = 1) -> int:
    """Pages of the host pool SGLang sizes for a device pool of ``num_pages`` pages
    (``memory_pool_host.py: HostKVCache.__init__``): ``size_bytes`` if given, else ``ratio``
    times the device pool, in tokens, rounded down to pages, plus one page."""
    tokens = size_bytes // bytes_per_token if size_bytes > 0 else int(num_pages * page_size * ratio)
    return tokens // page_size + 1


class HiRadixCache(RadixCache):
    """A ``RadixCache`` whose nodes may also live in a host pool (``host_allocator``).

    ``write_policy``: one of ``WRITE_POLICIES``. ``transfer``: called with every ``Transfer``
    as it happens (``kv_transfer`` copies the bytes; ``None`` moves no bytes, as in a replay).
    ``evictable_size``, ``protected_size`` and ``total_size`` count device tokens only.
    """
    node_type = HiTreeNode

    def __init__(self, allocator: PageAllocator, host_allocator: PageAllocator,
                 write_policy: str = "write_through", eviction: str = "lru",
                 load_back_threshold: int = LOAD_BACK_THRESHOLD,
                 transfer: Callable[[Transfer], None] | None = None):
        if not isinstance(host_allocator, PageAllocator) or host_allocator.page_size != allocator.page_size:
            raise ValueError(f"the host pool needs a PageAllocator with page_size {allocator.page_size}, "
                             f"got {host_allocator!r:.80}")
        if write_policy not in WRITE_POLICIES:
            raise ValueError(f"unknown write policy {write_policy!r}; choose one of {WRITE_POLICIES}")
        self.load_back_threshold = non_negative_int(load_back_threshold, "load_back_threshold")
        super().__init__(allocator, eviction)
        self.root.host_pages = []                  # the root counts as backed up (SGLang: host_value [])
        self.host_allocator, self.write_policy, self.transfer = host_allocator, write_policy, transfer
        self._write_threshold = WRITE_THRESHOLD.get(write_policy)    # None: write_back counts no hits
        self._host_leaves: set[HiTreeNode] = set()   # host-only nodes with no backed-up child, unlocked
        self._host_tokens = 0
        self.written_tokens = self.loaded_tokens = self.host_evicted_tokens = 0

    @property
    def host_size(self) -> int:
        """Tokens with a host copy (on the host only, or on both tiers)."""
        return self._host_tokens

    # ----------------------------------------------------------- public API
    def match_prefix(self, tokens: Iterable[int]) -> HiMatch:
        """Longest cached prefix of ``tokens`` in whole pages, split into its device part
        and the host-only run after it. Refreshes access times and may split a node."""
        key = self._aligned(token_array(tokens))
        path, length = self._walk(key)
        pages: list[int] = []
        for child, n in path:
            if child.evicted:
                break
            pages += child.pages[: n // self.page_size]
        self._stamp(child for child, _ in path)
        end = node = self._end_node(path)
        while node.evicted:
            node = node.parent
        prefix_len = len(pages) * self.page_size
        return HiMatch(prefix_len, pages, node, length - prefix_len, end)

    def cached_len(self, tokens: Iterable[int]) -> int:
        """How many leading tokens of ``tokens`` are on the device, without touching the tree."""
        path, _ = self._walk(self._aligned(token_array(tokens)))
        return sum(n for child, n in path if not child.evicted)

    def insert(self, tokens: Iterable[int], pages: Sequence[int], priority: float = 0) -> int:
        """Cache ``tokens`` whose K/V live in ``pages``; the number already on the device.

        As ``RadixCache.insert``, except: a host-only node on the path takes the caller's
        pages for its range (the caller recomputed it) and is on the device again; every
        device node passed counts a hit, and a hit may back a node up (the write policy).
        """
        tokens, priority = token_array(tokens), check_priority(priority)
        key = self._aligned(tokens)
        path, length = self._walk(key)
        present = sum(n for child, n in path if not child.evicted)     # device nodes come first
        new_pages = self._adopt_pages(len(tokens), page_list(pages), present, len(key))
        node, used = self.root, 0
        for child, n in path:
            self._stamp([child])
            child.priority = max(child.priority, priority)
            node = child if n == len(child.key) else self._split(child, n)
            if node.evicted:
                self._revive(node, new_pages[used: used + n // self.page_size])
                used += n // self.page_size
            else:
                self._count_hit(node)
        if length < len(key):
            leaf = self._add_leaf(node, key[length:], new_pages[used:], priority)
            leaf.hits = 0
            self._count_hit(leaf)
        return present

    def evict(self, num_tokens: int) -> int:
        """Free at least ``num_tokens`` device tokens (whole nodes) or all that is evictable.

        Unlocked device leaves go in policy order. One with a host copy drops its device
        pages and stays; one without is deleted, or under write-back copied to host first
        (all those copies complete, then their device pages go). A parent whose children
        are all off the device joins the heap. Returns the device tokens freed.
        """
        num_tokens = non_negative_int(num_tokens, "number of tokens to evict")
        heap = self._victim_heap(self._evictable_leaves)
        freed, written = 0, {}
        while freed < num_tokens and heap:
            _, leaf = heapq.heappop(heap)
            parent = leaf.parent
            if leaf.backuped:
                freed += self._evict_backuped(leaf)
            elif self.write_policy != "write_back":
                freed += self._evict_regular(leaf)
            elif self.write_backup(leaf, write_back=True):
                written[leaf] = None
                freed += len(leaf.key)
            if parent.lock_ref == 0 and all(c.evicted or c in written for c in parent.children.values()):
                heapq.heappush(heap, (self._eviction_key(parent), parent))
        for leaf in written:
            self._evict_backuped(leaf)
        return freed

    def evict_host(self, num_tokens: int) -> int:
        """Delete host-only leaves in policy order until ``num_tokens`` host tokens are free
        (or none is left); a host copy someone holds (``protect_host``) stays. Returns the
        host tokens freed."""
        num_tokens = non_negative_int(num_tokens, "number of host tokens to evict")
        heap = self._victim_heap(self._host_leaves)
        freed = 0
        while freed < num_tokens and heap:
            _, leaf = heapq.heappop(heap)
            if leaf.host_ref > 0:
                continue
            parent = self._delete_host_leaf(leaf)
            freed += len(leaf.key)
            if parent.evicted and not parent.children:
                heapq.heappush(heap, (self._eviction_key(parent), parent))
        return freed

    def write_backup(self, node: HiTreeNode, write_back: bool = False) -> int:
        """Copy ``node``'s device K/V to the host pool; the tokens written (0: not written).

        Outside write-back, only under a backed-up parent. A full host pool first evicts
        host-only leaves; if that leaves too little room, nothing is written.
        """
        if not write_back and node.parent is not self.root and not node.parent.backuped:
            return 0
        need = len(node.pages)
        if self.host_allocator.available < need:
            self.evict_host(len(node.key))
        if self.host_allocator.available < need:
            return 0
        node.host_pages = self.host_allocator.adopt(self.host_allocator.alloc(need))
        self._host_tokens += len(node.key)
        self.written_tokens += len(node.key)
        self._send(Transfer("write", node.pages, node.host_pages))
        return len(node.key)

    def load_back(self, node: HiTreeNode, mem_quota: int | None = None) -> list[int] | None:
        """Copy the host-only chain ending at ``node`` back to the device; its new device
        pages, or ``None`` if it was not loaded (``should_load_back`` said no, or the device
        pool stays too full after evicting). Its device ancestors are locked meanwhile."""
        chain_ = self._host_chain(node)
        mem_quota = None if mem_quota is None else non_negative_int(mem_quota, "mem_quota")
        ancestor = chain_[0].parent
        newly_locked = self.unlocked_len(ancestor)
        host_len = sum(len(n.key) for n in chain_)
        if not should_load_back(host_len, self.load_back_threshold, mem_quota, newly_locked):
            return None
        self.lock(ancestor)
        try:
            pages = self._alloc_device(chain_, host_len)
        finally:
            self.unlock(ancestor)
        if pages is None:
            return None
        self._send(Transfer("load", pages, list(chain.from_iterable(n.host_pages for n in chain_))))
        used = 0
        for n in chain_:
            self._revive(n, pages[used: used + len(n.host_pages)])
            used += len(n.host_pages)
        self.loaded_tokens += host_len
        return pages

    def init_load_back(self, node: HiTreeNode, mem_quota: int | None = None) -> tuple[list[int], TreeNode]:
        """Load back the chain ending at ``node`` if it is host-only (SGLang: ``init_load_back``):
        the device pages loaded and the deepest node now on the device."""
        if node.evicted:
            pages = self.load_back(node, mem_quota)
            if pages is not None:
                return pages, node
            while node.evicted:
                node = node.parent
        return [], node

    def protect_host(self, node: HiTreeNode) -> None:
        """Keep ``node``'s host copy from host eviction until ``release_host``."""
        self._locked_path(node)                     # a node of this tree
        if not node.backuped:
            raise ValueError(f"node #{node.id} has no host copy to protect")
        node.host_ref += 1

    def release_host(self, node: HiTreeNode) -> None:
        """Undo one ``protect_host(node)``; below zero is an error."""
        self._locked_path(node)
        if node.host_ref == 0:
            raise ValueError(f"node #{node.id}'s host copy is not protected")
        node.host_ref -= 1

    # ------------------------------------------------------- tier mechanics
    def _stamp(self, nodes: Iterable[TreeNode]) -> None:
        """One tick of the clock per node (SGLang's HiRadixCache reads the time once per node)."""
        for node in nodes:
            self._clock += 1
            node.last_access = self._clock

    def _count_hit(self, node: HiTreeNode) -> None:
        """An insert passed ``node`` (SGLang: ``_inc_hit_count``): write-back counts nothing;
        otherwise a node without a host copy is backed up once it has enough hits."""
        if self._write_threshold is None:
            return
        node.hits += 1
        if not node.backuped and node.hits >= self._write_threshold:
            self.write_backup(node)

    def _revive(self, node: HiTreeNode, pages: list[int]) -> None:
        """A host-only node is on the device again, in ``pages`` (already the tree's)."""
        node.pages = pages
        self._evictable += len(node.key)
        self._update_leaf_status(node)
        self._update_host_leaf_status(node)
        self._update_leaf_status(node.parent)

    def _evict_backuped(self, node: HiTreeNode) -> int:
        """Drop a backed-up node's device copy; it stays in the tree, on the host."""
        self.allocator.reclaim(node.pages)
        node.pages = None
        self._evictable -= len(node.key)
        self._update_leaf_status(node)
        self._update_host_leaf_status(node)
        self._update_leaf_status(node.parent)
        return len(node.key)

    def _evict_regular(self, node: HiTreeNode) -> int:
        """Delete a device leaf that has no host copy."""
        self._delete_leaf(node)
        return len(node.key)

    def _delete_host_leaf(self, leaf: HiTreeNode) -> HiTreeNode:
        """Free a host-only leaf's host pages and unhook it; return its parent."""
        self.host_allocator.reclaim(leaf.host_pages)
        self._host_tokens -= len(leaf.key)
        self.host_evicted_tokens += len(leaf.key)
        parent = self._unhook(leaf)
        self._host_leaves.discard(leaf)
        self._update_host_leaf_status(parent)
        return parent

    def _host_chain(self, node: HiTreeNode) -> list[HiTreeNode]:
        """The host-only nodes from the device down to ``node`` (a node of this tree)."""
        self._locked_path(node)
        if not node.evicted:
            raise ValueError(f"node #{node.id} is on the device: there is nothing to load back")
        chain_ = []
        while node.evicted:
            chain_.append(node)
            node = node.parent
        return chain_[::-1]

    def _alloc_device(self, chain_: list[HiTreeNode], host_len: int) -> list[int] | None:
        """Device pages for ``chain_``, evicting ``host_len`` tokens if the pool is short; the
        chain's host copies are held meanwhile (a write-back eviction may evict host leaves)."""
        need = host_len // self.page_size
        if self.allocator.available < need:
            for n in chain_:
                n.host_ref += 1
            try:
                self.evict(host_len)
            finally:
                for n in chain_:
                    n.host_ref -= 1
        if self.allocator.available < need:
            return None
        return self.allocator.adopt(self.allocator.alloc(need))

    def _send(self, transfer: Transfer) -> None:
        """Hand a completed copy to ``transfer`` (no bytes move without one)."""
        if self.transfer is not None:
            self.transfer(transfer)

    # ------------------------------------------- RadixCache hooks, two tiers
    def _split(self, child: HiTreeNode, n: int) -> HiTreeNode:
        """Cut ``child`` after ``n`` tokens, both copies alike; return the new upper part."""
        cut = n // self.page_size
        upper = self._new_node(child.parent, child.key[:n], _head(child.pages, cut), child.priority)
        upper.host_pages, child.host_pages = _head(child.host_pages, cut), _tail(child.host_pages, cut)
        upper.hits, upper.lock_ref = child.hits, child.lock_ref
        child.key, child.pages, child.parent = child.key[n:], _tail(child.pages, cut), upper
        upper.children[self._child_key(child.key, 0)] = child
        upper.parent.children[self._child_key(upper.key, 0)] = upper
        return upper

    def _update_leaf_status(self, node: HiTreeNode) -> None:
        """A device leaf: on the device, unlocked, and no child on the device."""
        if node.evicted or node.lock_ref > 0 or not all(c.evicted for c in node.children.values()):
            self._evictable_leaves.discard(node)
        else:
            self._evictable_leaves.add(node)

    def _update_host_leaf_status(self, node: HiTreeNode) -> None:
        """A host leaf: host-only, unlocked, and no child with a host copy."""
        if not node.evicted or node.lock_ref > 0 or any(c.backuped for c in node.children.values()):
            self._host_leaves.discard(node)
        else:
            self._host_leaves.add(node)

    def _describe(self, node: HiTreeNode) -> str:
        """The drawing's line for ``node``: chapter 02's, plus its host pages and its tier(s)."""
        where = "host only" if node.evicted else "device+host" if node.backuped else "device"
        host = f" host={node.host_pages}" if node.backuped else ""
        return f"{describe(node)}{host} [{where}]"

    def __str__(self) -> str:
        head = (f"HiRadixCache(page_size={self.page_size}, eviction={self.eviction}, "
                f"write_policy={self.write_policy}) device={self.total_size} evictable={self.evictable_size} "
                f"protected={self.protected_size} free_pages={self.allocator.available} "
                f"host={self.host_size} free_host_pages={self.host_allocator.available}")
        return "\n".join([head, "root"] + self._dump(self.root, ""))

    # ------------------------------------------------------------ invariants
    def check_invariants(self, held: Iterable[int] | None = None) -> None:
        """Raise ``InvariantError`` naming the first inconsistency, on both tiers.

        Every device page and every host page is free, held by a caller (device only:
        ``held``, when given) or owned by exactly one node. A host-only node is unlocked,
        has a host copy and only host-only children; outside write-back a backed-up node's
        parent is backed up. Sizes and both leaf sets agree with the tree.
        """
        device: dict[int, TreeNode] = {}
        host: dict[int, TreeNode] = {}
        sizes = [0, 0, 0]                                   # evictable, protected, host tokens
        for node in self.nodes():
            self._check_node(node)
            if not node.evicted:
                _own(device, node.pages, node, "device")
                sizes[node.lock_ref > 0] += len(node.key)
            if node.backuped:
                _own(host, node.host_pages, node, "host")
                sizes[2] += len(node.key)
        _require(sizes == [self._evictable, self._protected, self._host_tokens],
                 f"sizes (evictable, protected, host) are {(self._evictable, self._protected, self._host_tokens)}, "
                 f"the tree says {tuple(sizes)}")
        self._check_leaf_sets()
        _require(self.root.lock_ref == 1, f"root lock_ref is {self.root.lock_ref}, must stay 1")
        self._check_pages(device, held)
        _check_host_pages(self.host_allocator, host)

    def _check_node(self, node: HiTreeNode) -> None:
        """One node's own invariants on both tiers (a host-only node has no device checks)."""
        if node.evicted:
            _require(len(node.key) > 0 and len(node.key) % self.page_size == 0,
                     f"#{node.id} key length {len(node.key)} is not a positive multiple of {self.page_size}")
            _require(node.backuped, f"#{node.id} is off the device with no host copy: its K/V are lost")
            _require(node.lock_ref == 0, f"#{node.id} is host-only but locked")
            _require(node.parent.children.get(self._child_key(node.key, 0)) is node,
                     f"#{node.id} is not filed under its first page in #{node.parent.id}")
        else:
            super()._check_node(node)
            _require(not node.parent.evicted, f"#{node.id} is on the device under host-only #{node.parent.id}")
        if node.backuped:
            _require(len(node.host_pages) == len(node.key) // self.page_size,
                     f"#{node.id} has {len(node.host_pages)} host pages for {len(node.key)} tokens")
            _require(self.write_policy == "write_back" or node.parent.backuped,
                     f"#{node.id} is backed up but its parent #{node.parent.id} is not (contiguity)")
        _require(node.host_ref >= 0, f"#{node.id} host_ref is negative")

    def _check_leaf_sets(self) -> None:
        """Both leaf sets equal what the tree says they are."""
        nodes = list(self.nodes())
        device = {n for n in nodes if not n.evicted and n.lock_ref == 0 and all(c.evicted for c in n.children.values())}
        _require(device == self._evictable_leaves, "evictable (device) leaf set out of date")
        host = {n for n in nodes if n.evicted and not any(c.backuped for c in n.children.values())}
        _require(host == self._host_leaves, "host leaf set out of date")


class HiRouter(Router):
    """A ``Router`` over a ``HiRadixCache``: an admission match that ends in host-only
    nodes loads them back (SGLang: ``init_load_back`` in ``PrefillAdder.add_one_req``),
    so ``lookup`` may move pages; the loaded tokens count as cached."""

    def _admission_match(self, tokens: Sequence[int]) -> MatchResult:
        """The device match, extended by the host-only run if ``init_load_back`` loads it."""
        hit = self.cache.match_prefix(tokens)
        if not hit.host_len:
            return hit
        loaded, node = self.cache.init_load_back(hit.host_node)
        return MatchResult(hit.prefix_len + len(loaded) * self.page_size, hit.pages + loaded, node)


# ---------------------------------------------------------------- replays
class HiReplay(NamedTuple):
    """What one two-tier replay saw."""
    write_policy: str
    num_pages: int          # device pool
    host_pages: int         # host pool
    page_size: int
    prefix_lens: list[int]  # prompt tokens served from either tier (not computed)
    loaded_lens: list[int]  # of which loaded back from host memory
    prompt_lens: list[int]
    written_tokens: int     # tokens copied device -> host

    @property
    def hit_rate(self) -> float:
        """Cached prompt tokens (device or host) over all prompt tokens."""
        return sum(self.prefix_lens) / sum(self.prompt_lens)

    @property
    def loaded_tokens(self) -> int:
        """Prompt tokens loaded back from host memory, over the whole replay."""
        return sum(self.loaded_lens)


def hi_replay(prompts: Sequence[Sequence[int]], num_pages: int, host_pages: int, page_size: int,
              write_policy: str = "write_through", eviction: str = "lru") -> HiReplay:
    """Serve ``prompts`` in order (``Router.serve``) through a fresh two-tier cache: one request
    at a time, to its end before the next, as ``replay.replay`` (not SGLang's serving loop)."""
    cache = HiRadixCache(PageAllocator(num_pages, page_size), PageAllocator(host_pages, page_size),
                         write_policy, eviction)
    router = HiRouter(cache)
    prefix_lens, loaded_lens = [], []
    for tokens in prompts:
        before = cache.loaded_tokens
        prefix_lens.append(router.serve(tokens).prefix_len)
        loaded_lens.append(cache.loaded_tokens - before)
    router.check_invariants([])
    return HiReplay(write_policy, num_pages, host_pages, page_size, prefix_lens, loaded_lens,
                    [len(p) for p in prompts], cache.written_tokens)


def tiered_hit_rates(prompts: Sequence[Sequence[int]], page_size: int, fractions: Sequence[float],
                     host_ratios: Sequence[float], write_policy: str = "write_through"
                     ) -> dict[float, list[tuple[float, float]]]:
    """Hit rate at each device capacity (a fraction of ``replay.distinct_pages``) per host
    ratio (host pages = ratio x device pages; 0 is the one-tier cache of ``replay.replay``)."""
    sizes = capacity_pages(prompts, page_size, fractions)
    return {ratio: [(f, (hi_replay(prompts, n, int(ratio * n), page_size, write_policy) if ratio
                         else replay(prompts, n, page_size)).hit_rate) for f, n in zip(fractions, sizes)]
            for ratio in host_ratios}


def breakeven_bandwidth(prefill_flops: float, kv_bytes: float, flops_per_second: float) -> float:
    """The host-link bandwidth (bytes/s) at which copying a prefix's K/V back takes as long as
    recomputing it (``kv_bytes / W == prefill_flops / F``); a faster link makes loading win."""
    return kv_bytes * flops_per_second / prefill_flops


# ------------------------------------------------------ moving the bytes
def kv_transfer(device_pool, host_pool) -> Callable[[Transfer], None]:
    """The ``transfer`` that copies each ``Transfer``'s K/V between two ``kv_pool.KVPool``s,
    every layer (SGLang's controller: ``backup_from_device_all_layer``, and
    ``load_to_device_per_layer`` one layer at a time, overlapped with the forward)."""
    if (device_pool.num_layers, device_pool.page_size) != (host_pool.num_layers, host_pool.page_size):
        raise ValueError("the host pool must have the device pool's layers and page size")

    def copy(transfer: Transfer) -> None:
        src, dst = (device_pool, host_pool) if transfer.kind == "write" else (host_pool, device_pool)
        src_pages, dst_pages = ((transfer.device_pages, transfer.host_pages) if transfer.kind == "write"
                                else (transfer.host_pages, transfer.device_pages))
        src_slots, dst_slots = src.slot_tensor(src_pages), dst.slot_tensor(dst_pages)
        for layer in range(src.num_layers):
            k, v = src.gather(layer, src_slots)
            dst.write(layer, dst_slots, k.to(dst.k.device), v.to(dst.v.device))
    return copy


# --------------------------------------------------------------- helpers
def _head(pages: list[int] | None, cut: int) -> list[int] | None:
    """The first ``cut`` pages, or ``None`` for no copy."""
    return None if pages is None else pages[:cut]


def _tail(pages: list[int] | None, cut: int) -> list[int] | None:
    """The pages after the first ``cut``, or ``None`` for no copy."""
    return None if pages is None else pages[cut:]


def _own(owner: dict[int, TreeNode], pages: list[int], node: TreeNode, tier: str) -> None:
    """Record ``node`` as the owner of ``pages``; a page owned twice is an ``InvariantError``."""
    for p in pages:
        _require(p not in owner, f"{tier} page {p} owned by #{owner.get(p, node).id} and #{node.id}")
        owner[p] = node


def _check_host_pages(allocator: PageAllocator, owner: dict[int, TreeNode]) -> None:
    """The host allocator's tree pages are exactly the nodes' host pages; no caller holds any."""
    for p, node in owner.items():
        _require(not allocator.is_free(p), f"host page {p} of #{node.id} is free in the host allocator")
    held = allocator.held()
    _require(not held, f"host pages {sorted(held)} are allocated but owned by no node")
    _require(len(owner) == allocator.tree_pages,
             f"the host allocator counts {allocator.tree_pages} tree pages, the nodes hold {len(owner)}")


__all__ = ["breakeven_bandwidth", "HiMatch", "HiRadixCache", "HiReplay", "HiRouter", "HiTreeNode", "InvariantError",
           "LOAD_BACK_THRESHOLD", "Transfer", "WRITE_POLICIES", "hi_replay", "host_pool_pages",
           "kv_transfer", "should_load_back", "tiered_hit_rates"]
