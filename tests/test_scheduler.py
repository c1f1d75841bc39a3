"""Scheduling policies, in-batch prefix caching, budgets, chunking, retraction, Theorem 3.1.

All model-free: the engine runs with ``CostModel`` in place of the model.
"""
import random

import pytest
from helpers import make_cache

from radixlib.cost_model import CostModel
from radixlib.engine import Engine
from radixlib.request import Request, SamplingParams
from radixlib.router import Router
from radixlib.scheduler import Scheduler, dfs_optimal_hit_rate
from radixlib.workloads import tree_of_thought


def scheduler(schedule="fcfs", num_pages=256, page_size=1, **options) -> Scheduler:
    return Scheduler(Router(make_cache(num_pages=num_pages, page_size=page_size)), schedule, **options)


def order(s: Scheduler, prompts, params: dict | None = None) -> list[int]:
    for rid, p in enumerate(prompts):
        s.add(Request(rid, p, SamplingParams(**(params or {}).get(rid, {}))))
    return [r.rid for r in s._ordered_waiting()]


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
    s = scheduler("lpm", in_batch_threshold=1000)
    s.router.serve(list(range(1, 41)))
    prompts = [[7, 7, 7], list(range(1, 11)) + [99], list(range(1, 31)) + [98]]
    assert order(s, prompts) == [2, 1, 0]


def test_dfs_weight_visits_heavier_subtrees_first():
    s = scheduler("dfs-weight", in_batch_threshold=1000)
    s.router.serve([1, 1, 1, 1, 2, 2, 2, 2])
    s.router.serve([1, 1, 1, 1, 3, 3, 3, 3])
    prompts = [[1, 1, 1, 1, 2, 2, 2, 2, 5], [1, 1, 1, 1, 3, 3, 3, 3, 6], [1, 1, 1, 1, 3, 3, 3, 3, 7], [9, 9]]
    got = order(s, prompts)
    assert got[:2] == [1, 2] and got[2] == 0 and got[3] == 3     # [3 3 3 3] holds two requests


def test_lpm_falls_back_to_fcfs_on_a_long_queue():
    s = scheduler("lpm", num_pages=4096, in_batch_threshold=1000)
    s.router.serve([5] * 20)
    prompts = [[i + 10, 1] for i in range(128)] + [[5] * 20 + [1]]
    assert order(s, prompts)[-1] == 128                          # 129 waiting: no sorting


def test_in_batch_prefix_caching_holds_back_requests_that_share_an_uncomputed_prefix():
    shared = list(range(1, 41))
    engine = Engine(executor=CostModel(), num_pages=512, page_size=1, schedule="lpm")
    requests = [Request(rid, shared + [100 + rid]) for rid in range(4)]
    for req in requests:
        engine.scheduler.add(req)
    first = engine.step()
    assert [i.req.rid for i in first.items] == [0]             # the others wait for its prefix
    second = engine.step()
    assert [i.req.rid for i in second.items] == [1, 2, 3]       # ... and then hit it
    assert [r.cached_tokens for r in requests] == [0, 40, 40, 40]


def test_lpm_shares_a_prefix_computed_once_fcfs_computes_it_per_request():
    shared = list(range(1, 41))
    prompts = [shared + [100 + i] for i in range(4)]
    hits = {}
    for policy in ("lpm", "fcfs"):
        engine = Engine(executor=CostModel(), num_pages=512, page_size=1, schedule=policy)
        results = engine.generate(prompts, SamplingParams(max_new_tokens=2))
        hits[policy] = [r.cached_tokens for r in results]
    assert hits["lpm"] == [0, 40, 40, 40]
    assert hits["fcfs"] == [0, 0, 0, 0]                         # all four admitted in one batch


def test_admission_budget_leaves_room_for_running_requests_outputs():
    engine = Engine(executor=CostModel(), num_pages=40, page_size=1, schedule="fcfs")
    for rid in range(3):
        engine.scheduler.add(Request(rid, [rid + 1] * 8, SamplingParams(max_new_tokens=8)))
    first = engine.scheduler.next_batch()
    assert len(first.items) == 2            # each costs 8 + 8 + 1 tokens of a 40-token pool
    engine.check_invariants()


def test_chunked_prefill_splits_a_long_prompt_and_keeps_its_lock():
    engine = Engine(executor=CostModel(), num_pages=256, page_size=4, chunk_size=16)
    engine.scheduler.add(Request(0, list(range(1, 41)), SamplingParams(max_new_tokens=2)))
    spans = []
    while not engine.scheduler.idle:
        batch = engine.step()
        spans += [(batch.kind, i.start, i.end) for i in batch.items]
        engine.check_invariants()
    assert spans == [("prefill", 0, 16), ("prefill", 16, 32), ("prefill", 32, 40), ("decode", 40, 41)]


def test_retraction_frees_pages_requeues_and_reruns():
    engine = Engine(executor=CostModel(), num_pages=24, page_size=1, new_token_ratio=0.1)
    prompts = [[rid + 1] * 6 for rid in range(3)]
    results = engine.generate(prompts, SamplingParams(max_new_tokens=6))
    assert engine.scheduler.retractions > 0
    assert all(r.error is None and len(r.tokens) == 6 for r in results)
    engine.check_invariants()
    assert engine.allocator.available + engine.cache.total_size == 24


def test_a_request_that_can_never_fit_is_refused_and_the_others_run():
    engine = Engine(executor=CostModel(), num_pages=16, page_size=1)
    results = engine.generate([[1] * 40, [2] * 4], SamplingParams(max_new_tokens=2))
    assert "needs" in results[0].error and results[0].tokens == []
    assert results[1].error is None and len(results[1].tokens) == 2


def test_unknown_policy_and_too_small_chunks_are_refused():
    with pytest.raises(ValueError, match="unknown schedule"):
        scheduler("sjf")
    with pytest.raises(ValueError, match="at least one page"):
        scheduler(page_size=16, chunk_size=8)


# ---- SGLang's Theorem 3.1: with cache >= the longest request, a DFS order is optimal ----

@pytest.mark.parametrize("seed", range(4))
def test_lpm_reaches_the_dfs_optimal_hit_rate(seed):
    prompts = tree_of_thought(depth=3, branching=3, root_len=24, step_len=8, seed=seed, leaves_only=True)
    random.Random(seed).shuffle(prompts)                          # arrival order ignores the tree
    new_tokens = 3
    capacity = max(map(len, prompts)) + new_tokens + 1          # the longest request, and no more
    rates = {}
    for policy in ("lpm", "dfs-weight", "fcfs"):
        engine = Engine(executor=CostModel(), num_pages=capacity, page_size=1, schedule=policy, max_running=1)
        engine.generate(prompts, SamplingParams(max_new_tokens=new_tokens))
        rates[policy] = engine.stats.hit_rate
    assert rates["lpm"] == pytest.approx(dfs_optimal_hit_rate(prompts))
    assert rates["dfs-weight"] == pytest.approx(dfs_optimal_hit_rate(prompts))
    assert rates["fcfs"] < rates["lpm"]                          # arrival order thrashes the cache
