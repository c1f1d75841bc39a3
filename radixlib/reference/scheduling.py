"""The same traffic through SGLang's scheduler and ours, step by step.

Each side is a whole scheduling loop over a model-free forward: ours is an ``Engine``
over a ``CostModel``, SGLang's is ``scheduler_side.SGLangScheduler``. Both are fed the
same arrivals before every step; each step reports a ``Step``::

    kind       prefill, decode, or None (nothing ran)
    queue      the waiting queue in schedule order, on steps that ordered it
    items      each request in the batch: (rid, start, end), its tokens [start, end) computed now
    retracted  requests retracted this step, in order; aborted: requests given up
    finished   requests that finished this step
    ratio      new_token_ratio after the step
    pool       free slots, evictable and locked cached tokens after the step

and the two must be equal at every step (``replay``). Traffic (``TRAFFIC``) is seeded
and reacts to what finishes: a chat's next turn arrives after its last answer, a
thought's children after the thought.

The "model" picks token ``next_token(rid, position)``; some requests stop early on
those tokens.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from radixlib.cost_model import CostModel
from radixlib.engine import Engine
from radixlib.request import Request, SamplingParams, Status
from radixlib.scheduler import INIT_NEW_TOKEN_RATIO, Added

from .ops import RawNode, depth_first, tree_view
from .scheduler_side import SGLangScheduler

VOCAB = 32_000
STOP_TOKENS = (1, 2, 3)          # some requests end on these (next_token draws them ~3% of the time)


class Difference(AssertionError):
    """The two schedulers decided differently; the message names the step and both answers."""


class Arrival(NamedTuple):
    rid: int
    prompt: tuple[int, ...]
    max_new_tokens: int
    stop: tuple[int, ...] = ()


class Step(NamedTuple):
    kind: str | None
    queue: tuple[int, ...] | None
    items: tuple[tuple[int, int, int], ...]
    retracted: tuple[int, ...]
    aborted: tuple[int, ...]
    finished: tuple[int, ...]
    ratio: float
    pool: tuple[int, int, int]

    @property
    def decisions(self) -> int:
        """Scheduling decisions this step compares: each queue position, each batch
        entry (who runs, from where to where), each retraction and each abort."""
        return len(self.queue or ()) + len(self.items) + len(self.retracted) + len(self.aborted)


def next_token(rid: int, position: int) -> int:
    """The model-free model's next token: fixed per (request, position)."""
    return (rid * 1_000_003 + position * 7_919) % 97 + 1


@dataclass(frozen=True)
class Config:
    """Server arguments shared by both sides (SGLang's names in ``SGLangScheduler``)."""
    num_tokens: int
    page_size: int
    schedule: str
    max_prefill_tokens: int
    chunk_size: int | None
    max_running: int
    conservativeness: float = 1.0     # scales the initial new_token_ratio (SGLANG_INIT_NEW_TOKEN_RATIO = 0.7)
    enable_cache: bool = True
    seed: int = 0

    @property
    def new_token_ratio(self) -> float:
        """The initial ratio as SGLang's ``Scheduler.__init__`` computes it."""
        return min(INIT_NEW_TOKEN_RATIO * self.conservativeness, 1.0)


# ---------------------------------------------------------------------- sides
class ScriptedCostModel(CostModel):
    """A ``CostModel`` whose next tokens are ``next_token(rid, position)``."""

    def prefill(self, batch):
        super().prefill(batch)
        return [next_token(r.rid, r.start + len(r.tokens)) for r in batch]

    decode = prefill


class Ours:
    """radixlib's ``Engine`` over a ``ScriptedCostModel``, instrumented to report ``Step``s."""

    def __init__(self, config: Config):
        self.engine = Engine(executor=ScriptedCostModel(), num_pages=config.num_tokens // config.page_size,
                             page_size=config.page_size, schedule=config.schedule,
                             max_prefill_tokens=config.max_prefill_tokens, chunk_size=config.chunk_size,
                             max_running=config.max_running, new_token_ratio=config.new_token_ratio,
                             enable_cache=config.enable_cache, seed=config.seed)
        self.scheduler = self.engine.scheduler
        self.requests: dict[int, Request] = {}
        self._events: dict[str, list[int]] = {"retracted": [], "aborted": []}
        self._queue: tuple[int, ...] | None = None
        self._instrument()

    def add(self, arrival: Arrival) -> None:
        req = Request(arrival.rid, list(arrival.prompt),
                      SamplingParams(max_new_tokens=arrival.max_new_tokens, stop=arrival.stop))
        self.requests[arrival.rid] = req
        self.scheduler.add(req)

    def step(self) -> Step:
        batch = self.engine.step()
        items = () if batch is None else tuple((i.req.rid, i.start, i.end) for i in batch.items)
        finished = sorted(rid for rid, _, _ in items if self.requests[rid].status is Status.FINISHED)
        step = Step(batch and batch.kind, self._queue, items, tuple(self._events["retracted"]),
                    tuple(self._events["aborted"]), tuple(finished), self.scheduler.new_token_ratio,
                    self._pool())
        self._queue = None
        for events in self._events.values():
            events.clear()
        return step

    def output(self, rid: int) -> tuple[int, ...]:
        return tuple(self.requests[rid].output)

    def _pool(self) -> tuple[int, int, int]:
        cache = self.engine.cache
        return self.engine.router.available_tokens, cache.evictable_size, cache.protected_size

    def _instrument(self) -> None:
        s = self.scheduler
        order, retract, abort = s._order_waiting, s._retract, s.abort

        def ordered():
            order()
            self._queue = tuple(r.rid for r in s.waiting)

        def retracted(req, remaining):
            self._events["retracted"].append(req.rid)
            retract(req, remaining)

        def aborted(req, error):
            self._events["aborted"].append(req.rid)
            abort(req, error)

        s._order_waiting, s._retract, s.abort = ordered, retracted, aborted


