"""Chapter 03 · Lock refs and eviction: the policies' keys, the leaf-heap loop, and Belady's gap."""
from __future__ import annotations

import random

from ..eviction import POLICIES
from ..pages import PageAllocator
from ..radix_cache import RadixCache, TreeNode
from ..replay import belady, replay
from ..router import Router
from ..workloads import mooncake_prompts
from . import Exercise


def _policy_key(policy: str, node: TreeNode):
    return POLICIES[policy](node)


def _grown_cache(rng: random.Random, eviction: str = "lru") -> RadixCache:
    """A tree grown by served prompts, lookups and a few locks, over a small vocabulary."""
    router = Router(RadixCache(PageAllocator(256, rng.choice([1, 2])), eviction))
    served = [[rng.randrange(3) for _ in range(rng.randint(1, 12))] for _ in range(rng.randint(2, 9))]
    for tokens in served + rng.sample(served, len(served) // 2):
        router.serve(tokens)
        if rng.random() < 0.3:
            router.cache.match_prefix(tokens[: rng.randint(1, len(tokens))])
    for _ in range(rng.randint(0, 2)):
        router.cache.lock(router.cache.match_prefix(rng.choice(served)).node)
    return router.cache


def _key_cases() -> list[tuple]:
    rng = random.Random(13)
    cases = []
    for _ in range(40):
        cache = _grown_cache(rng)
        cases += [(policy, node) for node in cache.nodes() for policy in POLICIES]
    return cases


def _eviction_order(cache: RadixCache, num_tokens: int) -> list[int]:
    """The ids of the nodes ``cache.evict(num_tokens)`` frees, in the order it frees them."""
    owner = {page: node.id for node in cache.nodes() for page in node.pages}
    order, reclaim = [], cache.allocator.reclaim
    cache.allocator.reclaim = lambda pages: (order.append(owner[pages[0]]), reclaim(pages))
    cache.evict(num_tokens)
    return order


def _order_cases() -> list[tuple]:
    rng = random.Random(14)
    return [(_grown_cache(rng, rng.choice(sorted(POLICIES))), rng.randint(0, 40)) for _ in range(150)]


def _belady_gap() -> float:
    prompts = mooncake_prompts(16)[:1000]
    return round(100 * (belady(prompts, 500, 16).hit_rate - replay(prompts, 500, 16, "lru").hit_rate), 1)


EXERCISES = [
    Exercise("policy_key", "implement", _policy_key, _key_cases,
             hint="smaller keys go first: lru = last_access; lfu = (hits, last_access); fifo = created; mru and "
                  "filo negate; priority = (priority, last_access); slru = (hits >= 2, last_access)",
             source="radixlib.eviction.POLICIES (SGLang: evict_policy.py's strategies)"),
    Exercise("eviction_order", "implement", _eviction_order, _order_cases,
             hint="heap the unlocked leaves by the cache's policy key (POLICIES[cache.eviction]); pop the smallest, "
                  "count its tokens; its parent joins the heap once it has no children left and no lock; stop when "
                  "at least num_tokens are freed. Work on your own bookkeeping: do not change the tree",
             source="RadixCache.evict (SGLang: RadixCache.evict)"),
    Exercise("belady_gap", "compute", _belady_gap, lambda: [()],
             hint="replay the first 1,000 prompts at 500 pages of 16 with replay(..., 'lru') and with belady(...); "
                  "the difference of hit rates, in points, rounded to one decimal",
             source="belady(prompts[:1000], 500, 16) - replay(prompts[:1000], 500, 16, 'lru'), in points"),
]
