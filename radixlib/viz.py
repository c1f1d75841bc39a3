"""Seeing the cache: the radix tree and the page pool as graphviz drawings, and plots.

``draw_tree`` and ``draw_pages`` return ``graphviz.Digraph`` objects (they render as SVG
in a notebook); the plot helpers return matplotlib ``Figure`` objects with a title, axis
labels with units and a legend. ``show_source`` displays the library's own code, so the
chapters show what actually runs. Nothing here changes a cache.

Colours (one palette for tree and pool)::

    locked (lock_ref > 0)     blue        evictable leaf        orange
    next eviction victim      red         other cached node     white
    last match's path         green edges and borders
    held by a request         purple      free page             grey
"""
from __future__ import annotations

import inspect
from html import escape
from typing import Iterable, NamedTuple, Protocol, Sequence

import graphviz
import pygments
from matplotlib.figure import Figure
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from .pages import PageAllocator
from .radix_cache import MatchResult, RadixCache, TreeNode
from .replay import Replay

LOCKED, EVICTABLE, VICTIM, CACHED = "#9ecae1", "#fdd49e", "#fc8d59", "#ffffff"
MATCHED, REQUEST, FREE = "#31a354", "#bcbddc", "#f0f0f0"
LEGEND = [("locked (protected)", LOCKED), ("evictable leaf", EVICTABLE),
          ("next eviction victim", VICTIM), ("cached, not a leaf", CACHED)]


class Tokenizer(Protocol):
    """Anything that turns token ids back into text."""
    def decode(self, ids: list[int]) -> str: ...


def node_colour(node: TreeNode, victim: TreeNode | None) -> str:
    """Fill colour by role: locked, else next victim, else evictable leaf, else plain cached."""
    if node.lock_ref > 0:
        return LOCKED
    if node is victim:
        return VICTIM
    return EVICTABLE if node.is_leaf else CACHED


def node_text(node: TreeNode, tokenizer: Tokenizer | None = None, max_tokens: int = 8) -> str:
    """The node's tokens: decoded text when a tokenizer is given, else ids (shortened)."""
    ids = list(node.key[:max_tokens])
    text = tokenizer.decode(ids) if tokenizer else " ".join(map(str, ids))
    more = f" …+{len(node.key) - max_tokens}" if len(node.key) > max_tokens else ""
    return f"{text}{more}"


def node_label(node: TreeNode, tokenizer: Tokenizer | None = None) -> str:
    """Three lines: ``#id "text"``, length and pages, lock ref / last access / hits."""
    return (f"#{node.id}  \"{node_text(node, tokenizer)}\"\n"
            f"len={len(node.key)} pages={node.pages}\n"
            f"lock={node.lock_ref} t={node.last_access} hits={node.hits}")


def next_victim(cache: RadixCache) -> TreeNode | None:
    """The leaf ``cache.evict`` would free first (None when nothing is evictable)."""
    return next(iter(cache.evictable_leaves()), None)


def path_ids(highlight: TreeNode | MatchResult | None) -> set[int]:
    """Ids of the nodes from ``highlight`` (a node or a match) up to the root."""
    node = highlight.node if isinstance(highlight, MatchResult) else highlight
    ids = set()
    while node is not None:
        ids.add(node.id)
        node = node.parent
    return ids


def draw_tree(cache: RadixCache, tokenizer: Tokenizer | None = None,
              highlight: TreeNode | MatchResult | None = None, legend: bool = True) -> graphviz.Digraph:
    """The tree as a graphviz drawing; node ``#k`` is named ``n<k>`` (stable per state).

    ``highlight`` (the last match, or its node) draws its path to the root in green.
    """
    graph = graphviz.Digraph("radix_tree", graph_attr={"rankdir": "LR", "fontname": "Helvetica"},
                             node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                        "fontsize": "10"}, edge_attr={"arrowsize": "0.6"})
    matched = path_ids(highlight)
    graph.node(f"n{cache.root.id}", f"root\nclock={cache.clock}", shape="circle", fillcolor=LOCKED,
               **_match_attrs(cache.root.id in matched))
    victim = next_victim(cache)
    for node in cache.nodes():
        on_path = node.id in matched
        graph.node(f"n{node.id}", node_label(node, tokenizer), fillcolor=node_colour(node, victim),
                   **_match_attrs(on_path))
        graph.edge(f"n{node.parent.id}", f"n{node.id}", **_match_attrs(on_path))
    if legend:
        _add_legend(graph, bool(matched))
    return graph


def _match_attrs(on_path: bool) -> dict[str, str]:
    return {"color": MATCHED, "penwidth": "2.5"} if on_path else {}


