"""Ordering the waiting queue: radixlib's Scheduler against SGLang 0.5.12's SchedulePolicy.

    python benchmarks/schedule_ops.py [--nodes 50000] [--waiting 1000] [--rounds 5]

Both caches hold the same tree of ``--nodes`` nodes (random tree-shaped prompts, the
same inserts on each side); ``--waiting`` requests wait, most of them continuing a
path of the tree. Each side orders the queue ``--rounds`` times (the first order is
checked to be the same on both, then the best time is kept):

    lpm         SGLang: calc_priority; above 128 waiting both leave the queue as it is (lpm acts
                as fcfs), so this row times nothing of interest
    lpm sort    the lpm ordering itself, below that switch: SGLang's _compute_prefix_matches +
                _sort_by_longest_prefix; ours: Scheduler._cache_aware_order
    dfs-weight  SGLang: calc_priority (_compute_prefix_matches + _sort_by_dfs_weight, which
                walks the whole tree); ours: Scheduler._order_waiting

Every lookup refreshes access times (and the first round splits nodes) on both sides.
"""
from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable

import torch
from timing import timed

from radixlib import PageAllocator, RadixCache
from radixlib.reference.sglang import load_sglang, load_sglang_scheduler, sglang_unavailable
from radixlib.request import Request, SamplingParams
from radixlib.router import Router
from radixlib.scheduler import Scheduler

VOCAB = 32_000


def tree_prompts(num_nodes: int, rng: random.Random) -> list[tuple[int, ...]]:
    """Prompts that each continue a random earlier one from a random point (tree-shaped);
    enough of them for ``num_nodes`` nodes in a page-size-1 radix tree."""
    prompts: list[tuple[int, ...]] = [tuple(rng.randrange(VOCAB) for _ in range(16))]
    cache = RadixCache(PageAllocator(num_nodes * 64, 1))
    while sum(1 for _ in cache.nodes()) < num_nodes:
        for _ in range(1_000):
            base = rng.choice(prompts)
            prompt = base[: rng.randint(1, len(base))] + tuple(rng.randrange(VOCAB) for _ in range(rng.randint(4, 16)))
            prompts.append(prompt)
            cache.insert(prompt, cache.allocator.alloc(len(prompt)))
    return prompts


class Sides:
    """Our cache and scheduler, SGLang's cache and policy, over the same tree."""

    def __init__(self, prompts: list[tuple[int, ...]], waiting: list[tuple[int, ...]]):
        sg, policy = load_sglang(), load_sglang_scheduler()
        total = sum(map(len, prompts))
        self.router = Router(RadixCache(PageAllocator(total + 1, 1)))
        self.tree = sg.RadixCache(sg.CacheInitParams(disable=False, req_to_token_pool=None,
                                                     token_to_kv_pool_allocator=None, page_size=1))
        slots = iter(range(total))
        for prompt in prompts:
            self.router.cache.insert(prompt, self.router.allocator.alloc(len(prompt)))
            values = torch.tensor([next(slots) for _ in prompt], dtype=torch.int64)
            self.tree.insert(sg.InsertParams(key=sg.RadixKey(list(prompt)), value=values))
        self.ours = [Request(rid, list(p), SamplingParams(max_new_tokens=8)) for rid, p in enumerate(waiting)]
        params = policy.sampling.SamplingParams(max_new_tokens=8)
        self.theirs = [policy.batch.Req(rid, "", list(p), params) for rid, p in enumerate(waiting)]
        self.policy_module = policy.policy

    def ours_order(self, schedule: str, sort_only: bool) -> Callable[[], list[int]]:
        scheduler = Scheduler(self.router, schedule)

        def run() -> list[int]:
            scheduler.waiting = list(self.ours)
            (scheduler._cache_aware_order if sort_only else scheduler._order_waiting)()
            return [r.rid for r in scheduler.waiting]
        return run

    def theirs_order(self, schedule: str, sort_only: bool) -> Callable[[], list[int]]:
        policies = self.policy_module
        policy = policies.SchedulePolicy(schedule, self.tree, False, False, False)

        def run() -> list[int]:
            queue = list(self.theirs)
            if sort_only:
                deprioritized = policy._compute_prefix_matches(queue, policies.CacheAwarePolicy.LPM)
                policies.SchedulePolicy._sort_by_longest_prefix(queue, deprioritized)
            else:
                policy.calc_priority(queue)
            return [r.rid for r in queue]
        return run


def best(run: Callable[[], list[int]], rounds: int) -> float:
    """The fastest of ``rounds`` calls, wall seconds."""
    return min(timed(run)[1].wall for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=50_000)
    parser.add_argument("--waiting", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if reason := sglang_unavailable():
        sys.exit(reason)
    rng = random.Random(0)
    prompts = tree_prompts(args.nodes, rng)
    waiting = [p[: rng.randint(1, len(p))] + tuple(rng.randrange(VOCAB) for _ in range(rng.randint(0, 24)))
               for p in rng.sample(prompts, args.waiting)]
    sides = Sides(prompts, waiting)
    nodes = sum(1 for _ in sides.router.cache.nodes())
    print(f"{nodes:,} nodes, {len(waiting):,} waiting requests, best of {args.rounds} rounds\n")
    print("| order | radixlib ms | SGLang ms | SGLang / radixlib | same order |")
    print("|---|---|---|---|---|")
    for label, schedule, sort_only in [("lpm", "lpm", False), ("lpm sort", "lpm", True),
                                       ("dfs-weight", "dfs-weight", False)]:
        ours, theirs = sides.ours_order(schedule, sort_only), sides.theirs_order(schedule, sort_only)
        same = ours() == theirs()
        ours_s, theirs_s = best(ours, args.rounds), best(theirs, args.rounds)
        print(f"| {label} | {ours_s * 1e3:,.1f} | {theirs_s * 1e3:,.1f} | {theirs_s / ours_s:.1f}x | {same} |",
              flush=True)


if __name__ == "__main__":
    main()
