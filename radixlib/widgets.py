"""The cache lab: step a RadixCache by hand and watch the tree and the pool change.

``CacheLab`` is a pure state machine (no widgets): ``step(action, arg)`` applies one of
insert / match / lock / unlock / evict / reset to a copy of the current cache and
appends the result to a history, so ``goto``/``undo``/``redo`` move back and forth
without recomputing anything. A failed step raises and leaves the history unchanged.
``CacheLabView`` is the ipywidgets front end: it only calls ``step``/``goto`` and
redraws; tests and notebook cells drive the same ``CacheLab`` from code.

    insert TEXT   serve the prompt as a request would (``replay.serve``): match, lock, allocate
                  the suffix (evicting the shortfall), insert, unlock; refused if it cannot fit
    match TEXT    match_prefix (may split a node); its path is highlighted
    lock [#id]    lock a node (default: the last match), like a request holding its prefix
    unlock [#id]  release one lock (default: the most recent)
    evict N       evict at least N tokens
    reset [cfg]   a fresh cache (optionally with a new LabConfig)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from html import escape
from typing import Callable, NamedTuple, Sequence, TypeVar

import ipywidgets as w
from IPython.display import display

from .eviction import POLICIES
from .pages import OutOfPages, PageAllocator
from .radix_cache import RadixCache, TreeNode
from .replay import serve
from .viz import WordTokenizer, draw_pages, draw_tree

ACTIONS = ("insert", "match", "lock", "unlock", "evict", "reset")
T = TypeVar("T")


class LabConfig(NamedTuple):
    """The cache a lab starts from (and a reset rebuilds)."""
    num_pages: int = 24
    page_size: int = 1
    policy: str = "lru"


class Frame(NamedTuple):
    """One state in the history; its cache is never mutated after the step that made it."""
    action: str
    arg: object
    message: str
    config: LabConfig
    cache: RadixCache
    locks: tuple[int, ...]       # node ids held by lab locks, oldest first
    matched: int | None          # node id of the last match (drawn highlighted)


class CacheLab:
    """A RadixCache with a step-by-step, undoable history (what the widget drives)."""

    def __init__(self, config: LabConfig = LabConfig(), tokenizer: WordTokenizer | None = None):
        self.tokenizer = tokenizer or WordTokenizer()
        start = RadixCache(PageAllocator(config.num_pages, config.page_size), config.policy)
        self.history: list[Frame] = [Frame("start", None, _config_text(config), config, start, (), None)]
        self.position = 0

    # -------------------------------------------------------- state access
    @property
    def frame(self) -> Frame:
        return self.history[self.position]

    @property
    def cache(self) -> RadixCache:
        return self.frame.cache

    @property
    def message(self) -> str:
        return self.frame.message

    def node(self, node_id: int) -> TreeNode:
        """The current cache's node ``#node_id``; ``ValueError`` if it is not in the tree."""
        return _node(self.cache, node_id)

    # ------------------------------------------------------------ stepping
    def step(self, action: str, arg: object = None) -> str:
        """Apply ``action`` to a copy of the current state, append it, return its log line.

        Stepping after ``undo`` drops the undone future. Errors leave everything as it was.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; choose one of {ACTIONS}")
        work = _Work(self.frame.config, copy.deepcopy(self.frame.cache), list(self.frame.locks), self.frame.matched)
        message = getattr(self, f"_{action}")(work, arg)
        if work.matched not in _ids(work.cache):        # the matched node was evicted
            work.matched = None
        del self.history[self.position + 1:]
        self.history.append(Frame(action, arg, message, work.config, work.cache, tuple(work.locks), work.matched))
        self.position += 1
        return message

    def goto(self, position: int) -> Frame:
        """Show history entry ``position`` (0 is the start)."""
        if not 0 <= position < len(self.history):
            raise ValueError(f"history position {position} is not in 0..{len(self.history) - 1}")
        self.position = position
        return self.frame

    def undo(self) -> Frame:
        return self.goto(max(self.position - 1, 0))

    def redo(self) -> Frame:
        return self.goto(min(self.position + 1, len(self.history) - 1))

    def tokens(self, prompt: str | Sequence[int]) -> list[int]:
        """Token ids of a prompt: text goes through the lab's word tokenizer."""
        return self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)

    # ------------------------------------------------------------- drawing
    def draw_tree(self):
        """The current tree, the last match highlighted, words decoded."""
        matched = self.node(self.frame.matched) if self.frame.matched is not None else None
        return draw_tree(self.cache, self.tokenizer, highlight=matched)

    def draw_pages(self):
        return draw_pages(self.cache.allocator, self.cache)

    # ------------------------------------------------------------- actions
    def _insert(self, work: _Work, prompt) -> str:
        tokens = self.tokens(prompt)
        note, served = _changes(work.cache, lambda: serve(work.cache, tokens))
        if not served.stored:
            raise OutOfPages(f"{len(tokens)} tokens do not fit: {work.cache.protected_size} of "
                             f"{work.config.num_pages * work.config.page_size} slots are locked")
        return _join(f"inserted {len(tokens)} tokens: {served.cached} matched, "
                     f"{len(tokens) - served.cached} computed", note)

    def _match(self, work: _Work, prompt) -> str:
        tokens = self.tokens(prompt)
        note, m = _changes(work.cache, lambda: work.cache.match_prefix(tokens))
        work.matched = m.node.id
        return _join(f"matched {m.length} of {len(tokens)} tokens at node #{m.node.id}, pages {m.pages}", note)

    def _lock(self, work: _Work, node_id) -> str:
        node_id = work.matched if node_id is None else node_id
        if node_id is None or node_id == work.cache.root.id:
            raise ValueError("nothing to lock: match a prompt first or give a node id")
        work.cache.lock(_node(work.cache, node_id))
        work.locks.append(node_id)
        return f"locked #{node_id} and its ancestors; protected={work.cache.protected_size} tokens"

    def _unlock(self, work: _Work, node_id) -> str:
        if not work.locks:
            raise ValueError("no lock is held")
        node_id = work.locks[-1] if node_id is None else node_id
        if node_id not in work.locks:
            raise ValueError(f"node #{node_id} is not held by a lock; held: {work.locks}")
        work.cache.unlock(_node(work.cache, node_id))
        work.locks.remove(node_id)
        return f"unlocked #{node_id}; evictable={work.cache.evictable_size} tokens"

    def _evict(self, work: _Work, num_tokens) -> str:
        note, freed = _changes(work.cache, lambda: work.cache.evict(int(num_tokens)))
        return _join(f"asked to evict {num_tokens} tokens, freed {freed}", note)

    def _reset(self, work: _Work, config: LabConfig | None) -> str:
        work.config = config or work.config
        work.cache = RadixCache(PageAllocator(work.config.num_pages, work.config.page_size), work.config.policy)
        work.locks, work.matched = [], None
        return "reset: " + _config_text(work.config)