class Theirs:
    """SGLang's scheduler (``SGLangScheduler``), reporting ``Step``s."""

    def __init__(self, config: Config):
        self.sg = SGLangScheduler(config.num_tokens, config.page_size, config.schedule,
                                  max_prefill_tokens=config.max_prefill_tokens, chunk_size=config.chunk_size,
                                  max_running=config.max_running, conservativeness=config.conservativeness,
                                  disable_radix_cache=not config.enable_cache, seed=config.seed)
        self.requests: dict = {}
        self.aborted: list[int] = []
        self._queue: tuple[int, ...] | None = None
        self.sg.send_to_tokenizer = _Outbox(self.aborted)
        calc_priority = self.sg.policy.calc_priority

        def ordered(waiting_queue, running_batch=None):
            computed = calc_priority(waiting_queue, running_batch)
            self._queue = tuple(r.rid for r in waiting_queue)
            return computed

        self.sg.policy.calc_priority = ordered

    def add(self, arrival: Arrival) -> None:
        self.requests[arrival.rid] = self.sg.add(arrival.rid, arrival.prompt, arrival.max_new_tokens, arrival.stop)

    def step(self) -> Step:
        self._batch_items: tuple[tuple[int, int, int], ...] = ()
        batch = self.sg.step(next_token, on_batch=self._items)
        items = self._batch_items
        finished = tuple(sorted(rid for rid, _, _ in items
                                if self.requests[rid].finished() and rid not in self.aborted))
        step = Step(batch and ("decode" if batch.forward_mode.is_decode() else "prefill"), self._queue,
                    items, tuple(r.rid for r in self.sg.retracted), tuple(self.aborted), finished,
                    self.sg.new_token_ratio, self._pool())
        self._queue = None
        self.sg.retracted.clear()
        self.aborted.clear()
        return step

    def output(self, rid: int) -> tuple[int, ...]:
        return tuple(self.requests[rid].output_ids)

    def _items(self, batch) -> None:
        """The batch as ``get_next_batch_to_run`` returned it, before the forward."""
        if batch.forward_mode.is_decode():
            self._batch_items = tuple((r.rid, r.kv_committed_len - 1, r.kv_committed_len) for r in batch.reqs)
        else:
            self._batch_items = tuple((r.rid, len(r.prefix_indices), len(r.prefix_indices) + r.extend_input_len)
                                      for r in batch.reqs)

    def _pool(self) -> tuple[int, int, int]:
        cache = self.sg.tree_cache
        return self.sg.token_to_kv_pool_allocator.available_size(), cache.evictable_size(), cache.protected_size()


class _Outbox:
    """Stand-in for the scheduler's channel to the tokenizer: keeps who was aborted."""

    def __init__(self, aborted: list[int]):
        self.aborted = aborted

    def send_output(self, output, req) -> None:
        self.aborted.append(req.rid)


