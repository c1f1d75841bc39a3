"""The three shortfalls measured: radixlib's ``Engine`` beside the v2-shaped ``BaselineEngine``.

Both engines get the same model weights, workloads and scheduler settings, so they make the
same decisions and the same greedy tokens; a ``Meter`` around each executor records what
really happens (chapter 08, ``benchmarks/shortfalls.py``)::

    shortfall 1   tokens the model computes, per phase     a hook on the input embeddings
                  prefill seconds                          around each prefill forward
    shortfall 2   KV bytes held after each forward         the pool's pages in use / the DynamicCaches
                  seconds per decode step                  around each decode forward
    shortfall 3   pages leaked or owned twice              ``audit``: every page by its owners
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

from transformers import PreTrainedModel

from .baseline import BaselineEngine, LoosePageManager
from .cost_model import CostModel
from .engine import Engine
from .forward import ForwardRequest
from .request import SamplingParams
from .workloads import chat_turn_prompts, few_shot, multi_turn_chat, shared_prefix

Turns = list[Callable[[list[list[list[int]]]], list[list[int]]]]   # earlier turns' outputs -> prompts
# Both engines: a prefill budget of 1,024 tokens lets the first few-shot request compute the shared
# examples alone, and the others hit them one round later (SGLang's in-batch prefix caching).
SETTINGS = dict(num_pages=1024, page_size=16, schedule="lpm", max_prefill_tokens=1024)


# --- shortfall 3: who owns each page ----------------------------------------------------------

class Audit(NamedTuple):
    """Pages that break the partition "every page is free, one node's or one request's"."""
    leaked: list[int]          # no owner at all: not free, in no node, held by no request
    owned_twice: list[int]     # two owners or more (a page twice in the free list counts twice)


def audit_pages(num_pages: int, free: Sequence[int], tree: Sequence[int], held: Sequence[int]) -> Audit:
    """Count every page's owners: each entry of the free list, of a tree node, of a request."""
    owners = Counter([*free, *tree, *held])
    return Audit([p for p in range(num_pages) if owners[p] == 0], sorted(p for p, n in owners.items() if n > 1))


def audit(engine: Engine) -> Audit:
    """``audit_pages`` over an engine's allocator, tree and live requests."""
    allocator = engine.allocator
    if isinstance(allocator, LoosePageManager):
        free = allocator.free_list()
    else:
        free = sorted(set(range(allocator.num_pages)) - allocator.allocated())
    tree = [p for node in engine.cache.nodes() for p in node.pages]
    held = engine.router.held_pages(engine.scheduler.live_requests())
    return audit_pages(allocator.num_pages, free, tree, held)


# --- shortfalls 1 and 2: what the executor really does ----------------------------------------

class Meter:
    """Replaces ``engine``'s executor with itself (an ``Executor`` too) and records what the
    wrapped one does: tokens the model computes per phase (chapter 05's hook on the input
    embeddings), CPU seconds per forward (``time.process_time``: the work done, which other
    processes on the machine hardly move; ``benchmarks/timing.py``), and after each forward
    ``kv_bytes()`` and the pages the allocator has handed out."""

    def __init__(self, engine: Engine, kv_bytes: Callable[[], int]):
        self.engine, self.executor, self.kv_bytes = engine, engine.executor, kv_bytes
        self.vocab_size, self.max_context = self.executor.vocab_size, self.executor.max_context
        self.computed = {"prefill": 0, "decode": 0}
        self.seconds: dict[str, list[float]] = {"prefill": [], "decode": []}
        self.kv_trace: list[int] = []
        self.pages_trace: list[int] = []
        self._phase = "prefill"
        self.hook = self.executor.model.get_input_embeddings().register_forward_hook(self._count)
        engine.executor = self

    def clock(self) -> float:
        return self.executor.clock()

    def prefill(self, batch: Sequence[ForwardRequest]) -> list[int]:
        return self._timed("prefill", batch)

    def decode(self, batch: Sequence[ForwardRequest]) -> list[int]:
        return self._timed("decode", batch)

    def _timed(self, phase: str, batch: Sequence[ForwardRequest]) -> list[int]:
        self._phase = phase
        start = time.process_time()
        tokens = getattr(self.executor, phase)(batch)
        self.seconds[phase].append(time.process_time() - start)
        allocator = self.engine.allocator
        self.kv_trace.append(self.kv_bytes())
        self.pages_trace.append(allocator.num_pages - allocator.available)
        return tokens

    def _count(self, module, args, output) -> None:
        self.computed[self._phase] += args[0].numel()


class Side(NamedTuple):
    """One engine's run of a workload."""
    name: str
    outputs: list[list[int]]       # every request's tokens, turn after turn
    cached: list[int]              # prompt tokens the router served from the cache, per request
    prompt_tokens: int
    computed: dict[str, int]       # tokens the model computed: "prefill", "decode"
    prefill_seconds: float         # all prefill forwards (CPU time)
    decode_step_seconds: float     # median decode forward (CPU time)
    kv_trace: list[int]            # KV bytes held after each forward
    pages_trace: list[int]         # pages handed out after each forward
    audit: Audit                   # after the run

    @property
    def claimed(self) -> int:
        """Prompt tokens the control plane says were computed (the uncached suffixes)."""
        return self.prompt_tokens - sum(self.cached)

    @property
    def peak_kv_bytes(self) -> int:
        return max(self.kv_trace)