@dataclass
class _Work:
    """The mutable state one step works on (a copy of the current frame's)."""
    config: LabConfig
    cache: RadixCache
    locks: list[int]
    matched: int | None


def _config_text(config: LabConfig) -> str:
    return f"{config.num_pages} pages of {config.page_size} token(s), policy {config.policy}"


def _ids(cache: RadixCache) -> set[int]:
    """Ids of the root and every node."""
    return {cache.root.id} | {n.id for n in cache.nodes()}


def _node(cache: RadixCache, node_id: int) -> TreeNode:
    if node_id == cache.root.id:
        return cache.root
    found = next((n for n in cache.nodes() if n.id == node_id), None)
    if found is None:
        raise ValueError(f"there is no node #{node_id} in the tree")
    return found


def _changes(cache: RadixCache, operation: Callable[[], T]) -> tuple[str, T]:
    """Run ``operation``; return a note on the nodes it split, evicted and added, and its result."""
    before = {n.id: n for n in cache.nodes()}
    result = operation()
    after = {n.id: n for n in cache.nodes()}
    new = [after[i] for i in sorted(after.keys() - before.keys())]
    gone = sorted(before.keys() - after.keys())
    notes = [f"split #{c.id}: its first {len(n.key)} tokens became new node #{n.id}"
             for n in new if not n.is_leaf for c in n.children.values() if c.id in before]
    notes += [f"evicted {', '.join(f'#{i}' for i in gone)}"] if gone else []
    notes += [f"new leaf #{n.id}" for n in new if n.is_leaf]
    return "; ".join(notes), result


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


