"""Chapter 11 · A second tier: the load-back decision, and the host pool SGLang sizes."""
from __future__ import annotations

import random

from ..hicache import LOAD_BACK_THRESHOLD, host_pool_pages, should_load_back
from . import Exercise


def _tokens_loaded(chain: list[int], threshold: int, mem_quota: int | None, newly_locked: int) -> int:
    """Tokens ``load_back`` copies for a host-only chain of nodes of ``chain`` tokens each."""
    host_len = sum(chain)
    return host_len if should_load_back(host_len, threshold, mem_quota, newly_locked) else 0


def _load_cases() -> list[tuple]:
    rng = random.Random(11)
    cases = [([9], 10, None, 0), ([4, 6], 10, None, 0), ([16, 16], 10, 32, 0), ([16, 16], 10, 31, 0),
             ([16, 16], 10, 40, 8), ([16, 16], 10, 40, 9), ([6], 0, 0, 0), ([12], 10, None, 500)]
    for _ in range(300):
        chain = [rng.choice([1, 4, 16]) * rng.randint(1, 8) for _ in range(rng.randint(1, 4))]
        quota = None if rng.random() < 0.3 else rng.randint(0, 2 * sum(chain))
        cases.append((chain, rng.choice([0, 1, LOAD_BACK_THRESHOLD, 64]), quota, rng.choice([0, 0, 16, 48])))
    return cases


EXERCISES = [
    Exercise("tokens_loaded", "implement", _tokens_loaded, _load_cases,
             hint="all or nothing: the whole chain (the sum) if it is at least threshold tokens and, with a "
                  "quota, at most mem_quota - newly_locked; else 0",
             source="radixlib.hicache.should_load_back"),
    Exercise("host_pages_for_1000", "compute", lambda: host_pool_pages(1000, 16, ratio=2.0), lambda: [()],
             hint="hicache_ratio x the device pool's tokens, in whole pages, plus one page (HostKVCache.__init__)",
             source="radixlib.hicache.host_pool_pages(1000, 16, ratio=2.0)"),
]
