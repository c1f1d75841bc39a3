"""Chapter 10 · Beyond one worker: sglang-router's cache-aware choice, and the match rate it rests on."""
from __future__ import annotations

import random

from ..cluster import ApproxTree, CacheAwareConfig, cache_aware_choice
from . import Exercise

RATES = [k / 20 for k in range(21)]                 # exact in f32 and f64 alike, so both compare the same
THRESHOLDS = (0.1, 0.2, 0.3, 0.5, 0.7)
REL = (1.0, 1.25, 1.5, 2.0)


def _choice(loads, match_rate, credited, cache_threshold, balance_abs_threshold, balance_rel_threshold) -> int:
    config = CacheAwareConfig(cache_threshold, balance_abs_threshold, balance_rel_threshold)
    return cache_aware_choice(loads, match_rate, credited, config).worker


def _choice_cases() -> list[tuple]:
    rng = random.Random(10)
    cases = [([0, 0, 0], 0.3, 2, 0.3, 64, 1.5), ([0, 0, 0], 0.35, 2, 0.3, 64, 1.5),
             ([4, 1, 1], 0.9, 0, 0.3, 2, 1.5), ([3, 1, 1], 0.9, 0, 0.3, 2, 1.5), ([9, 6, 7], 0.9, 0, 0.3, 2, 1.5)]
    for _ in range(300):
        n = rng.randint(1, 6)
        loads = [rng.randint(0, rng.choice([2, 8, 100])) for _ in range(n)]
        cases.append((loads, rng.choice(RATES), rng.randrange(n), rng.choice(THRESHOLDS),
                      rng.choice([0, 1, 2, 4, 64]), rng.choice(REL)))
    return cases


def _match_rate(sent: list[str], text: str) -> float:
    tree = ApproxTree()
    for earlier in sent:
        tree.insert(earlier, 0)
    return tree.match(text).matched / len(text) if text else 0.0


def _match_cases() -> list[tuple]:
    rng = random.Random(11)
    words = ["you are", " a ", "helpful", " bot", "12 ", "345 ", "7", ".", "?"]

    def text() -> str:
        return "".join(rng.choice(words) for _ in range(rng.randint(0, 6)))

    cases = [(["you are a bot"], "you are a cat"), ([], "hello"), (["abc"], ""), (["151643 8 9"], "151644 8 9")]
    return cases + [([text() for _ in range(rng.randint(0, 5))], text()) for _ in range(300)]


EXERCISES = [
    Exercise("cache_aware_choice", "implement", _choice, _choice_cases,
             hint="imbalanced (max-min > abs AND max > min*rel) -> first least-loaded; else match_rate > "
                  "threshold -> credited; else first least-loaded",
             source="radixlib.cluster.cache_aware_choice"),
    Exercise("match_rate", "implement", _match_rate, _match_cases,
             hint="the longest common prefix of text with any text sent, in characters, over len(text) "
                  "(0.0 for an empty text)",
             source="radixlib.cluster.ApproxTree.match"),
]
