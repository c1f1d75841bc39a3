"""Scheduling orders, in-batch prefix caching, the admission budget, chunking, retraction,
the new-token ratio, Theorem 3.1 — each as SGLang 0.5.12 decides it (the function named
in each test; ``tests/faithfulness/test_scheduling.py`` runs SGLang's own code beside ours).

All model-free: the engine runs with ``CostModel`` in place of the model.
"""
import random

import pytest
from helpers import make_cache

from radixlib.cost_model import CostModel
from radixlib.engine import Engine
from radixlib.request import Request, SamplingParams, Status
from radixlib.router import Router
from radixlib.scheduler import RETRACT_DECODE_STEPS, Scheduler, dfs_optimal_hit_rate
from radixlib.workloads import tree_of_thought


def scheduler(schedule="fcfs", num_pages=256, page_size=1, **options) -> Scheduler:
    return Scheduler(Router(make_cache(num_pages=num_pages, page_size=page_size)), schedule, **options)


def order(s: Scheduler, prompts, params: dict | None = None) -> list[int]:
    """Queue ``prompts`` and sort the queue once (``SchedulePolicy.calc_priority``)."""
    for rid, p in enumerate(prompts):
        s.add(Request(rid, p, SamplingParams(**(params or {}).get(rid, {}))))
    s._order_waiting()
    return [r.rid for r in s.waiting]


def steps(engine: Engine) -> list[tuple]:
    """Run to idle; each step as (kind, [(rid, start, end)]), None for a step that ran nothing."""
    out = []
    while not engine.scheduler.idle:
        batch = engine.step()
        out.append(batch and (batch.kind, [(i.req.rid, i.start, i.end) for i in batch.items]))
        engine.check_invariants()
    return out


# ---- orders (schedule_policy.py: SchedulePolicy.calc_priority) ----------------------------

def test_fcfs_keeps_arrival_order_and_lof_puts_long_outputs_first():
    prompts = [[1, 2], [3, 4], [5, 6]]
    assert order(scheduler("fcfs"), prompts) == [0, 1, 2]
    lof = {0: {"max_new_tokens": 2}, 1: {"max_new_tokens": 9}, 2: {"max_new_tokens": 5}}
    assert order(scheduler("lof"), prompts, lof) == [1, 2, 0]


def test_random_is_seeded():
    prompts = [[i, i] for i in range(1, 9)]
    a, b = order(scheduler("random", seed=3), prompts), order(scheduler("random", seed=3), prompts)
    assert a == b and sorted(a) == list(range(8)) and a != list(range(8))


def test_lpm_puts_the_longest_cached_prefix_first():
    s = scheduler("lpm")
    s.router.serve(list(range(1, 41)))
    prompts = [[7, 7, 7], list(range(1, 11)) + [99], list(range(1, 31)) + [98]]
    assert order(s, prompts) == [2, 1, 0]


def test_lpm_orders_by_the_uncapped_match_of_prompt_and_output():
    """``match_prefix_for_req`` matches ``origin_input_ids + output_ids`` with no len-1 cap."""
    s = scheduler("lpm")
    s.router.serve(list(range(1, 21)))
    short = Request(0, list(range(1, 11)))                         # all 10 tokens cached
    resumed = Request(1, [1, 2, 3], output=list(range(4, 13)))     # prompt + output: 12 cached
    s.add(short)
    s.add(resumed)
    s._order_waiting()
    assert [r.rid for r in s.waiting] == [1, 0]


def test_dfs_weight_visits_heavier_subtrees_first():
    s = scheduler("dfs-weight")
    s.router.serve([1, 1, 1, 1, 2, 2, 2, 2])
    s.router.serve([1, 1, 1, 1, 3, 3, 3, 3])
    prompts = [[1, 1, 1, 1, 2, 2, 2, 2, 5], [1, 1, 1, 1, 3, 3, 3, 3, 6], [1, 1, 1, 1, 3, 3, 3, 3, 7], [9, 9]]
    got = order(s, prompts)
    assert got[:2] == [1, 2] and got[2] == 0 and got[3] == 3     # [3 3 3 3] holds two requests


@pytest.mark.parametrize("waiting, sorted_", [(128, True), (129, False)])
def test_lpm_stops_sorting_above_128_waiting(waiting, sorted_):
    """``_determine_active_policy``: lpm acts as fcfs with more than 128 waiting."""
    s = scheduler("lpm", num_pages=4096)
    s.router.serve([5] * 20)
    prompts = [[i + 10, 1] for i in range(waiting - 1)] + [[5] * 20 + [1]]
    assert (order(s, prompts)[0] == waiting - 1) is sorted_


