"""Seeing the cache: the radix tree, the page pool and the architecture as graphviz drawings.

Every ``draw_*`` function returns a ``graphviz.Digraph`` (it renders as SVG in a notebook),
except ``draw_lab_steps``: a lab's whole history, one drawing a step, for pages without a
kernel. Nothing here changes a cache. Plots are in ``plots.py``; the library's source in
``source.py``.

Colours (one palette for tree and pool)::

    locked (lock_ref > 0)     blue        evictable leaf        orange
    next eviction victim      red         other cached node     white
    last match's path         green edges and borders
    held by a request         purple      free page             grey
"""
from __future__ import annotations

import base64
from html import escape
from typing import NamedTuple, Protocol

import graphviz

from .lab import CacheLab
from .radix_cache import MatchResult, RadixCache, TreeNode

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


def draw_lab(lab: CacheLab, legend: bool = True) -> graphviz.Digraph:
    """The lab's current tree, its last match highlighted, words decoded."""
    return draw_tree(lab.cache, lab.tokenizer, highlight=lab.matched, legend=legend)


class LabSteps(NamedTuple):
    """A lab's history as drawings: the tree after each step, under what the step did.

    What the cache lab widget shows click by click, for a page with no kernel to run it (the
    static book): captioned SVG drawings in a notebook, one line a step as text.
    """
    steps: tuple[str, ...]            # '2. insert "the cat ate"'
    messages: tuple[str, ...]         # the lab's log line for that step
    drawings: tuple[graphviz.Digraph, ...]

    def __repr__(self) -> str:
        return "\n".join(f"{step}: {message}" for step, message in zip(self.steps, self.messages))

    def _repr_html_(self) -> str:
        caption = '<figcaption style="text-align: left; margin: 0 0 0.4em 0"><b>{}</b>: {}</figcaption>'
        figures = "".join(f'<figure style="margin: 0 0 1.5em 0">{caption.format(escape(step), escape(message))}'
                          f"{svg_image(drawing)}</figure>"
                          for step, message, drawing in zip(self.steps, self.messages, self.drawings))
        return f'<div class="cache-lab-steps">{figures}</div>'


def draw_lab_steps(lab: CacheLab) -> LabSteps:
    """``draw_lab`` after every step of ``lab``'s history (1 .. last), leaving the lab where it was.

    The colour key is drawn once, beside the last step's tree.
    """
    position, last = lab.position, len(lab.history) - 1
    steps, messages, drawings = [], [], []
    try:
        for step in range(1, last + 1):
            frame = lab.goto(step)
            steps.append(f"{step}. {frame.action}{_arg_text(frame.arg)}")
            messages.append(frame.message)
            drawings.append(draw_lab(lab, legend=step == last))
    finally:
        lab.goto(position)
    return LabSteps(tuple(steps), tuple(messages), tuple(drawings))


def _arg_text(arg: object) -> str:
    """A step's argument as a caption shows it: a prompt quoted, a number as is, a config not at all."""
    if isinstance(arg, str):
        return f' "{arg}"'
    return f" {arg}" if isinstance(arg, int) else ""


def svg_image(graph: graphviz.Digraph) -> str:
    """The drawing as an ``<img>`` holding its SVG (a data URL): JupyterLab keeps it in an untrusted
    notebook's HTML output, where it strips an inline ``<svg>``."""
    data = base64.b64encode(graph.pipe(format="svg")).decode("ascii")
    return f'<img src="data:image/svg+xml;base64,{data}" style="max-width: 100%" alt="{escape(graph.name)}">'


def inline_svg(graph: graphviz.Digraph) -> str:
    """The drawing as an ``<svg>`` element for HTML: no XML prolog, shrunk to the cell's width."""
    svg = graph.pipe(format="svg", encoding="utf-8")
    return svg[svg.index("<svg"):].replace("<svg ", '<svg style="max-width: 100%; height: auto" ', 1)


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


def page_owners(cache: RadixCache) -> list[PageOwner]:
    """Owner of every page id: free, a tree node, or a request (allocated, not in the tree)."""
    allocator = cache.allocator
    owners = [PageOwner("free") if allocator.is_free(p) else PageOwner("request")
              for p in range(allocator.num_pages)]
    for node in cache.nodes():
        for p in node.pages:
            owners[p] = PageOwner("tree", node)
    return owners


def draw_pages(cache: RadixCache, columns: int = 16) -> graphviz.Digraph:
    """The cache's pool as a grid of pages coloured by owner; a tree page shows its node ``#id``."""
    allocator, victim = cache.allocator, next_victim(cache)
    cells = [_page_cell(p, owner, victim) for p, owner in enumerate(page_owners(cache))]
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


# --- the architecture ---------------------------------------------------------------------