def run(name: str, engine: Engine, kv_bytes: Callable[[], int], turns: Turns, new_tokens: int) -> Side:
    """Serve every turn of a workload through ``engine`` with a ``Meter`` around its executor."""
    meter = Meter(engine, kv_bytes)
    outputs: list[list[list[int]]] = []
    results = []
    try:
        for make_prompts in turns:
            prompts = make_prompts(outputs)
            results += engine.generate(prompts, SamplingParams(max_new_tokens=new_tokens))
            outputs.append([r.tokens for r in results[-len(prompts):]])
    finally:
        meter.hook.remove()                       # the model may serve another engine next
    return Side(name, [o for turn in outputs for o in turn], [r.cached_tokens for r in results],
                engine.stats.prompt_tokens, dict(meter.computed), sum(meter.seconds["prefill"]),
                statistics.median(meter.seconds["decode"]), meter.kv_trace, meter.pages_trace, audit(engine))


def side_by_side(models: tuple[PreTrainedModel, PreTrainedModel], turns: Turns, new_tokens: int = 16,
                 **settings) -> tuple[Side, Side]:
    """The workload through radixlib's ``Engine`` (on ``models[0]``) and the ``BaselineEngine``
    (on ``models[1]``, the same weights), each built fresh, with ``SETTINGS`` updated by ``settings``."""
    settings = {**SETTINGS, **settings}
    radix = Engine(models[0], **settings)
    page_bytes = settings["page_size"] * radix.executor.pool.bytes_per_token
    ours = run("radixlib", radix, partial(_pages_in_use_bytes, radix, page_bytes), turns, new_tokens)
    baseline = BaselineEngine(models[1], **settings)
    caches = baseline.executor                           # the Meter will stand in front of it
    return ours, run("baseline", baseline, lambda: caches.kv_bytes, turns, new_tokens)


def _pages_in_use_bytes(engine: Engine, page_bytes: int) -> int:
    return (engine.allocator.num_pages - engine.allocator.available) * page_bytes


def workloads(vocab_size: int) -> dict[str, Turns]:
    """Few-shot (32 requests: 768 shared tokens + a 32-token question), a shared system prompt
    (16 requests: 384 + 64), and a multi-turn chat (4 conversations x 3 turns, 256-token system
    prompt, 32-token messages; each turn's prompt is the whole history)."""
    chats = multi_turn_chat(num_conversations=4, turns=3, system_len=256, user_len=32, vocab_size=vocab_size)
    shots = few_shot(num_requests=32, num_examples=8, example_len=96, question_len=32, vocab_size=vocab_size)
    system = shared_prefix(num_requests=16, prefix_len=384, suffix_len=64, vocab_size=vocab_size, seed=1)
    return {"few-shot": [lambda outputs: shots], "system prompt": [lambda outputs: system],
            "multi-turn": [partial(chat_turn, chats, t) for t in range(3)]}


def chat_turn(chats, turn: int, outputs: list[list[list[int]]]) -> list[list[int]]:
    """Turn ``turn``'s prompts of ``chats``: each conversation's history with the outputs of its earlier turns."""
    return chat_turn_prompts(chats, turn, [[outputs[t][c] for t in range(turn)] for c in range(len(chats))])


# --- shortfall 3 over a long run: the leak accumulates ----------------------------------------

class LeakRun(NamedTuple):
    """One engine serving a stream of requests one at a time, model-free."""
    name: str
    leaked: list[int]              # pages leaked after each request served
    usable: list[int]              # pages a new request could still get (free + evictable) after each
    error: str | None              # why it stopped serving, if it did


def leak_study(prompts: Sequence[Sequence[int]], num_pages: int, page_size: int = 16,
               new_tokens: int = 8) -> dict[str, LeakRun]:
    """Serve ``prompts`` one by one through both engines on a ``CostModel``; audit after each.
    radixlib's engine also runs ``check_invariants`` after each (it raises on any drift)."""
    runs = {}
    for name, kind in (("radixlib", Engine), ("baseline", BaselineEngine)):
        engine = kind(executor=CostModel(), num_pages=num_pages, page_size=page_size, schedule="lpm")
        leaked, usable, error = [], [], None
        for prompt in prompts:
            try:
                engine.generate([prompt], SamplingParams(max_new_tokens=new_tokens))
            except RuntimeError as e:
                error = str(e)
                break
            if kind is Engine:
                engine.check_invariants()
            leaked.append(len(audit(engine).leaked))
            usable.append(engine.router.free_tokens // page_size)
        runs[name] = LeakRun(name, leaked, usable, error)
    return runs