def test_dfs_weight_sorts_any_queue():
    s = scheduler("dfs-weight", num_pages=4096)
    s.router.serve([5] * 20)
    prompts = [[i + 10, 1] for i in range(200)] + [[5] * 20 + [1]]
    assert order(s, prompts)[0] == 200


def test_the_queue_keeps_its_last_order_when_lpm_stops_sorting():
    """``calc_priority`` sorts the queue in place; above 128 it leaves it as it is."""
    s = scheduler("lpm", num_pages=4096)
    s.router.serve([5] * 20)
    first = order(s, [[i + 10, 1] for i in range(100)] + [[5] * 20 + [1]])
    assert first[0] == 100
    for rid in range(101, 140):
        s.add(Request(rid, [rid + 10, 2]))
    s._order_waiting()                                           # 140 waiting: no sorting
    assert [r.rid for r in s.waiting] == first + list(range(101, 140))


def test_cache_aware_orders_act_as_fcfs_with_the_cache_off():
    """``_validate_and_adjust_policy``: lpm and dfs-weight over a disabled cache are fcfs."""
    for schedule in ("lpm", "dfs-weight"):
        s = Scheduler(Router(make_cache(num_pages=256), enable_cache=False), schedule)
        shared = list(range(1, 41))
        assert order(s, [shared + [1], [9, 9], shared + [2]]) == [0, 1, 2]


# ---- in-batch prefix caching (schedule_policy.py: _compute_prefix_matches) ----------------

def test_in_batch_caching_sorts_sharers_last_within_the_same_round():
    """lpm puts a request that shares >= 32 uncached tokens with an earlier one last; it is
    still admitted this round if the budget allows (SGLang does not hold it back)."""
    shared = list(range(1, 41))
    s = scheduler("lpm")
    assert order(s, [shared + [100], shared + [101], [7] * 10, shared + [102]]) == [0, 2, 1, 3]
    engine = Engine(executor=CostModel(), num_pages=512, page_size=1, schedule="lpm")
    for rid in range(3):
        engine.scheduler.add(Request(rid, shared + [100 + rid]))
    assert [i.req.rid for i in engine.step().items] == [0, 1, 2]   # all in one round: no cache hit


def test_in_batch_caching_pays_off_when_the_budget_stops_the_round():
    shared = list(range(1, 41))
    engine = Engine(executor=CostModel(), num_pages=512, page_size=1, schedule="lpm", max_prefill_tokens=50)
    requests = [Request(rid, shared + [100 + rid], SamplingParams(max_new_tokens=1)) for rid in range(3)]
    for req in requests:
        engine.scheduler.add(req)
    steps(engine)
    assert [r.cached_tokens for r in requests] == [0, 40, 40]


@pytest.mark.parametrize("shared, cached, held", [(31, 0, False), (32, 0, True), (40, 32, True), (48, 33, False)])
def test_in_batch_thresholds_are_32(shared, cached, held):
    """Checked when the cache hit is <= 32 tokens; held when >= 32 tokens are shared."""
    s = scheduler("lpm")
    if cached:
        s.router.serve(list(range(1, cached + 1)) + [999])
    first = list(range(1, shared + 1)) + [200]
    second = list(range(1, shared + 1)) + [300]
    assert (order(s, [first, second, [7] * 3])[-1] == 1) is held


def test_dfs_weight_ignores_in_batch_caching():
    shared = list(range(1, 41))
    assert order(scheduler("dfs-weight"), [shared + [1], shared + [2], [7] * 3]) == [0, 1, 2]


# ---- admission (schedule_policy.py: PrefillAdder.add_one_req, budget_state) ---------------

def test_new_requests_reserve_their_whole_output_and_a_page():
    engine = Engine(executor=CostModel(), num_pages=40, page_size=1)
    for rid in range(3):
        engine.scheduler.add(Request(rid, [rid + 1] * 8, SamplingParams(max_new_tokens=8)))
    first = engine.scheduler.next_batch()
    assert len(first.items) == 2            # each costs 8 + 8 + 1 tokens of a 40-token pool
    engine.check_invariants()


def test_admission_needs_strictly_fewer_tokens_than_are_free():
    with pytest.raises(ValueError, match="can never be admitted"):                # 8 prompt + 8 new + 1 page = 17
        scheduler(num_pages=17).add(Request(0, [1] * 8, SamplingParams(max_new_tokens=8)))
    s = scheduler(num_pages=18)
    s.add(Request(0, [1] * 8, SamplingParams(max_new_tokens=8)))
    assert len(s.schedule_prefill()) == 1


def test_running_requests_reserve_a_ratio_of_their_remaining_output():
    engine = Engine(executor=CostModel(), num_pages=60, page_size=1, new_token_ratio=0.5)
    engine.scheduler.add(Request(0, [1] * 8, SamplingParams(max_new_tokens=20)))
    engine.step()                                               # 0 runs; 19 tokens to go
    engine.scheduler._merge_prefilled()                         # (what the next step begins with)
    budget = engine.scheduler._budget()
    assert budget.total_offset == 19 * 0.5


