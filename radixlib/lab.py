"""The cache lab: step a RadixCache by hand and watch the tree and the pool change.

``CacheLab`` is a pure state machine (no widgets, no drawing): ``step(action, arg)``
applies one of insert / match / lock / unlock / evict / reset to a copy of the current
cache and appends the result to a history, so ``goto``/``undo``/``redo`` move back and
forth without recomputing anything. A failed step raises and leaves everything as it
was, the tokenizer's vocabulary included. ``widgets.CacheLabView`` is the ipywidgets
front end and ``viz.draw_lab`` its drawing; tests and notebook cells drive the same
``CacheLab`` from code.

    insert TEXT   serve the prompt as a request would (``Router.serve``): match all but its
                  last token, lock, allocate the rest (evicting the shortfall), insert,
                  unlock; refused if it cannot fit
    match TEXT    match_prefix (may split a node); its path is highlighted
    lock [#id]    lock a node (default: the last match), like a request holding its prefix
    unlock [#id]  release one lock (default: the most recent)
    evict N       evict at least N tokens
    reset [cfg]   a fresh cache (optionally with a new LabConfig)
"""
from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from .pages import OutOfPages, PageAllocator
from .radix_cache import RadixCache, TreeNode
from .router import Router

T = TypeVar("T")


ACTIONS = ("insert", "match", "lock", "unlock", "evict", "reset")


class LabConfig(NamedTuple):
    """The cache a lab starts from (and a reset rebuilds)."""
    num_pages: int = 24
    page_size: int = 1
    eviction: str = "lru"

    def new_cache(self) -> RadixCache:
        return RadixCache(PageAllocator(self.num_pages, self.page_size), self.eviction)


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
        self.history: list[Frame] = [Frame("start", None, _config_text(config), config, config.new_cache(), (), None)]
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

    @property
    def matched(self) -> TreeNode | None:
        """The node the last match ended at (drawn highlighted), if it is still in the tree."""
        return None if self.frame.matched is None else _node(self.cache, self.frame.matched)

    def node(self, node_id: int) -> TreeNode:
        """The current cache's node ``#node_id``; ``ValueError`` if it is not in the tree."""
        return _node(self.cache, node_id)

    # ------------------------------------------------------------ stepping
    def step(self, action: str, arg: object = None) -> str:
        """Apply ``action`` to a copy of the current state, append it, return its log line.

        Stepping after ``undo`` drops the undone future. Errors leave everything as it was,
        the tokenizer's vocabulary included.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; choose one of {ACTIONS}")
        work = _Work(self.frame.config, copy.deepcopy(self.frame.cache), list(self.frame.locks), self.frame.matched)
        known_words = len(self.tokenizer.words)
        try:
            message = getattr(self, f"_{action}")(work, arg)
        except Exception:
            self.tokenizer.forget_after(known_words)
            raise
        if work.matched not in _ids(work.cache):        # the matched node was evicted
            work.matched = None
        del self.history[self.position + 1:]
        self.history.append(Frame(action, arg, message, work.config, work.cache, tuple(work.locks), work.matched))
        self.position += 1
        return message

    def goto(self, position: int) -> Frame:
        """Show history entry ``position`` (0 is the start)."""
        if not isinstance(position, int) or not 0 <= position < len(self.history):
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

    # ------------------------------------------------------------- actions
    def _insert(self, work: _Work, prompt) -> str:
        tokens = self.tokens(prompt)
        note, served = _changes(work.cache, lambda: Router(work.cache).serve(tokens))
        if not served.stored:
            raise OutOfPages(f"{len(tokens)} tokens do not fit: {work.cache.protected_size} of "
                             f"{work.config.num_pages * work.config.page_size} slots are locked")
        return _join(f"inserted {len(tokens)} tokens: {served.prefix_len} matched, "
                     f"{len(tokens) - served.prefix_len} computed", note)

    def _match(self, work: _Work, prompt) -> str:
        tokens = self.tokens(prompt)
        note, m = _changes(work.cache, lambda: work.cache.match_prefix(tokens))
        work.matched = m.node.id
        return _join(f"matched {m.prefix_len} of {len(tokens)} tokens at node #{m.node.id}, pages {m.pages}", note)

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
        note, freed = _changes(work.cache, lambda: work.cache.evict(operator.index(num_tokens)))
        return _join(f"asked to evict {_tokens(num_tokens)}, freed {freed}", note)

    def _reset(self, work: _Work, config: LabConfig | None) -> str:
        work.config = config or work.config
        work.cache = work.config.new_cache()
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
    return f"{config.num_pages} pages of {config.page_size} token(s), eviction {config.eviction}"


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
    notes = [f"split #{c.id}: its first {_tokens(len(n.key))} became new node #{n.id}"
             for n in new if not n.is_leaf for c in n.children.values() if c.id in before]
    notes += [f"evicted {', '.join(f'#{i}' for i in gone)}"] if gone else []
    notes += [f"new leaf #{n.id}" for n in new if n.is_leaf]
    return "; ".join(notes), result


def _tokens(count: int) -> str:
    return f"{count} token" if count == 1 else f"{count} tokens"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


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

    def forget_after(self, num_words: int) -> None:
        """Drop every word learned after the first ``num_words`` (undoes a failed step's ``encode``)."""
        for word in self.words[num_words:]:
            del self.ids[word]
        del self.words[num_words:]
