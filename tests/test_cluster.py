"""radixlib.cluster: the router's approximate tree against naive references, the cache-aware
rules on their edges, the other policies, and cluster replays (conservation, invariants,
the derived random-routing hit rate, bad input refused alone)."""
from __future__ import annotations

import copy
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from helpers import snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from radixlib import PageAllocator, RadixCache
from radixlib.cluster import (
    ApproxTree,
    Arrival,
    CacheAwareConfig,
    CacheAwarePolicy,
    Cluster,
    Loads,
    PowerOfTwoPolicy,
    RoundRobinPolicy,
    cache_aware_choice,
    expected_random_hit_rate,
    imbalance,
    least_loaded,
    make_policy,
    routing_text,
    run_cluster,
    run_ideal,
)
from radixlib.reference.gateway import SCENARIOS, simulate
from radixlib.request import Status
from radixlib.router import Router
from radixlib.workloads import few_shot, shared_prefix

ROOT = Path(__file__).resolve().parent.parent
texts = st.text(alphabet="ab c", min_size=0, max_size=12)
inserts = st.lists(st.tuples(texts, st.integers(0, 2)), min_size=1, max_size=25)


# ------------------------------------------------------------------ the approximate tree
def naive_match(history: list[tuple[str, int]], text: str) -> tuple[int, int]:
    """Longest common prefix with any text sent; credited to the first worker sent that prefix."""
    matched = max((_common(text, sent) for sent, _ in history), default=0)
    if matched == 0:
        return 0, history[0][1]
    return matched, next(w for sent, w in history if sent.startswith(text[:matched]))


