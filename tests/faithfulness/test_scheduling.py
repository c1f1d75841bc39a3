"""SGLang 0.5.12's own scheduler code and ours decide alike, step by step.

What runs from SGLang's wheel (``radixlib/reference/sglang.py``, ``scheduler_side.py``):
``SchedulePolicy.calc_priority`` (with ``match_prefix_for_req``, ``_compute_prefix_matches``
and its simulated waiting-queue tree, the lpm and dfs-weight sorts), ``PrefillAdder``
(``add_one_req``, ``add_chunked_req``, ``budget_state``), ``Req`` (``init_next_round_input``,
``reset_for_retract``, ``check_finished``), ``ScheduleBatch`` (``prepare_for_extend``,
``prepare_for_decode``, ``filter_batch``, ``merge_batch``, ``check_decode_mem``,
``retract_decode``, ``release_req``), ``mem_cache/common.py`` (``alloc_for_extend``,
``alloc_for_decode``, ``evict_from_tree_cache``, ``release_kv_cache``), ``RadixCache``,
``ChunkCache``, the token allocators, and these ``Scheduler`` methods compiled from the
wheel's files: ``get_next_batch_to_run``, ``get_new_batch_prefill``,
``update_running_batch``, ``get_num_allocatable_reqs``, ``stash_chunked_request``,
``init_req_max_new_tokens``, ``process_batch_result_prefill`` / ``_decode``, ``on_idle``.
Stand-ins only for imports that fail (listed, with why, in ``sglang.py``): server
arguments, GPU pools, forward-batch types, sampling tensors, two triton kernels.

What cannot run, even with stand-ins: the body of ``Scheduler.event_loop_normal`` (three
lines: next batch, run it, process its result), ``handle_generate_request`` and
``_add_request_to_queue`` (the request-intake path through the tokenizer's IPC), and
``ReqToTokenPool`` (its module imports the attention kernels). ``scheduler_side.py``
re-states those; ``test_the_loop_is_sglangs_event_loop`` and
``test_requests_join_the_queue_at_its_end`` pin our side of them.

A *decision* is one position in the ordered waiting queue on a step that orders it, one
request in a step's batch (that it runs, and the token range it computes), one
retraction, or one request given up. Every step also compares the new-token ratio, the
finished requests and the pool (free, evictable, locked tokens); every 100 steps, the
whole radix trees.
"""
from __future__ import annotations

import functools
import random

import pytest
import torch
from helpers import make_cache

from radixlib.cost_model import CostModel
from radixlib.engine import Engine
from radixlib.reference.scheduler_side import SGLangScheduler
from radixlib.reference.scheduling import (
    CASES,
    TRAFFIC,
    Arrival,
    Config,
    Replay,
    Step,
    Traffic,
    census,
)
from radixlib.reference.sglang import load_sglang
from radixlib.request import Request, SamplingParams
from radixlib.router import Router
from radixlib.scheduler import SCHEDULES, Scheduler

MIN_DECISIONS = 20_000
PAGE_SIZES = (1, 16)
CONFIG = dict(num_tokens=4096, max_prefill_tokens=1024, chunk_size=128, max_running=48, conservativeness=0.1)


def decisions(steps: list[Step]) -> int:
    return sum(step.decisions for step in steps)


@functools.cache
def history(workload: str, page_size: int, schedule: str) -> tuple[Step, ...]:
    config = Config(page_size=page_size, schedule=schedule, **CONFIG)
    return tuple(Replay(config, workload).run(MIN_DECISIONS))


# ---- end to end ---------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("page_size", PAGE_SIZES)
@pytest.mark.parametrize("workload", sorted(TRAFFIC))
def test_the_schedulers_decide_alike(workload: str, page_size: int, schedule: str):
    assert decisions(list(history(workload, page_size, schedule))) >= MIN_DECISIONS


EXERCISED = {   # per workload, at both page sizes (lpm); counts from census
    "few-shot": {case: 1 for case in CASES if case not in ("stop: max running",)},
    "multi-turn": {case: 1 for case in CASES if case != "stop: max running"},
    "tree-of-thought": {case: 1 for case in CASES if case != "stop: max running"},
}
MAX_RUNNING_BINDS = ("multi-turn", 1)           # the allocatable-request limit stops a round


