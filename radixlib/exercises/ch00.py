"""Chapter 00 · Why prefix caching: how much of the Mooncake trace an unlimited cache serves."""
from __future__ import annotations

import random

from ..replay import replay
from ..workloads import mooncake_prompts
from . import Exercise

TOKENS_PER_BLOCK = PAGE_SIZE = 16
UNLIMITED = 10**5                          # pages: more than the trace's distinct blocks


def _first_500_hit_rate() -> float:
    return replay(mooncake_prompts(TOKENS_PER_BLOCK, limit=500), UNLIMITED, PAGE_SIZE).hit_rate


def _cold_starts() -> int:
    run = replay(mooncake_prompts(TOKENS_PER_BLOCK), UNLIMITED, PAGE_SIZE)
    return sum(cached == 0 for cached in run.prefix_lens)


def _unlimited_prefix_lens(prompts: list[list[int]], page_size: int) -> list[int]:
    return replay(prompts, UNLIMITED, page_size).prefix_lens


def _stream_cases() -> list[tuple]:
    """Streams of prompts drawn from a few shared stems over a small vocabulary."""
    rng = random.Random(0)
    cases = [([[1, 2, 3], [1, 2, 3]], 1), ([[1, 2, 3, 4], [1, 2, 3, 4, 5]], 2)]
    for _ in range(150):
        stems = [[rng.randrange(6) for _ in range(rng.randint(1, 12))] for _ in range(3)]
        prompts = [rng.choice(stems)[: rng.randint(1, 12)] + [rng.randrange(6) for _ in range(rng.randint(0, 5))]
                   for _ in range(rng.randint(1, 8))]
        cases.append((prompts, rng.choice([1, 2, 4])))
    return cases


EXERCISES = [
    Exercise("first_500_hit_rate", "compute", _first_500_hit_rate, lambda: [()],
             hint="replay(prompts[:500], num_pages=..., page_size=16) with room for everything; read .hit_rate",
             source="replay(mooncake_prompts(16, limit=500), 10**5, 16).hit_rate"),
    Exercise("cold_starts", "compute", _cold_starts, lambda: [()],
             hint="count the requests of the unlimited replay whose prefix_lens entry is 0",
             source="sum(n == 0 for n in replay(mooncake_prompts(16), 10**5, 16).prefix_lens)"),
    Exercise("unlimited_prefix_lens", "implement", _unlimited_prefix_lens, _stream_cases,
             hint="after each prompt, add prompt[:k * page_size] for every whole page k to a set; a prompt "
                  "reuses the longest such prefix of at most len(prompt) - 1 tokens",
             source="replay(prompts, 10**5, page_size).prefix_lens"),
]