# -------------------------------------------------------------------- traffic
class Traffic:
    """Seeded arrivals: ``arrivals(step, finished)`` are the requests that arrive before
    ``step``, given the (rid, output) of the requests that finished at the last step."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.next_rid = 0

    def arrivals(self, step: int, finished: list[tuple[int, tuple[int, ...]]]) -> list[Arrival]:
        raise NotImplementedError

    def text(self, low: int, high: int) -> tuple[int, ...]:
        return tuple(self.rng.randrange(10, VOCAB) for _ in range(self.rng.randint(low, high)))

    def request(self, prompt: tuple[int, ...], low: int = 1, high: int = 400) -> Arrival:
        self.next_rid += 1
        stop = STOP_TOKENS if self.rng.random() < 0.3 else ()
        return Arrival(self.next_rid, prompt, self.rng.randint(low, high), stop)

    def burst(self, step: int) -> int:
        """How many new requests arrive before ``step``: mostly none or one, every 400 steps 150."""
        if step % 400 == 200:
            return 150                   # more than lpm sorts (128)
        return self.rng.choice((0, 0, 0, 0, 0, 1, 1, 2))


class FewShot(Traffic):
    """A few sets of worked examples; each request is one set's examples and its own question."""

    def __init__(self, rng: random.Random):
        super().__init__(rng)
        self.sets = [tuple(sum((self.text(20, 60) for _ in range(rng.randint(2, 6))), ())) for _ in range(40)]

    def arrivals(self, step, finished):
        examples = self.rng.choice(self.sets)                     # a burst mostly asks about one set
        return [self.request((examples if self.rng.random() < 0.7 else self.rng.choice(self.sets)) + self.text(4, 40))
                for _ in range(self.burst(step))]


class MultiTurn(Traffic):
    """Chats sharing a system prompt; a turn's prompt is the whole history so far, and the
    next turn arrives once the last answer is in."""

    def __init__(self, rng: random.Random):
        super().__init__(rng)
        self.system = self.text(40, 120)
        self.history: dict[int, tuple[tuple[int, ...], int]] = {}     # rid -> (prompt, turns left)

    def arrivals(self, step, finished):
        new = [self._turn(self.system + self.text(5, 40), self.rng.randint(1, 5)) for _ in range(self.burst(step))]
        for rid, output in finished:
            prompt, left = self.history.pop(rid, ((), 0))
            if left and len(prompt) < 1500:
                new.append(self._turn(prompt + output + self.text(5, 40), left - 1))
        return new

    def _turn(self, prompt: tuple[int, ...], left: int) -> Arrival:
        arrival = self.request(prompt)
        self.history[arrival.rid] = (prompt, left)
        return arrival


class TreeOfThought(Traffic):
    """Problems whose thoughts branch: when a thought finishes, its children arrive, each
    the parent's prompt and answer plus a step of its own."""

    def __init__(self, rng: random.Random):
        super().__init__(rng)
        self.depth: dict[int, tuple[tuple[int, ...], int]] = {}      # rid -> (prompt, depth)

    def arrivals(self, step, finished):
        new = [self._thought(self.text(60, 200), 0) for _ in range(self.burst(step))]
        for rid, output in finished:
            prompt, depth = self.depth.pop(rid, ((), 9))
            if depth < 3:
                new += [self._thought(prompt + output + self.text(8, 24), depth + 1)
                        for _ in range(self.rng.randint(1, 3))]
        return new

    def _thought(self, prompt: tuple[int, ...], depth: int) -> Arrival:
        arrival = self.request(prompt, 1, 120)
        self.depth[arrival.rid] = (prompt, depth)
        return arrival


TRAFFIC: dict[str, Callable[[random.Random], Traffic]] = {
    "few-shot": FewShot, "multi-turn": MultiTurn, "tree-of-thought": TreeOfThought}


# --------------------------------------------------------------------- replay
def steps(side: Ours | Theirs, traffic: str | Callable[[random.Random], Traffic],
          seed: int = 0) -> Iterator[Step]:
    """One side's steps over ``traffic`` (a name in ``TRAFFIC``, or a factory; endless)."""
    make = TRAFFIC[traffic] if isinstance(traffic, str) else traffic
    source = make(random.Random(f"{seed}/{traffic if isinstance(traffic, str) else make.__name__}"))
    finished: list[tuple[int, tuple[int, ...]]] = []
    for index in range(1, 1 << 62):
        for arrival in source.arrivals(index, finished):
            side.add(arrival)
        step = side.step()
        finished = [(rid, side.output(rid)) for rid in step.finished]
        yield step


TREE_CHECK_EVERY = 100       # steps; the trees are also compared after the last step


class Replay:
    """Both sides over the same traffic, compared step by step (``run``)."""

    def __init__(self, config: Config, traffic: str | Callable[[random.Random], Traffic], seed: int = 0):
        self.config, self.traffic = config, traffic
        self.ours, self.theirs = Ours(config), Theirs(config)
        self._steps = steps(self.ours, traffic, seed), steps(self.theirs, traffic, seed)
        self.history: list[Step] = []

    def run(self, min_decisions: int) -> list[Step]:
        """Step both sides until ``min_decisions`` more decisions; ``Difference`` at the first
        disagreement. Every ``TREE_CHECK_EVERY`` steps and at the end the two radix trees
        must be equal too: keys, lock counts, and the order of access and creation times
        (hit counts are left out: SGLang does not count a chunk's insert as a hit)."""
        start, decisions = len(self.history), 0
        while decisions < min_decisions:
            decisions += self._step().decisions
        self.check_trees(f"after step {len(self.history)}")
        return self.history[start:]

    def settle(self) -> list[Step]:
        """Step both sides until ours is idle (nothing waits or runs), comparing every step."""
        start = len(self.history)
        while not self.ours.scheduler.idle:
            self._step()
        self.check_trees(f"after step {len(self.history)}")
        return self.history[start:]

    def _step(self) -> Step:
        mine, reference = next(self._steps[0]), next(self._steps[1])
        if mine != reference:
            raise Difference(f"{self.traffic} {self.config}, step {len(self.history) + 1}:\n"
                             f"  radixlib: {mine}\n  SGLang:   {reference}")
        self.history.append(mine)
        if len(self.history) % TREE_CHECK_EVERY == 0:
            self.check_trees(f"after step {len(self.history)}")
        return mine

    def check_trees(self, when: str) -> None:
        if self.config.enable_cache:
            _compare_trees(self.ours, self.theirs, f"{self.traffic} {self.config}, {when}")