def _add_legend(graph: graphviz.Digraph, with_match: bool) -> None:
    """A boxed key of the colours, drawn beside the tree."""
    rows = "".join(f'<TR><TD BORDER="1" BGCOLOR="{colour}" WIDTH="14"></TD><TD ALIGN="LEFT">{escape(name)}</TD></TR>'
                   for name, colour in LEGEND)
    if with_match:
        rows += f'<TR><TD BORDER="1" BGCOLOR="{MATCHED}"></TD><TD ALIGN="LEFT">path of the last match</TD></TR>'
    graph.node("legend", f'<<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="2">{rows}</TABLE>>',
               shape="plaintext", style="", fontsize="9")


class PageOwner(NamedTuple):
    """Who holds a page: ``"free"``, ``"tree"`` (with the node) or ``"request"``."""
    kind: str
    node: TreeNode | None = None


def page_owners(allocator: PageAllocator, cache: RadixCache) -> list[PageOwner]:
    """Owner of every page id: free, a tree node, or a request (allocated, not in the tree)."""
    owners = [PageOwner("free") if allocator.is_free(p) else PageOwner("request")
              for p in range(allocator.num_pages)]
    for node in cache.nodes():
        for p in node.pages:
            owners[p] = PageOwner("tree", node)
    return owners


def draw_pages(allocator: PageAllocator, cache: RadixCache, columns: int = 16) -> graphviz.Digraph:
    """The pool as a grid of pages coloured by owner; a tree page shows its node ``#id``."""
    victim = next_victim(cache)
    cells = [_page_cell(p, owner, victim) for p, owner in enumerate(page_owners(allocator, cache))]
    rows = "".join("<TR>" + "".join(cells[i: i + columns]) + "</TR>" for i in range(0, len(cells), columns))
    key = "".join(f'<TD BORDER="1" BGCOLOR="{c}">{n}</TD>' for n, c in
                  [("free", FREE), ("request", REQUEST), ("tree: locked", LOCKED), ("tree: evictable", EVICTABLE),
                   ("tree: cached", CACHED), ("next victim", VICTIM)])
    graph = graphviz.Digraph("kv_pages", graph_attr={"ranksep": "0.05"},
                             node_attr={"shape": "plaintext", "fontname": "Helvetica", "fontsize": "9"})
    title = f"KV pool: {allocator.num_pages} pages x {allocator.page_size} slots, {allocator.available} free"
    graph.node("pool", f'<<TABLE BORDER="0" CELLSPACING="2"><TR><TD COLSPAN="{columns}">{escape(title)}</TD></TR>'
                       f'{rows}</TABLE>>')
    graph.node("pool_legend", f'<<TABLE BORDER="0" CELLSPACING="2"><TR>{key}</TR></TABLE>>')
    graph.edge("pool", "pool_legend", style="invis")
    return graph


def _page_cell(page: int, owner: PageOwner, victim: TreeNode | None) -> str:
    if owner.kind == "tree":
        colour, text = node_colour(owner.node, victim), f"#{owner.node.id}"
    else:
        colour, text = (FREE, "&#160;") if owner.kind == "free" else (REQUEST, "req")
    return f'<TD BORDER="1" BGCOLOR="{colour}" WIDTH="34">{page}<BR/><FONT POINT-SIZE="8">{text}</FONT></TD>'


