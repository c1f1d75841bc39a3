"""Chapter 06b · Cache-aware scheduling: the lpm order with in-batch caching, and the dfs-weight order."""
from __future__ import annotations

import random

from ..pages import PageAllocator
from ..radix_cache import RadixCache
from ..request import Request
from ..router import Router
from ..scheduler import Scheduler, dfs_weight_order, lpm_order
from . import Exercise


def _lpm(prompts: list[list[int]], prefix_lens: list[int], threshold: int) -> list[int]:
    """The lpm order of a queue whose cached prefix lengths are given."""
    queue = [Request(i, tokens) for i, tokens in enumerate(prompts)]
    lens = {id(r): n for r, n in zip(queue, prefix_lens)}
    scheduler = Scheduler(Router(RadixCache(PageAllocator(1, 1))), "lpm", in_batch_threshold=threshold)
    last = scheduler._in_batch_deprioritized([(r, lens[id(r)]) for r in queue])
    return [r.rid for r in lpm_order(queue, lens, last)]


def _lpm_cases() -> list[tuple]:
    rng = random.Random(9)
    cases = []
    for _ in range(150):
        threshold = rng.choice([2, 3, 4, 32])
        stems = [[rng.randrange(4) for _ in range(rng.randint(0, 6))] for _ in range(3)]
        prompts = [rng.choice(stems) + [rng.randrange(4) for _ in range(rng.randint(1, 4))]
                   for _ in range(rng.randint(1, 9))]
        prefix_lens = [rng.choice([0, 0, 1, 2, 3, 5, 40]) for _ in prompts]
        cases.append((prompts, prefix_lens, threshold))
    return cases


def _dfs_weight(cache: RadixCache, prompts: list[list[int]]) -> list[int]:
    queue = [Request(i, tokens) for i, tokens in enumerate(prompts)]
    nodes = {id(r): cache.match_prefix(r.tokens).node for r in queue}
    return [r.rid for r in dfs_weight_order(queue, nodes)]


def _dfs_cases() -> list[tuple]:
    rng = random.Random(10)
    cases = []
    for _ in range(80):
        router = Router(RadixCache(PageAllocator(256, 1)))
        served = [[rng.randrange(3) for _ in range(rng.randint(1, 8))] for _ in range(rng.randint(1, 6))]
        for tokens in served:
            router.serve(tokens)
        queue = [rng.choice(served)[: rng.randint(1, 8)] + [rng.randrange(3) for _ in range(rng.randint(0, 3))]
                 for _ in range(rng.randint(1, 8))]
        cases.append((router.cache, queue))
    return cases


EXERCISES = [
    Exercise("lpm_order", "implement", _lpm, _lpm_cases,
             hint="walk the queue in order: a request with prefix_len <= threshold that shares >= threshold tokens "
                  "with an earlier such request (not itself deprioritized) goes last; sort the rest by -prefix_len, "
                  "stably",
             source="Scheduler._in_batch_deprioritized + lpm_order (SGLang: _compute_prefix_matches, "
                    "_sort_by_longest_prefix)"),
    Exercise("dfs_weight_order", "implement", _dfs_weight, _dfs_cases,
             hint="match every prompt first (match_prefix(prompt).node); a node's weight is the number of requests "
                  "at it or below; visit children heaviest first (ties in the order of node.children), a node's "
                  "own requests after its children's",
             source="scheduler.dfs_weight_order (SGLang: _sort_by_dfs_weight)"),
]