def test_a_full_batch_waits_for_a_request_to_leave():
    """NO_TOKEN marks the batch full: no prefill is tried until the running batch shrinks."""
    engine = Engine(executor=CostModel(), num_pages=30, page_size=1)
    for rid in range(3):
        engine.scheduler.add(Request(rid, [rid + 1] * 8, SamplingParams(max_new_tokens=4)))
    kinds = [k and k[0] for k in steps(engine)]
    # 0 and 1 fit (8 + 4 + 1 tokens each of 30); 2 waits until they finish and leave
    assert kinds == ["prefill", "decode", "decode", "decode", None, "prefill", "decode", "decode", "decode"]


def test_max_running_caps_the_batch():
    engine = Engine(executor=CostModel(), num_pages=512, page_size=1, max_running=2)
    for rid in range(3):
        engine.scheduler.add(Request(rid, [rid + 1] * 8, SamplingParams(max_new_tokens=2)))
    first = engine.step()
    assert [i.req.rid for i in first.items] == [0, 1] and engine.scheduler.batch_is_full


def test_max_prefill_tokens_stops_the_round_but_not_its_first_request():
    engine = Engine(executor=CostModel(), num_pages=512, page_size=1, max_prefill_tokens=16)
    for rid in range(2):
        engine.scheduler.add(Request(rid, [rid + 1] * 20, SamplingParams(max_new_tokens=2)))
    assert [i.req.rid for i in engine.step().items] == [0]


# ---- chunked prefill (add_one_req's chunk, add_chunked_req, stash_chunked_request) --------

def test_chunked_prefill_splits_a_long_prompt_and_keeps_its_lock():
    engine = Engine(executor=CostModel(), num_pages=256, page_size=4, chunk_size=16)
    engine.scheduler.add(Request(0, list(range(1, 41)), SamplingParams(max_new_tokens=2)))
    spans = [(k, i[0][1:]) for k, i in filter(None, steps(engine))]
    assert spans == [("prefill", (0, 16)), ("prefill", (16, 32)), ("prefill", (32, 40)), ("decode", (40, 41))]


def test_a_chunk_is_cached_when_the_next_round_begins():
    engine = Engine(executor=CostModel(), num_pages=256, page_size=4, chunk_size=16)
    engine.scheduler.add(Request(0, list(range(1, 41)), SamplingParams(max_new_tokens=2)))
    engine.step()
    assert engine.cache.total_size == 0
    engine.step()
    assert engine.cache.total_size == 16


def test_the_chunk_budget_is_shared_by_the_round():
    """The chunked request takes its chunk first; a new request gets the rest, cut at a page."""
    engine = Engine(executor=CostModel(), num_pages=512, page_size=4, chunk_size=16)
    engine.scheduler.add(Request(0, list(range(1, 23)), SamplingParams(max_new_tokens=2)))
    engine.step()                                               # [0, 16)
    engine.scheduler.add(Request(1, [99] * 30, SamplingParams(max_new_tokens=2)))
    second = engine.step()
    assert [(i.req.rid, i.start, i.end) for i in second.items] == [(0, 16, 22), (1, 0, 8)]


# ---- retraction and the new-token ratio (schedule_batch.py: retract_decode; scheduler.py) -

def test_retraction_keeps_the_output_and_prefills_prompt_plus_output_again():
    engine = Engine(executor=CostModel(), num_pages=20, page_size=1, new_token_ratio=0.1)
    prompts = [[rid + 1] * 6 for rid in range(3)]
    requests = [Request(rid, p, SamplingParams(max_new_tokens=6)) for rid, p in enumerate(prompts)]
    for req in requests:
        engine.scheduler.add(req)
    refills, outputs_at_retraction = [], {}
    while not engine.scheduler.idle:
        batch = engine.step()
        for req in engine.scheduler.waiting:
            if req.retractions and req.rid not in outputs_at_retraction:
                outputs_at_retraction[req.rid] = len(req.output)
        if batch and batch.kind == "prefill":
            refills += [(i.req.rid, i.end) for i in batch.items if i.req.rid in outputs_at_retraction]
    assert outputs_at_retraction and all(n > 0 for n in outputs_at_retraction.values())
    assert refills == [(rid, 6 + n) for rid, n in outputs_at_retraction.items()]
    assert all(len(r.output) == 6 for r in requests)
    engine.check_invariants()
    assert engine.allocator.available + engine.cache.total_size == 20