def _common(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def naive_sizes(history: list[tuple[str, int]]) -> dict[int, int]:
    """A worker holds one character per distinct non-empty prefix of the texts it was sent."""
    prefixes = {(w, sent[:n]) for sent, w in history for n in range(1, len(sent) + 1)}
    counts = Counter(w for w, _ in prefixes)
    return {w: counts[w] for _, w in history}


@settings(max_examples=200, deadline=None)
@given(inserts, texts)
def test_tree_matches_and_credits_like_the_naive_reference(history, probe):
    tree = ApproxTree()
    for text, worker in history:
        tree.insert(text, worker)
    tree.check_invariants()
    assert tuple(tree.match(probe)) == naive_match(history, probe)
    assert tree.sizes == naive_sizes(history)


@settings(max_examples=150, deadline=None)
@given(inserts, st.integers(0, 8))
def test_eviction_brings_every_worker_under_the_limit_and_keeps_the_tree_whole(history, limit):
    tree = ApproxTree()
    for text, worker in history:
        tree.insert(text, worker)
    before = dict(tree.sizes)
    tree.evict(limit)
    tree.check_invariants()
    assert all(tree.sizes[w] <= max(limit, 0) or tree.sizes[w] == before[w] == 0 for w in before)
    assert all(tree.sizes[w] == before[w] for w in before if before[w] <= limit)   # under the limit: untouched


def test_eviction_drops_the_least_recently_inserted_leaf_first():
    tree = ApproxTree()
    for text in ("ab", "ac", "x"):          # leaves "b", "c", "x" in this order of time
        tree.insert(text, 0)
    tree.evict(3)                            # 4 characters held: drop one, the oldest leaf "b"
    assert tree.sizes[0] == 3 and tree.match("ab").matched == 1 and tree.match("ac").matched == 2
    tree.evict(1)                            # then "c", then "a" (now a leaf), keeping "x"
    assert tree.sizes[0] == 1 and tree.match("x").matched == 1 and tree.match("ac").matched == 0


def test_a_match_credits_the_node_creator_not_the_last_worker_sent():
    tree = ApproxTree()
    tree.insert("hello world", 0)
    tree.insert("hello world", 1)            # worker 1 joins the path, worker 0 still created it
    tree.insert("hello there", 2)            # splits "hello " off: the upper part keeps owner 0
    assert tree.match("hello world").tenant == 0
    assert tree.match("hello th").tenant == 2
    assert tree.match("hello").tenant == 0 and tree.match("hello").matched == 5


def test_routing_text_is_the_ids_in_decimal_joined_by_spaces():
    assert routing_text([151643, 8, 9]) == "151643 8 9"
    tree = ApproxTree()
    tree.insert(routing_text([151643, 8, 9, 10]), 0)
    hit = tree.match(routing_text([151644, 8, 9, 10]))     # no token shared, five digits are
    assert hit.matched == 5


# ------------------------------------------------------------------ the cache-aware rules
def test_the_rules_on_their_edges():
    config = CacheAwareConfig(cache_threshold=0.3, balance_abs_threshold=2, balance_rel_threshold=1.5)
    assert cache_aware_choice([0, 0, 0], 0.3, 2, config) == (0, "least_load")    # a rate *equal* to it is not enough
    assert cache_aware_choice([0, 0, 0], 0.31, 2, config) == (2, "affinity")
    assert cache_aware_choice([3, 1, 1], 0.9, 0, config) == (0, "affinity")     # max - min == abs: balanced
    assert cache_aware_choice([4, 1, 1], 0.9, 0, config) == (1, "balance")      # both exceeded: first least loaded
    assert cache_aware_choice([9, 6, 7], 0.9, 0, config) == (0, "affinity")     # 9 > 6 * 1.5 fails: balanced
    assert cache_aware_choice([2, 1, 0], 0.1, 0, config) == (2, "least_load")
    sizes = {0: 50, 1: 10, 2: 10}
    older = CacheAwareConfig(low_match="smallest_tree")
    assert cache_aware_choice([0, 0, 5], 0.1, 0, older, sizes) == (1, "smallest_tree")


def test_least_loaded_keeps_the_first_of_equals():
    assert least_loaded([3, 1, 1, 2]) == 1 and least_loaded([0, 0]) == 0


def test_the_policy_inserts_the_text_for_the_chosen_worker_and_skips_the_match_when_imbalanced():
    policy = CacheAwarePolicy(2, CacheAwareConfig(balance_abs_threshold=0, balance_rel_threshold=1.0))
    assert policy.choose("abc", Loads([1, 0], [0, 0])).rule == "balance"
    epoch = policy.tree.epoch
    assert policy.choose("abc", Loads([1, 0], [0, 0])) == (1, "balance")
    assert policy.tree.epoch == epoch + 1           # one insert (a node end), no match tick
    assert policy.tree.sizes == {0: 0, 1: 3}


def test_the_six_system_prompts_all_go_to_the_first_worker_unless_the_older_rule_spreads_them():
    steps = SCENARIOS[0].steps
    assert {d.worker for d in simulate(steps, 3)} == {0}
    spread = simulate(steps, 3, CacheAwareConfig(low_match="smallest_tree"))
    assert {d.worker for d in spread[:6]} == {0, 1, 2}


def test_ours_agree_with_the_real_router_decisions_last_recorded():
    """The decisions sglang-router 0.3.2 made (benchmarks/cluster.py --router --record) are ours."""
    recorded = json.loads((ROOT / "figures" / "data" / "router_decisions.json").read_text())
    for scenario in SCENARIOS:
        real = recorded["scenarios"][scenario.name]
        ours = simulate(scenario.steps, scenario.num_workers, scenario.config)
        assert [s.text for s in scenario.steps if s.action != "release"] == real["texts"]
        assert [d.worker for d in ours] == real["real"], scenario.name


# ------------------------------------------------------------------ the other policies
def test_round_robin_cycles_and_power_of_two_takes_the_lighter_of_two_distinct_workers():
    rr = RoundRobinPolicy(3)
    assert [rr.choose("", Loads([0] * 3, [0] * 3)).worker for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    p2 = PowerOfTwoPolicy(4, seed=1)
    tokens = [5, 0, 9, 3]
    for _ in range(200):
        state = p2.rng.getstate()
        first = p2.rng.randrange(4)
        second = (first + 1 + p2.rng.randrange(3)) % 4
        p2.rng.setstate(state)
        expected = first if tokens[first] <= tokens[second] else second
        assert first != second and p2.choose("", Loads([0] * 4, tokens)).worker == expected
    assert make_policy("power_of_two", 1).choose("", Loads([0], [0])).worker == 0


def test_bad_policy_and_config_are_refused():
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("sticky", 2)
    with pytest.raises(ValueError, match="num_workers"):
        make_policy("random", 0)
    with pytest.raises(ValueError, match="cache_threshold"):
        CacheAwareConfig(cache_threshold=1.5)
    with pytest.raises(ValueError, match="balance_rel_threshold"):
        CacheAwareConfig(balance_rel_threshold=0.5)
    with pytest.raises(TypeError, match="balance_abs_threshold"):
        CacheAwareConfig(balance_abs_threshold=2.5)
    with pytest.raises(ValueError, match="low_match"):
        CacheAwareConfig(low_match="largest_tree")


# ------------------------------------------------------------------ replays
def arrivals_of(prompts: list[list[int]], gap: float = 0.05, new: int = 2) -> list[Arrival]:
    return [Arrival(i * gap, p, new) for i, p in enumerate(prompts)]


@pytest.mark.parametrize("policy", ["random", "round_robin", "power_of_two", "cache_aware"])
def test_a_replay_serves_every_request_and_leaves_every_worker_consistent(policy):
    prompts = few_shot(24, num_examples=4, example_len=32, question_len=16, seed=1) + shared_prefix(24, 64, 16, seed=2)
    cluster = Cluster(3, 64, policy, page_size=16)
    for arrival in arrivals_of(prompts):
        cluster.submit(arrival)
    cluster.drain()
    run = cluster.result()
    for worker in cluster.workers:
        worker.check_invariants()
        assert worker.scheduler.idle
    assert all(r.status is Status.FINISHED for r in cluster.requests)
    assert len(run.ttft) == len(prompts) and min(run.ttft) > 0
    for w, worker in enumerate(cluster.workers):              # each worker served exactly what it was sent
        assert worker.stats.prompt_tokens == sum(len(p) for p, chosen in zip(prompts, run.workers) if chosen == w)
        mine = run.per_worker[w]
        assert (mine.prompt_tokens, mine.hit_rate, mine.evicted_tokens) == (
            worker.stats.prompt_tokens, worker.stats.hit_rate, worker.stats.evicted_tokens)
        assert mine.peak_pages <= 64 and (mine.peak_pages > 0) == (mine.prompt_tokens > 0)
    prompt_tokens = sum(map(len, prompts))
    assert sum(w.hit_rate * w.prompt_tokens for w in run.per_worker) == pytest.approx(run.hit_rate * prompt_tokens)
    assert run.hit_rate == sum(w.stats.cached_tokens for w in cluster.workers) / prompt_tokens
    assert run.global_hit_rate >= run.local_hit_rate
    assert sum(run.rules.values()) == len(prompts)


def test_at_light_load_least_load_piles_new_prefixes_onto_the_first_worker():
    """23 system prompts, 5 users each, shuffled; every request done before the next arrives.
    0.3.2's rule sends every new prefix to worker 0 (all loads 0, first of equals): one worker's
    memory, thrashing, hits no more than round robin. The older smallest-tree rule spreads the
    prefixes and beats both; one big worker bounds them all."""
    groups = [shared_prefix(5, 64, 16, seed=s) for s in range(23)]
    prompts = [p for group in groups for p in group]
    random.Random(7).shuffle(prompts)
    arrivals = arrivals_of(prompts, gap=0.5)
    pages = 4 * 40                                   # a worker holds ~8 of the 23 prefixes
    rr = run_cluster(arrivals, 4, pages, "round_robin")
    piled = run_cluster(arrivals, 4, pages, "cache_aware")
    spread = run_cluster(arrivals, 4, pages, "cache_aware", config=CacheAwareConfig(low_match="smallest_tree"))
    ideal = run_ideal(arrivals, 4, pages)
    assert set(piled.workers) == {0} and piled.hit_rate < rr.hit_rate + 0.05
    assert ideal.hit_rate >= spread.hit_rate > rr.hit_rate + 0.1
    assert len(set(spread.workers)) == 4


def test_random_routing_hits_what_the_derivation_predicts():
    prompts = [p[:64] + q for p in shared_prefix(8, 64, 0, seed=5) for q in shared_prefix(12, 0, 32, seed=6)]
    arrivals = arrivals_of(prompts, gap=10.0)           # far apart: every earlier request is cached
    for n in (1, 2, 4):
        measured = sum(run_cluster(arrivals, n, 4096 * n, "random", seed=s).hit_rate for s in range(8)) / 8
        assert measured == pytest.approx(expected_random_hit_rate(prompts, n, 16), abs=0.03)


def test_a_request_too_long_for_a_worker_is_refused_alone():
    cluster = Cluster(2, 8, "round_robin", page_size=16)
    cluster.submit(Arrival(0.0, list(range(32)), 2))
    cluster.submit(Arrival(0.1, list(range(500)), 2))           # needs 33 pages of 8
    cluster.submit(Arrival(0.2, list(range(32)), 2))
    cluster.submit(Arrival(0.3, [7], 1))                          # one token: nothing to match, still served
    cluster.drain()
    statuses = [r.status for r in cluster.requests]
    assert statuses == [Status.FINISHED, Status.FAILED, Status.FINISHED, Status.FINISHED]
    assert "can never be admitted" in cluster.requests[1].error
    for worker in cluster.workers:
        worker.check_invariants()
    assert cluster.result().failed == 1


def test_imbalance_is_max_over_mean_of_average_loads():
    assert imbalance([[2, 0], [2, 0]]) == 2.0
    assert imbalance([[1, 1, 1]]) == 1.0 and imbalance([]) == 1.0 and imbalance([[0, 0]]) == 1.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=12), min_size=1, max_size=8),
       st.lists(st.integers(0, 3), min_size=1, max_size=12), st.sampled_from([1, 2, 4]))