@pytest.mark.parametrize("page_size", PAGE_SIZES)
@pytest.mark.parametrize("workload", sorted(TRAFFIC))
def test_the_replays_exercise_every_case(workload: str, page_size: int):
    config = Config(page_size=page_size, schedule="lpm", **CONFIG)
    seen = census(config, workload, list(history(workload, page_size, "lpm")))
    assert {case: n for case, n in seen.items() if n < EXERCISED[workload].get(case, 0)} == {}
    if (workload, page_size) == MAX_RUNNING_BINDS:
        assert seen["stop: max running"] > 0


@pytest.mark.parametrize("schedule", ["lpm", "dfs-weight"])
def test_with_the_cache_off_they_decide_alike(schedule: str):
    """``--disable-radix-cache``: SGLang's ``ChunkCache`` and fcfs; our ``enable_cache=False``."""
    config = Config(page_size=16, schedule=schedule, enable_cache=False, **CONFIG)
    assert decisions(Replay(config, "few-shot").run(MIN_DECISIONS // 4)) >= MIN_DECISIONS // 4


# ---- SchedulePolicy.calc_priority ---------------------------------------------------------

class Fixed(Traffic):
    """The same requests at step 1, nothing after."""
    prompts: list[tuple[int, ...]] = []

    def arrivals(self, step, finished):
        return [Arrival(rid, p, 2) for rid, p in enumerate(self.prompts, 1)] if step == 1 else []


def warmed(page_size: int, schedule: str, prompts: list[tuple[int, ...]]) -> Replay:
    """Both sides after serving ``prompts`` to the end: equal trees, nothing running."""
    traffic = type("Warmup", (Fixed,), {"prompts": prompts})
    replay = Replay(Config(num_tokens=8192, page_size=page_size, schedule=schedule, max_prefill_tokens=16384,
                           chunk_size=None, max_running=64), traffic)
    replay.settle()
    return replay


def queue_both(replay: Replay, rid: int, tokens: tuple[int, ...], output: tuple[int, ...] = ()) -> None:
    """The same waiting request on both sides; a non-empty ``output`` is one it had produced before."""
    replay.ours.add(Arrival(rid, tokens, 8))
    replay.theirs.add(Arrival(rid, tokens, 8))
    replay.ours.requests[rid].output = list(output)
    replay.theirs.requests[rid].output_ids = list(output)


def edge_queue(rng: random.Random, cached: tuple[int, ...], length: int) -> list[tuple[tuple[int, ...], tuple]]:
    """Waiting requests at the thresholds: cache hits of 31 to 49 tokens, groups that share
    31, 32 or 33 uncached tokens, exact repeats, requests that carry earlier output."""
    def fresh(n):
        return tuple(rng.randrange(10_000, 20_000) for _ in range(n))
    groups = [fresh(shared) for shared in (31, 32, 33, 60)]
    queue = []
    while len(queue) < length:
        shape = rng.randrange(5)
        if shape == 0:
            queue.append((cached[: rng.randint(31, 49)] + fresh(3), ()))
        elif shape == 1:
            queue.append((rng.choice(groups) + fresh(rng.randint(1, 5)), ()))
        elif shape == 2 and queue:
            queue.append(rng.choice(queue))
        elif shape == 3:
            queue.append((cached[: rng.randint(2, 20)], cached[20: 20 + rng.randint(1, 30)]))
        else:
            queue.append((fresh(rng.randint(2, 40)), ()))
    return queue


@pytest.mark.parametrize("length", [64, 128, 129])
@pytest.mark.parametrize("page_size", PAGE_SIZES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_calc_priority_orders_the_queue_alike(schedule: str, page_size: int, length: int):
    rng = random.Random(f"{schedule}/{page_size}/{length}")
    cached = tuple(rng.randrange(20_000, 30_000) for _ in range(96))
    replay = warmed(page_size, schedule, [cached, cached[:40] + (7, 7, 7)])
    for rid, (tokens, output) in enumerate(edge_queue(rng, cached, length), 100):
        queue_both(replay, rid, tokens, output)
    for _ in range(2):                           # twice: the second round starts from the first's order
        replay.ours.scheduler._order_waiting()
        sg = replay.theirs.sg
        sg.policy.calc_priority(sg.waiting_queue, sg.running_batch)
        assert [r.rid for r in replay.ours.scheduler.waiting] == [r.rid for r in sg.waiting_queue]
    replay.check_trees("after ordering")         # the lookups split nodes alike


# ---- PrefillAdder -------------------------------------------------------------------------

@pytest.mark.parametrize("chunk_size", [None, 64, 256])
@pytest.mark.parametrize("max_prefill_tokens", [64, 16384])
@pytest.mark.parametrize("new_token_ratio", [0.05, 0.7, 1.0])
def test_prefill_adder_admits_alike(new_token_ratio, max_prefill_tokens, chunk_size):
    """From a running state, new budgets: who is admitted, with what extend length, which
    request is chunked and where, and when the round stops — every step after."""
    config = Config(num_tokens=4096, page_size=16, schedule="lpm", max_prefill_tokens=16384,
                    chunk_size=None, max_running=48)
    replay = Replay(config, "few-shot")
    replay.run(2_000)
    ours, sg = replay.ours.scheduler, replay.theirs.sg
    ours.new_token_ratio = sg.new_token_ratio = new_token_ratio
    ours.max_prefill_tokens = sg.max_prefill_tokens = max_prefill_tokens
    ours.chunk_size = sg.chunked_prefill_size = chunk_size
    prefills = 0
    while prefills < 25:                                         # every step compared on the way
        prefills += sum(step.kind == "prefill" for step in replay.run(500))


# ---- Req.init_next_round_input ------------------------------------------------------------

@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_init_next_round_input_gives_the_same_prefix(page_size: int):
    """The admission match: prompt + output, at most len - 1 tokens, whole pages, the
    tree's pages for them (each side's pages hold exactly those tokens)."""
    rng = random.Random(page_size)
    cached = tuple(rng.randrange(20_000, 30_000) for _ in range(100))
    replay = warmed(page_size, "fcfs", [cached, cached[:50] + (5,) * 30])
    sglang = replay.theirs.sg.sg
    for rid in range(400):
        cut = rng.choice([1, 2, max(page_size - 1, 1), page_size, page_size + 1, 33, 48, 49, 64, 80, 97, 100])
        tokens = cached[:cut] + tuple(rng.randrange(10) for _ in range(rng.choice([0, 0, 1, 5])))
        split = rng.randint(1, len(tokens))
        ours_req = Request(rid, list(tokens[:split]), output=list(tokens[split:]))
        theirs_req = sglang.batch.Req(rid, "", list(tokens[:split]), sglang.sampling.SamplingParams(max_new_tokens=4))
        theirs_req.output_ids = list(tokens[split:])
        found = replay.ours.engine.router.lookup(ours_req)
        theirs_req.init_next_round_input(replay.theirs.sg.tree_cache)
        assert found.prefix_len == len(theirs_req.prefix_indices) == len(tokens) - theirs_req.extend_input_len
        assert page_tokens(replay.ours, found.pages, page_size) == tokens[: found.prefix_len]
        assert slot_tokens(replay.theirs, theirs_req.prefix_indices.tolist()) == tokens[: found.prefix_len]
    replay.check_trees("after the lookups")


def page_tokens(ours, pages: list[int], page_size: int) -> tuple[int, ...]:
    held = {p: node.key[i * page_size:(i + 1) * page_size]
            for node in ours.engine.cache.nodes() for i, p in enumerate(node.pages)}
    return tuple(t for p in pages for t in held[p])


def slot_tokens(theirs, slots: list[int]) -> tuple[int, ...]:
    held, stack = {}, [theirs.sg.tree_cache.root_node]
    while stack:
        node = stack.pop()
        held.update(zip(node.value.tolist() if len(node.value) else [], node.key.token_ids))
        stack.extend(node.children.values())
    return tuple(held[s] for s in slots)


# ---- ScheduleBatch.retract_decode ---------------------------------------------------------

class Lockstep(Traffic):
    """Waves of requests admitted together that decode in lockstep: equal output lengths,
    prompts of two lengths, so retraction meets ties. A wave drains before the next (150
    steps later), so the ratio starts low again (``on_idle``)."""

    def arrivals(self, step, finished):
        if step % 150 != 1:
            return []
        system = self.text(16, 16)
        return [Arrival(self._rid(), system + self.text(n, n), 60) for n in (24, 56) * 8]

    def _rid(self) -> int:
        self.next_rid += 1
        return self.next_rid


@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_retract_decode_retracts_alike(page_size: int):
    """Which requests go and in what order (ties included), that they keep their output and
    prefill prompt + output again, and the new ratio (every step's ``ratio``)."""
    config = Config(num_tokens=1024, page_size=page_size, schedule="fcfs", max_prefill_tokens=16384,
                    chunk_size=None, max_running=64, conservativeness=0.05)
    replay = Replay(config, Lockstep)
    steps = replay.run(MIN_DECISIONS // 2)
    retracted = [rid for step in steps for rid in step.retracted]
    assert len(retracted) >= 10
    for rid in set(retracted):
        ours, theirs = replay.ours.requests[rid], replay.theirs.requests[rid]
        assert ours.retractions == theirs.retraction_count > 0
        refills = [end for step in steps if step.kind == "prefill" for r, start, end in step.items if r == rid]
        assert refills[1:] and all(end > len(ours.prompt) for end in refills[1:])   # prompt + kept output


# ---- pinned: what cannot run from the wheel -------------------------------------------------

def test_the_loop_is_sglangs_event_loop():
    """``Scheduler.event_loop_normal``: one batch per iteration, its result processed (tokens
    appended, finished requests cached and freed) before the next batch is chosen."""
    engine = Engine(executor=CostModel(), num_pages=64, page_size=1, max_running=1)
    for rid in range(2):
        engine.scheduler.add(Request(rid, [rid + 1] * 4, SamplingParams(max_new_tokens=1)))
    first = engine.step()
    assert [i.req.rid for i in first.items] == [0] and engine.scheduler.running == []
    assert engine.cache.total_size == 4                          # cached before the next batch
    assert [i.req.rid for i in engine.step().items] == [1]


def test_requests_join_the_queue_at_its_end():
    """``_add_request_to_queue``: new and retracted requests are appended."""
    s = Scheduler(Router(make_cache(num_pages=64)), "lof")
    for rid, n in enumerate([2, 9, 5]):
        s.add(Request(rid, [rid + 1] * 3, SamplingParams(max_new_tokens=n)))
    s._order_waiting()
    s.add(Request(3, [9, 9], SamplingParams(max_new_tokens=50)))
    assert [r.rid for r in s.waiting] == [1, 2, 0, 3]


def test_a_request_sglang_would_clip_is_refused_here():
    """DEVIATIONS.md: SGLang's ``init_req_max_new_tokens`` clips ``max_new_tokens`` so the
    request fits an empty pool; we refuse it with an error instead."""
    sg = SGLangScheduler(64, 1)
    with pytest.raises(ValueError, match="clips max_new_tokens to 46"):
        sg.add(0, [1] * 16, 47)                                  # 16 + 47 + 1 >= 64
    sg.add(1, [1] * 16, 46)
    ours = Scheduler(Router(make_cache(num_pages=64)))
    with pytest.raises(ValueError, match="can never be admitted"):
        ours.add(Request(0, [1] * 16, SamplingParams(max_new_tokens=47)))
    ours.add(Request(1, [1] * 16, SamplingParams(max_new_tokens=46)))


def test_a_chunk_insert_counts_a_hit_here():
    """DEVIATIONS.md #9: SGLang's ``RadixCache._insert_helper`` skips the hit count for a
    chunk's insert (``chunked=True``); ours counts it."""
    sg = load_sglang()
    theirs = sg.RadixCache.create_simulated()
    for chunked in (False, True):
        theirs.insert(sg.InsertParams(key=sg.RadixKey([1, 2, 3]), value=torch.arange(3), chunked=chunked))
    node = theirs.match_prefix(sg.MatchPrefixParams(key=sg.RadixKey([1, 2, 3]))).last_device_node
    ours = make_cache(num_pages=16)
    for _ in range(2):
        ours.insert([1, 2, 3], ours.allocator.alloc(3))
    assert (node.hit_count, ours.match_prefix([1, 2, 3]).node.hits) == (1, 2)


def test_replays_evict_only_the_shortfall():
    """DEVIATIONS.md #10: ``evict_from_tree_cache`` evicts the whole amount asked for; a
    replay's ``Router.serve`` evicts only what the request is short of."""
    sg = SGLangScheduler(8, 1)
    for tokens in ([1, 2], [3, 4], [5, 6]):
        slots = sg.token_to_kv_pool_allocator.alloc(2)
        sg.tree_cache.insert(load_sglang().InsertParams(key=load_sglang().RadixKey(tokens), value=slots))
    sg.sg.common.evict_from_tree_cache(sg.tree_cache, 4)           # 2 free of the 4 asked for
    assert sg.tree_cache.total_size() == 2                         # it evicted 4, not 2
    router = Router(make_cache(num_pages=8))
    for tokens in ([1, 2], [3, 4], [5, 6]):
        router.serve(tokens)
    router.serve([9, 9, 9, 9])                                     # 2 free of the 4 it needs
    assert router.evicted_tokens == 2