def running(s: Scheduler, prompts: list[list[int]], outputs: list[int]) -> list[Request]:
    """Requests decoding in ``s``: prompt computed, ``outputs[i]`` tokens generated."""
    reqs = []
    for rid, (prompt, n) in enumerate(zip(prompts, outputs)):
        req = Request(rid, prompt, SamplingParams(max_new_tokens=50), output=[0] * n, status=Status.RUNNING)
        s.router.match(req)
        s.router.reserve(req, len(req.tokens) - 1)
        req.kv_len = len(req.tokens) - 1
        reqs.append(req)
    s.running = list(reqs)
    return reqs


@pytest.mark.parametrize("prompts, outputs, victim, survivors", [
    ([5, 5, 5], [3, 1, 5], 1, [2, 0]),          # the fewest output tokens
    ([5, 9, 5], [3, 3, 3], 1, [0, 2]),          # then the longest prompt
    ([5, 5, 5], [3, 3, 3], 2, [0, 1]),          # then the later in the running batch
])
def test_retraction_takes_fewest_outputs_then_longest_prompt(prompts, outputs, victim, survivors):
    held = sum(p + n - 1 for p, n in zip(prompts, outputs))
    s = scheduler(num_pages=held)                                # full: the next token has no slot
    reqs = running(s, [[rid + 1] * p for rid, p in enumerate(prompts)], outputs)
    s.schedule_decode()
    assert s.waiting == [reqs[victim]] and s.running == [reqs[i] for i in survivors]
    assert len(reqs[victim].output) == outputs[victim] and reqs[victim].node is None   # output kept
    keep = [reqs[i] for i in survivors]
    decoded = sum(len(r.output) for r in keep) + RETRACT_DECODE_STEPS * len(keep)
    assert s.new_token_ratio == min(1.0, decoded / (50 * len(keep) + 1))


def test_the_last_request_fails_if_even_it_cannot_decode():
    s = scheduler(num_pages=10)
    (only,) = running(s, [[1] * 6], [4])                         # 9 slots held, 1 free
    s.router.allocator.alloc(1)                                  # someone else takes the last slot
    assert s.schedule_decode() == [] and only.status is Status.FAILED and "out of memory" in only.error


def test_new_token_ratio_decays_per_decode_step_and_resets_when_idle():
    engine = Engine(executor=CostModel(), num_pages=256, page_size=1)
    s = engine.scheduler
    assert (s.new_token_ratio, s.min_new_token_ratio) == (0.7, 0.7 * 0.14)
    engine.generate([[1, 2, 3]], SamplingParams(max_new_tokens=4))
    assert s.new_token_ratio == pytest.approx(0.7 - 3 * (0.7 - 0.098) / 600)    # three decode steps
    assert engine.step() is None and s.new_token_ratio == s.init_new_token_ratio  # nothing to run: reset


# ---- refusals ------------------------------------------------------------------------------

def test_a_request_that_can_never_be_admitted_is_refused_and_the_others_run():
    engine = Engine(executor=CostModel(), num_pages=16, page_size=1)
    results = engine.generate([[1] * 40, [2] * 4], SamplingParams(max_new_tokens=2))
    assert "can never be admitted" in results[0].error and results[0].tokens == []
    assert results[1].error is None and len(results[1].tokens) == 2


def test_unknown_policy_and_too_small_chunks_are_refused():
    with pytest.raises(ValueError, match="unknown schedule"):
        scheduler("sjf")
    with pytest.raises(ValueError, match="at least one page"):
        scheduler(page_size=16, chunk_size=8)
    with pytest.raises(ValueError, match="max_running"):
        scheduler(max_running=0)


# ---- SGLang's Theorem 3.1: with cache >= the longest request, a DFS order is optimal ----

@pytest.mark.parametrize("seed", range(4))
def test_lpm_reaches_the_dfs_optimal_hit_rate(seed):
    prompts = tree_of_thought(depth=3, branching=3, root_len=24, step_len=8, seed=seed, leaves_only=True)
    random.Random(seed).shuffle(prompts)                          # arrival order ignores the tree
    new_tokens = 3
    capacity = max(map(len, prompts)) + new_tokens + 2          # the longest request, a page of slack, and 1:
    rates = {}                                                   # admission needs strictly fewer than free
    for policy in ("lpm", "dfs-weight", "fcfs"):
        engine = Engine(executor=CostModel(), num_pages=capacity, page_size=1, schedule=policy, max_running=1)
        engine.generate(prompts, SamplingParams(max_new_tokens=new_tokens))
        rates[policy] = engine.stats.hit_rate
    assert rates["lpm"] == pytest.approx(dfs_optimal_hit_rate(prompts))
    assert rates["dfs-weight"] == pytest.approx(dfs_optimal_hit_rate(prompts))
    assert rates["fcfs"] < rates["lpm"]                          # arrival order thrashes the cache