class CacheLabView:
    """ipywidgets over a ``CacheLab``: prompt box, a button per action, config, history slider.

    Every button calls ``lab.step``; the slider calls ``lab.goto``; after either the tree
    and the page grid are redrawn as SVG and the log line shows the step's message.
    """

    def __init__(self, lab: CacheLab | None = None):
        self.lab = lab or CacheLab()
        config = self.lab.frame.config
        self.prompt = w.Text(value="the cat sat on the mat", description="prompt")
        self.node_id = w.Text(value="", description="node #", placeholder="last match / last lock")
        self.evict_tokens = w.BoundedIntText(value=4, min=0, max=10**6, description="evict N")
        self.num_pages = w.BoundedIntText(value=config.num_pages, min=1, max=256, description="pages")
        self.page_size = w.Dropdown(options=[1, 2, 4], value=config.page_size, description="page size")
        self.policy = w.Dropdown(options=list(POLICIES), value=config.policy, description="policy")
        self.buttons = {a: w.Button(description=a) for a in ACTIONS}
        for action, button in self.buttons.items():
            button.on_click(lambda _, a=action: self.click(a))
        self.history = w.IntSlider(value=0, min=0, max=0, description="history")
        self.history.observe(lambda change: self.show(change["new"]), names="value")
        self.log, self.tree, self.pages = w.HTML(), w.HTML(), w.HTML()
        self.box = w.VBox([w.HBox([self.prompt, self.node_id, self.evict_tokens]),
                           w.HBox(list(self.buttons.values())),
                           w.HBox([self.num_pages, self.page_size, self.policy]),
                           self.history, self.log, self.tree, self.pages])
        for widget, css in ((self.box, "cache-lab"), (self.log, "cache-lab-log"),
                            (self.tree, "cache-lab-tree"), (self.pages, "cache-lab-pages")):
            widget.add_class(css)                   # stable hooks for the browser test
        self.redraw()

    def click(self, action: str) -> None:
        """What a button does: one ``lab.step`` with the controls' values, then redraw."""
        try:
            self.lab.step(action, self._arg(action))
        except (ValueError, TypeError, RuntimeError) as error:
            self.log.value = f"<b>{action}</b> refused: {escape(str(error))}"
            return
        self.redraw()

    def show(self, position: int) -> None:
        """Move through the history (the slider's handler)."""
        if position != self.lab.position:
            self.lab.goto(position)
            self.redraw()

    def redraw(self) -> None:
        frame = self.lab.frame
        self.history.max = len(self.lab.history) - 1
        self.history.value = self.lab.position
        self.log.value = f"<b>{frame.action}</b>: {escape(frame.message)}"
        self.tree.value = _inline_svg(self.lab.draw_tree())
        self.pages.value = _inline_svg(self.lab.draw_pages())

    def _arg(self, action: str):
        if action in ("insert", "match"):
            return self.prompt.value
        if action in ("lock", "unlock"):
            return int(self.node_id.value.strip().lstrip("#")) if self.node_id.value.strip() else None
        if action == "evict":
            return self.evict_tokens.value
        return LabConfig(self.num_pages.value, self.page_size.value, self.policy.value)

    def _ipython_display_(self) -> None:
        display(self.box)


def _inline_svg(graph) -> str:
    """The drawing as an ``<svg>`` element for HTML: no XML prolog, shrunk to the cell's width."""
    svg = graph.pipe(format="svg", encoding="utf-8")
    return svg[svg.index("<svg"):].replace("<svg ", '<svg style="max-width: 100%; height: auto" ', 1)