def test_cached_len_is_the_match_length_and_changes_nothing(prompts, probe, page_size):
    """``RadixCache.cached_len`` (the global index's look into a worker) = ``match_prefix``'s length,
    without refreshing access times or splitting a node."""
    router = Router(RadixCache(PageAllocator(64, page_size)))
    for prompt in prompts:
        router.serve(prompt)
    before = snapshot(router.cache)
    length = router.cache.cached_len(probe)
    assert snapshot(router.cache) == before
    assert length == copy.deepcopy(router.cache).match_prefix(probe).prefix_len


def test_cluster_plots_draw_every_policy_and_label_each_spot_once():
    from radixlib.plots import plot_cluster_hit_rates, plot_tradeoff
    fig = plot_cluster_hit_rates({"round_robin": [(2, 0.4), (4, 0.2)], "one big worker": [(2, 0.6), (4, 0.6)]}, "t")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["round_robin", "one big worker"]
    assert list(ax.get_lines()[0].get_ydata()) == [40.0, 20.0] and ax.get_legend() is not None
    fig = plot_tradeoff({"a": [("0.1", 2.0, 0.5), ("0.3", 2.0, 0.5), ("0.5", 1.9, 0.52)],
                         "b": [("abs 0", 1.3, 0.3), ("abs 2", 1.9, 0.52)]}, "t",
                        bound=0.6, marked=("defaults", 2.0, 0.5))
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0.1, 0.3", "0.5", "abs 0", "abs 2"]   # "0.3" sits on "0.1"
    boxes = [t.get_window_extent() for t in ax.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])   # "0.5", "abs 2": one spot
    assert "defaults" in [line.get_label() for line in ax.get_lines()] and ax.get_xlabel().startswith("load")