def replay(config: Config, traffic, min_decisions: int, seed: int = 0) -> list[Step]:
    """A fresh ``Replay`` run for ``min_decisions`` decisions: every step, equal on both sides."""
    return Replay(config, traffic, seed).run(min_decisions)


def _compare_trees(ours: Ours, theirs: Theirs, when: str) -> None:
    mine = tree_view(RawNode(depth, tuple(n.key), (), n.lock_ref, 0, n.priority, n.last_access, n.created)
                     for n, depth in depth_first(ours.engine.cache.root))
    reference = tree_view(RawNode(depth, tuple(n.key.token_ids), (), n.lock_ref, 0, n.priority,
                                  n.last_access_time, n.creation_time)
                          for n, depth in depth_first(theirs.sg.tree_cache.root_node))
    if mine != reference:
        first = next((i for i, (a, b) in enumerate(zip(mine, reference)) if a != b), min(len(mine), len(reference)))
        raise Difference(f"{when}: the trees differ at node {first} (depth first) of {len(mine)} / {len(reference)}")


# --------------------------------------------------------------------- census
CASES = ("retraction", "chunked prefill", "queue sorted (<= 128 waiting)", "queue over 128 waiting",
         "in-batch deprioritized", "stop: out of pool tokens", "stop: prefill or chunk budget",
         "stop: max running", "prefill skipped: batch full", "eviction", "early finish (stop token)",
         "idle: ratio reset")


def census(config: Config, traffic: str, history: list[Step], seed: int = 0) -> dict[str, int]:
    """How often the cases in ``CASES`` occur in ``len(history)`` steps of ``traffic``, read
    off our side as it replays them (``history``, from ``replay``, must match it)."""
    seen = dict.fromkeys(CASES, 0)
    side = _counting_side(config, seen)
    replayed = steps(side, traffic, seed)
    chunked_before: set[int] = set()
    for expected in history:
        step = next(replayed)
        assert step == expected, "census replay diverged from the compared history"
        rids = {rid for rid, _, _ in step.items}
        seen["retraction"] += len(step.retracted)
        seen["chunked prefill"] += len(rids & chunked_before) if step.kind == "prefill" else 0
        chunked_before = rids if step.kind == "prefill" else set()
        if step.queue is not None:
            seen["queue over 128 waiting" if len(step.queue) > 128 else "queue sorted (<= 128 waiting)"] += 1
        seen["idle: ratio reset"] += step.kind is None and not side.scheduler.waiting
        seen["early finish (stop token)"] += sum(len(side.output(rid)) < side.requests[rid].params.max_new_tokens
                                                 for rid in step.finished)
    seen["eviction"] = side.engine.router.evicted_tokens
    return seen


def _counting_side(config: Config, seen: dict[str, int]) -> Ours:
    """Our side, instrumented to count the admission loop's stops and skips."""
    side = Ours(config)
    s = side.scheduler
    add_one, deprioritized, prefill = s._add_one, s._in_batch_deprioritized, s.schedule_prefill

    def counted_add_one(req, budget, items):
        added = add_one(req, budget, items)
        seen["stop: out of pool tokens"] += added is Added.NO_TOKEN
        seen["stop: prefill or chunk budget"] += added is Added.OTHER
        return added

    def counted_deprioritized(queue):
        held = deprioritized(queue)
        seen["in-batch deprioritized"] += len(held)
        return held

    def counted_prefill():
        skipped = s.batch_is_full and s.waiting and s.chunked is None
        full_before = s.batch_is_full
        items = prefill()
        seen["prefill skipped: batch full"] += bool(skipped)
        seen["stop: max running"] += bool(not full_before and s.batch_is_full and items
                                          and len(items) >= s.max_running - len(s.running))
        return items

    s._add_one, s._in_batch_deprioritized, s.schedule_prefill = counted_add_one, counted_deprioritized, counted_prefill
    return side
