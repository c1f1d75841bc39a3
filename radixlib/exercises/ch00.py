"""Chapter 00 · Why prefix caching: how much of the Mooncake trace an unlimited cache serves."""
from __future__ import annotations

from ..replay import replay
from ..workloads import mooncake_prompts
from . import Exercise

TOKENS_PER_BLOCK = PAGE_SIZE = 16
UNLIMITED = 10**5                          # pages: more than the trace's distinct blocks


def _first_500_hit_rate() -> float:
    return replay(mooncake_prompts(TOKENS_PER_BLOCK)[:500], UNLIMITED, PAGE_SIZE).hit_rate


def _cold_starts() -> int:
    run = replay(mooncake_prompts(TOKENS_PER_BLOCK), UNLIMITED, PAGE_SIZE)
    return sum(cached == 0 for cached in run.prefix_lens)


EXERCISES = [
    Exercise("first_500_hit_rate", "compute", _first_500_hit_rate, lambda: [()],
             hint="replay(prompts[:500], num_pages=..., page_size=16) with room for everything; read .hit_rate",
             source="replay(mooncake_prompts(16)[:500], 10**5, 16).hit_rate"),
    Exercise("cold_starts", "compute", _cold_starts, lambda: [()],
             hint="count the requests of the unlimited replay whose prefix_lens entry is 0",
             source="sum(n == 0 for n in replay(mooncake_prompts(16), 10**5, 16).prefix_lens)"),
]