# ------------------------------------------------------------------ plots
def plot_hit_rate(curves: dict[str, Sequence[tuple[float, float]]], title: str) -> Figure:
    """Hit rate (%) against capacity (% of the distinct pages) for several policies.

    ``curves`` maps a policy name to ``(capacity fraction, hit rate)`` points; ``"belady"``
    is drawn as a dashed black ceiling. Markers differ so that coinciding lines stay visible.
    """
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for (name, points), marker in zip(curves.items(), "os^vDPX*"):
        xs, ys = zip(*points)
        style = {"color": "black", "linestyle": "--"} if name == "belady" else {"alpha": 0.8}
        ax.plot([100 * x for x in xs], [100 * y for y in ys], marker=marker, label=name, **style)
    ax.set(title=title, xlabel="cache capacity (% of distinct pages)", ylabel="hit rate (% of prompt tokens)",
           ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(title="eviction policy", fontsize=8)
    fig.tight_layout()
    return fig


def plot_occupancy(replays: Iterable[Replay], title: str) -> Figure:
    """Pages held by the cache after each request, one line per replay."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    for r in replays:
        ax.plot(range(1, len(r.occupancy) + 1), r.occupancy, label=f"{r.policy}, {r.num_pages} pages")
    ax.set(title=title, xlabel="request (arrival order)", ylabel="pool occupancy (pages)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_cached_vs_computed(replay: Replay, title: str, start: int = 0, count: int = 60,
                            scale: int = 1) -> Figure:
    """Stacked bars of cached and computed prompt tokens for requests ``start+1 .. start+count``.

    ``scale``: real tokens per replayed token (32 for Mooncake blocks replayed as 16 tokens).
    """
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    cached = [scale * c for c in replay.cached[start: start + count]]
    computed = [scale * p - c for p, c in zip(replay.prompt[start: start + count], cached)]
    xs = range(start + 1, start + len(cached) + 1)
    ax.bar(xs, cached, color=MATCHED, label="cached (read from the pool)")
    ax.bar(xs, computed, bottom=cached, color=VICTIM, label="computed (prefill)")
    ax.set(title=title, xlabel="request (arrival order)", ylabel="prompt tokens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_prefill_vs_cached(cached: Sequence[int], measured_ms: Sequence[float],
                           ideal_ms: Sequence[float], title: str) -> Figure:
    """Prefill time against the number of prompt tokens already in the pool, beside the ideal."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    ax.plot(cached, measured_ms, "o-", label="measured (median)")
    ax.plot(cached, ideal_ms, "k--", label="ideal: full time x FLOPs ratio")
    ax.set(title=title, xlabel="cached prompt tokens", ylabel="prefill time (ms)", ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_throughput(rates: dict[str, dict[str, float]], title: str) -> Figure:
    """New tokens per second per method (bars), one group per workload."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    methods = list(next(iter(rates.values())))
    width = 0.8 / len(rates)
    for i, (workload, by_method) in enumerate(rates.items()):
        ax.barh([m + (i - (len(rates) - 1) / 2) * width for m in range(len(methods))],
                [by_method[m] for m in methods], height=width, label=workload)
    ax.set(title=title, xlabel="new tokens per second", ylabel="method")
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    ax.legend(title="workload", fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ source
class Source(NamedTuple):
    """A piece of the library's source: plain text for ``print``/diffs, highlighted HTML in Jupyter."""
    name: str
    code: str

    def __repr__(self) -> str:
        return f"# {self.name}\n{self.code}"

    def _repr_html_(self) -> str:
        return pygments.highlight(self.code, PythonLexer(), HtmlFormatter(noclasses=True))


def show_source(obj) -> Source:
    """The library's own source of ``obj`` (a function, method, class or module)."""
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    module = inspect.getmodule(obj).__name__
    return Source(f"{module}.{name}" if module != name else name, inspect.getsource(obj))


class WordTokenizer:
    """A word-level tokenizer for drawings: each new word gets the next id (0, 1, 2, ...).

    ``encode`` grows the vocabulary; ids never change, so a drawing stays readable
    however many prompts follow.
    """

    def __init__(self, words: Iterable[str] = ()):
        self.ids: dict[str, int] = {}
        self.words: list[str] = []
        self.encode(" ".join(words))

    def encode(self, text: str) -> list[int]:
        """Split on whitespace and map each word to its id."""
        for word in text.split():
            if word not in self.ids:
                self.ids[word] = len(self.words)
                self.words.append(word)
        return [self.ids[w] for w in text.split()]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.words[i] for i in ids)


# --- the architecture ---------------------------------------------------------------------

ARCHITECTURE = [  # (from, to, label): one request's path through the library, numbered
    ("prompt", "Engine", "1 generate"),
    ("Engine", "Scheduler", "2 add; next_batch"),
    ("Scheduler", "Router", "3 admit: match, reserve"),
    ("Router", "RadixCache", "match_prefix + lock;\ninsert + unlock"),
    ("Router", "PageAllocator", "alloc / free pages"),
    ("RadixCache", "PageAllocator", "evict frees pages"),
    ("Engine", "AttentionExecutor", "4 prefill suffixes / decode"),
    ("AttentionExecutor", "KVPool", "write new K/V,\ngather context"),
    ("Engine", "Router", "5 cache_unfinished /\ncache_finished"),
    ("Engine", "tokens", "6 sample"),
]
COMPONENTS = {  # name: (module, what it owns)
    "Engine": ("engine.py", "the loop"),
    "Scheduler": ("scheduler.py", "what runs next"),
    "Router": ("router.py", "what is cached"),
    "RadixCache": ("radix_cache.py", "tree, lock refs, eviction"),
    "PageAllocator": ("pages.py", "free pages"),
    "AttentionExecutor": ("executor.py", "compute only what is new"),
    "KVPool": ("kv_pool.py", "K/V of every page"),
}


def draw_architecture() -> graphviz.Digraph:
    """The library's components and the numbered path of one request through them."""
    graph = graphviz.Digraph("architecture", graph_attr={"rankdir": "LR", "fontname": "Helvetica"},
                             node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                        "fillcolor": CACHED},
                             edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    for name, (module, role) in COMPONENTS.items():
        graph.node(name, f"{name}\n{module}\n({role})", fillcolor=LOCKED if name == "KVPool" else CACHED)
    for end in ("prompt", "tokens"):
        graph.node(end, shape="plaintext", style="")
    for tail, head, label in ARCHITECTURE:
        graph.edge(tail, head, label=label)
    return graph
