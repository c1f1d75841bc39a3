"""Chapter 02 · The radix tree: the child key, and the match walk over it."""
from __future__ import annotations

import random
from array import array

from ..pages import PageAllocator
from ..radix_cache import RadixCache
from ..router import Router
from . import Exercise


def _child_key(tokens: list[int], start: int, page_size: int):
    return RadixCache(PageAllocator(1, page_size))._child_key(array("Q", tokens), start)


def _child_key_cases() -> list[tuple]:
    rng = random.Random(11)
    cases = []
    for _ in range(200):
        page_size = rng.choice([1, 2, 4, 16])
        tokens = [rng.randrange(100) for _ in range(page_size * rng.randint(1, 4))]
        cases.append((tokens, page_size * rng.randrange(len(tokens) // page_size), page_size))
    return cases


def _match_len(cache: RadixCache, tokens: list[int]) -> int:
    return cache.cached_len(tokens)


def _match_cases() -> list[tuple]:
    """Trees grown from prompts over a small vocabulary (many shared runs, many splits)."""
    rng = random.Random(12)
    cases = []
    for _ in range(60):
        page_size = rng.choice([1, 2, 4])
        router = Router(RadixCache(PageAllocator(512, page_size)))
        served = [[rng.randrange(3) for _ in range(rng.randint(1, 20))] for _ in range(rng.randint(1, 8))]
        for tokens in served:
            router.serve(tokens)
            router.cache.match_prefix(tokens[: rng.randint(1, len(tokens))])      # lookups split nodes too
        for _ in range(4):
            base = rng.choice(served)
            probe = base[: rng.randint(1, len(base))] + [rng.randrange(3) for _ in range(rng.randint(0, 6))]
            cases.append((router.cache, probe))
    return cases


EXERCISES = [
    Exercise("child_key", "implement", _child_key, _child_key_cases,
             hint="page size 1: the token at start; otherwise the tuple of the page's tokens, "
                  "tokens[start:start+page_size]",
             source="RadixCache._child_key"),
    Exercise("match_len", "implement", _match_len, _match_cases,
             hint="from cache.root, find the child by its key, count the tokens of its edge that agree (in whole "
                  "pages), go down only if the whole edge agreed; change nothing",
             source="RadixCache.cached_len (the walk of match_prefix, without refresh or split)"),
]
