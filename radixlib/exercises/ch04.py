"""Chapter 04 · The router: the admission decision, and what a finished request leaves in the tree."""
from __future__ import annotations

import random

from ..pages import PageAllocator, pages_needed
from ..radix_cache import RadixCache
from ..request import Request
from ..router import Router
from . import Exercise


def _admission(cache: RadixCache, prompt: list[int]) -> tuple[str, int]:
    found = Router(cache).lookup(Request(0, prompt))
    return found.status.name, found.prefix_len


def _admission_cases() -> list[tuple]:
    """Caches filled by served prompts; probes that repeat, extend, cut or miss them."""
    rng = random.Random(4)
    cases = []
    for _ in range(60):
        page_size = rng.choice([1, 2, 4])
        router = Router(RadixCache(PageAllocator(256, page_size)))
        served = [[rng.randrange(6) for _ in range(rng.randint(1, 14))] for _ in range(rng.randint(1, 5))]
        for tokens in served:
            router.serve(tokens)
        for _ in range(4):
            base = rng.choice(served)
            probe = rng.choice([base, base + [rng.randrange(6)], base[: rng.randint(1, len(base))],
                                [rng.randrange(6) for _ in range(rng.randint(1, 10))]])
            cases.append((router.cache, list(probe)))
    return cases


def _finished_len(prompt_len: int, output_len: int, page_size: int) -> int:
    """What ``cache_finished`` leaves in an empty tree after a request of these lengths."""
    router = Router(RadixCache(PageAllocator(pages_needed(prompt_len + output_len, page_size) + 1, page_size)))
    req = Request(0, list(range(prompt_len)))
    router.match(req)
    req.output = list(range(prompt_len, prompt_len + output_len))
    req.kv_len = prompt_len + output_len - 1              # the last sampled token has no K/V
    router.reserve(req, req.kv_len)
    router.cache_finished(req)
    return router.cache.total_size


def _finished_cases() -> list[tuple]:
    rng = random.Random(5)
    known = [(5, 3, 1), (5, 1, 1), (11, 4, 4), (16, 1, 16), (17, 16, 16)]
    return known + [(rng.randint(1, 60), rng.randint(1, 20), rng.choice([1, 2, 4, 16])) for _ in range(200)]


EXERCISES = [
    Exercise("admission", "implement", _admission, _admission_cases,
             hint="match prompt[:len(prompt) - 1] (nothing if that is empty); FULL when the match is every whole "
                  "page of those tokens, PARTIAL when shorter but not 0, MISS when 0",
             source="Router.lookup (SGLang: Req.init_next_round_input)"),
    Exercise("finished_len", "implement", _finished_len, _finished_cases,
             hint="the tree takes prompt + output less the last sampled token, cut to whole pages",
             source="Router.cache_finished on an empty tree"),
]