@pytest.mark.parametrize("arrival, error", [
    (Arrival(1.0, [], 2), ValueError), (Arrival(1.0, [3, -1], 2), ValueError), (Arrival(1.0, [3, "a"], 2), TypeError),
    (Arrival(1.0, [3, 4], 0), ValueError), (Arrival(0.5, [3, 4], 2), ValueError),
    (Arrival(float("nan"), [3], 2), ValueError),
])
def test_a_bad_arrival_raises_and_changes_nothing(arrival, error):
    cluster = Cluster(2, 16, "cache_aware", page_size=4)
    cluster.submit(Arrival(1.0, [1, 2, 3, 4, 5], 2))
    before = (str(cluster.router.tree), cluster.router.tree.epoch, [w.executor.clock() for w in cluster.workers],
              len(cluster.requests), len(cluster.samples), len(cluster.hits))
    with pytest.raises(error):
        cluster.submit(arrival)
    after = (str(cluster.router.tree), cluster.router.tree.epoch, [w.executor.clock() for w in cluster.workers],
             len(cluster.requests), len(cluster.samples), len(cluster.hits))
    assert after == before
    cluster.drain()
    for worker in cluster.workers:
        worker.check_invariants()


def test_a_worker_counts_every_request_it_has_not_answered_as_load():
    """Queued, just prefilled (not yet merged into the running batch), or running: all in flight."""
    cluster = Cluster(1, 64, "round_robin", page_size=16)
    cluster.submit(Arrival(0.0, list(range(40)), 4))
    cluster.submit(Arrival(0.0, list(range(100, 140)), 4))
    assert cluster.loads().requests == [2]                       # both waiting
    cluster.workers[0].step()                                    # one prefill batch: both in _prefilled
    assert not cluster.workers[0].scheduler.running and cluster.workers[0].scheduler.requests()
    assert cluster.loads().requests == [2]
    cluster.drain()
    assert cluster.loads().requests == [0]