ARCHITECTURE = [  # (from, to, label): one request's path through the library, numbered
    ("prompt", "Engine", "1 generate"),
    ("Engine", "Scheduler", "2 add; next_batch"),
    ("Scheduler", "Router", "3 admit: match,\nreserve"),
    ("Router", "RadixCache", "match_prefix + lock;\ninsert + unlock"),
    ("Router", "PageAllocator", "alloc / free\npages"),
    ("RadixCache", "PageAllocator", "evict frees\nwhole leaves' pages"),
    ("Engine", "AttentionExecutor", "4 prefill suffixes /\ndecode (slots)"),
    ("AttentionExecutor", "KVPool", "write new K/V,\ngather context"),
    ("Engine", "Router", "5 cache_unfinished /\ncache_finished"),
    ("AttentionExecutor", "tokens", "6 next tokens"),
]
PAGE_TO_SLOTS = ("PageAllocator", "KVPool", "page p owns slots\np·ps … p·ps + ps − 1")
COMPONENTS = {  # name: (module, what it owns)
    "Engine": ("engine.py", "the loop"),
    "Scheduler": ("scheduler.py", "what runs next"),
    "Router": ("router.py", "what is cached"),
    "RadixCache": ("radix_cache.py", "tree, lock refs, eviction"),
    "PageAllocator": ("pages.py", "page ids: free or owned"),
    "AttentionExecutor": ("executor.py", "compute only what is new"),
    "KVPool": ("kv_pool.py", "K/V of every slot"),
}
PLANES = {  # cluster title: its components
    "control plane: what runs, where its K/V live\n(standard library only)":
        ("Engine", "Scheduler", "Router", "RadixCache", "PageAllocator"),
    "execution plane: forwards over the slots\nit is handed (torch, transformers)":
        ("AttentionExecutor", "KVPool"),
}


def draw_architecture() -> graphviz.Digraph:
    """The library's components in their two planes, and the numbered path of one request."""
    graph = graphviz.Digraph("architecture", graph_attr={"rankdir": "TB", "fontname": "Helvetica",
                                                         "nodesep": "0.5", "ranksep": "0.45"},
                             node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                        "fontsize": "12", "fillcolor": CACHED},
                             edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    for i, (title, names) in enumerate(PLANES.items()):
        with graph.subgraph(name=f"cluster_{i}") as plane:
            plane.attr(label=title, fontsize="11", style="rounded,dashed", color="#969696", labeljust="l")
            for name in names:
                module, role = COMPONENTS[name]
                plane.node(name, f"{name}\n{module}\n({role})", fillcolor=LOCKED if name == "KVPool" else CACHED)
    for end in ("prompt", "tokens"):
        graph.node(end, shape="plaintext", style="")
    for tail, head, label in ARCHITECTURE:
        graph.edge(tail, head, label=label)
    tail, head, label = PAGE_TO_SLOTS
    graph.edge(tail, head, label=label, style="dashed", arrowhead="none", constraint="false")
    return graph


# --- v2 beside radixlib (chapter 08) --------------------------------------------------------

SHORTFALL, FIX = "#d7301f", MATCHED          # a difference as v2 has it (red), as radixlib has it (green)
V2_BESIDE_RADIXLIB = {  # side: (title, nodes {id: label}, edges [(from, to, label, difference or 0)])
    "v2": ("v2: control-plane faithful", {
        "Router": "Router\nmatch: FULL / PARTIAL / MISS,\nprefix_len, lock, reserve",
        "RadixCache": "RadixCache\npage-tuple keys", "PageManager": "page manager\n(free list)",
        "Executor": "executor\nfull forward", "DynamicCache": "DynamicCache\nper request"}, [
        ("prompt", "Router", "all prompt tokens", 0),
        ("Router", "RadixCache", "match / insert", 0),
        ("Router", "PageManager", "alloc / free", 0),
        ("RadixCache", "PageManager", "③ kept in step\nby convention", 3),
        ("Router", "Executor", "① every token;\nprefix_len is\ncontrol flow only", 1),
        ("Executor", "DynamicCache", "② prefix K/V once\nper request", 2),
        ("DynamicCache", "Executor", "② decode reads\nits own cache", 2)]),
    "radixlib": ("radixlib", {
        "Router": "Router\nmatch: FULL / PARTIAL / MISS,\nprefix_len, lock, reserve",
        "RadixCache": "RadixCache\npage-tuple keys", "PageManager": "PageAllocator",
        "Executor": "AttentionExecutor", "DynamicCache": "KVPool\nshared, paged"}, [
        ("prompt", "Router", "all prompt tokens", 0),
        ("Router", "RadixCache", "match / insert", 0),
        ("Router", "PageManager", "alloc / free", 0),
        ("RadixCache", "PageManager", "③ check_invariants:\nfree + tree + held\n= the pool, page by page", 3),
        ("Router", "Executor", "① prompt[prefix_len:]\nonly, over the\nprefix's slots", 1),
        ("Executor", "DynamicCache", "② new K/V into the\npages the tree owns", 2),
        ("DynamicCache", "Executor", "② prefill and decode\nread the pool", 2)]),
}


def draw_v2_beside_radixlib() -> graphviz.Digraph:
    """v2's data flow beside radixlib's; the three differences numbered, red in v2, green here."""
    graph = graphviz.Digraph("v2_beside_radixlib", graph_attr={"rankdir": "TB", "fontname": "Helvetica",
                                                               "nodesep": "0.35", "ranksep": "0.5"},
                             node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                        "fontsize": "11", "fillcolor": CACHED},
                             edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    for side, (title, nodes, edges) in V2_BESIDE_RADIXLIB.items():
        colour = SHORTFALL if side == "v2" else FIX
        with graph.subgraph(name=f"cluster_{side}") as plane:
            plane.attr(label=title, fontsize="12", style="rounded,dashed", color="#969696", labeljust="l")
            plane.node(f"{side}_prompt", "prompt", shape="plaintext", style="")
            for name, label in nodes.items():
                plane.node(f"{side}_{name}", label, fillcolor=LOCKED if name == "DynamicCache" else CACHED)
            for tail, head, label, difference in edges:
                marked = {"color": colour, "fontcolor": colour, "penwidth": "2"} if difference else {}
                style = {"style": "dashed"} if side == "v2" and difference == 3 else {}
                plane.edge(f"{side}_{tail}", f"{side}_{head}", label=label, **marked, **style)
    return graph
