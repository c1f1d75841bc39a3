"""The operations a stream is made of, and what each side reports back.

A stream is a list of operations. Cache operations (``Match``, ``Insert``, ``Lock``,
``Unlock``, ``Evict``) go to both caches and their ``Outcome``s must be equal.
Caller operations (``Alloc``, ``Free``) are the serving engine's own page bookkeeping:
only our side has a page pool to replay them on, and they have no outcome.

Node handles differ between the two caches, so ``Lock``/``Unlock`` name the index
of the ``Match`` whose node they lock; each side keeps its own index -> node map.
Pages are our cache's currency; SGLang stores slot indices, page ``p`` being the
slots ``p * page_size .. p * page_size + page_size - 1``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

Tokens = tuple[int, ...]
Pages = tuple[int, ...]


class Match(NamedTuple):
    """Look up the longest cached prefix of ``tokens``."""
    tokens: Tokens


class Insert(NamedTuple):
    """Cache ``tokens`` whose K/V live in ``pages`` (floor or ceil of len/page_size of them)."""
    tokens: Tokens
    pages: Pages
    priority: int = 0


class Lock(NamedTuple):
    """Lock the node that ``Match`` number ``ref`` returned."""
    ref: int


class Unlock(NamedTuple):
    """Undo one ``Lock`` of the node that ``Match`` number ``ref`` returned."""
    ref: int


class Evict(NamedTuple):
    """Free at least ``num_tokens`` tokens of unlocked leaves."""
    num_tokens: int


class Alloc(NamedTuple):
    """Caller: take ``num_pages`` pages from the pool (lowest free ids first)."""
    num_pages: int


class Free(NamedTuple):
    """Caller: give back pages it owns (duplicates of cached ones, unaligned tails)."""
    pages: Pages


Op = Match | Insert | Lock | Unlock | Evict | Alloc | Free
CACHE_OPS = (Match, Insert, Lock, Unlock, Evict)


class Matched(NamedTuple):
    """What a ``Match`` found; ``node_len`` (tokens on the edge into the returned
    node) shows where a split cut the tree."""
    length: int
    pages: Pages
    node_len: int


class Evicted(NamedTuple):
    """What an ``Evict`` freed: the token count and each freed node's pages, in order."""
    freed: int
    frees: tuple[Pages, ...]


class Sizes(NamedTuple):
    """Tokens in unlocked and in locked nodes. (Total size, a tree walk in SGLang,
    is compared at every tree check rather than after every operation.)"""
    evictable: int
    protected: int


class Outcome(NamedTuple):
    """A cache operation's result (``Matched``, ``Evicted``, the present length of an
    ``Insert``, or ``None`` for ``Lock``/``Unlock``) and the cache's sizes after it."""
    result: Matched | Evicted | int | None
    sizes: Sizes


class RawNode(NamedTuple):
    """One node as a side reports it for a tree snapshot (depth-first, children by key)."""
    depth: int
    key: Tokens
    pages: Pages
    lock_ref: int
    hits: int
    priority: int
    last_access: float
    created: float


class NodeView(NamedTuple):
    """``RawNode`` with each time replaced by its rank among the tree's times, so that
    two clocks that order events alike give equal views."""
    depth: int
    key: Tokens
    pages: Pages
    lock_ref: int
    hits: int
    priority: int
    access_rank: int
    created_rank: int


def tree_view(nodes: Iterable[RawNode]) -> list[NodeView]:
    """A snapshot that compares equal across sides when the trees agree."""
    nodes = list(nodes)
    access = _dense_ranks([n.last_access for n in nodes])
    created = _dense_ranks([n.created for n in nodes])
    return [NodeView(*n[:6], a, c) for n, a, c in zip(nodes, access, created)]


def _dense_ranks(times: list[float]) -> list[int]:
    rank = {t: r for r, t in enumerate(sorted(set(times)))}
    return [rank[t] for t in times]


class Side(ABC):
    """One cache under comparison. ``apply`` is what the tests use; the benchmark
    times ``call`` alone, with the arguments ``prepare`` built beforehand."""

    name: str

    def apply(self, index: int, op: Op) -> Outcome | None:
        """Run stream operation number ``index``; the outcome of a cache operation."""
        raw = self.call(index, op, self.prepare(op))
        return Outcome(self.result(op, raw), self.sizes()) if isinstance(op, CACHE_OPS) else None

    @abstractmethod
    def prepare(self, op: Op) -> tuple:
        """The cache call's arguments, in the form this cache takes them."""

    @abstractmethod
    def call(self, index: int, op: Op, args: tuple) -> Any:
        """The one cache (or caller) call ``op`` stands for; its raw return value."""

    @abstractmethod
    def result(self, op: Op, raw: Any) -> Matched | Evicted | int | None:
        """``raw`` in the common form."""

    @abstractmethod
    def sizes(self) -> Sizes: ...

    @abstractmethod
    def total_size(self) -> int: ...

    @abstractmethod
    def snapshot(self) -> Iterator[RawNode]:
        """Every node but the root, depth first, children in key order."""


def depth_first(root: Any) -> Iterator[tuple[Any, int]]:
    """``(node, depth)`` below ``root``, parents first, children in key order
    (both caches keep a node's children in a dict ``children``, by child key)."""
    stack = [(root, -1)]
    while stack:
        node, depth = stack.pop()
        if depth >= 0:
            yield node, depth
        stack.extend((node.children[k], depth + 1) for k in sorted(node.children, reverse=True))


def brief(op: Op) -> str:
    """``op`` with long token and page lists cut short, for failure messages."""
    fields = ", ".join(f"{name}={_short(value)}" for name, value in op._asdict().items())
    return f"{type(op).__name__}({fields})"


def _short(value, keep: int = 6) -> str:
    if isinstance(value, tuple) and len(value) > keep:
        return f"({', '.join(map(str, value[:keep]))}, … {len(value)} in all)"
    return repr(value)
