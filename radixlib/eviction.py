"""Eviction policies as priority keys: the leaf with the SMALLEST key is evicted first.

Each policy is a function of one tree node, the same keys SGLang 0.5.12 uses
(``mem_cache/evict_policy.py``). Times come from the cache's logical clock.

    lru       last access                 oldest touch goes first
    lfu       (hits, last access)         fewest hits first, then oldest touch
    fifo      creation                    oldest node goes first
    mru       -last access                newest touch goes first
    filo      -creation                   newest node goes first
    priority  (priority, last access)     lowest request priority first, then LRU
    slru      (hits >= 2, last access)    one-hit nodes (probation) before the rest
"""
from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

SLRU_PROTECTED_HITS = 2

POLICIES: dict[str, Callable[[Any], Any]] = {      # attrgetter("a", "b")(n) is (n.a, n.b)
    "lru": attrgetter("last_access"),
    "lfu": attrgetter("hits", "last_access"),
    "fifo": attrgetter("created"),
    "mru": lambda n: -n.last_access,
    "filo": lambda n: -n.created,
    "priority": attrgetter("priority", "last_access"),
    "slru": lambda n: (n.hits >= SLRU_PROTECTED_HITS, n.last_access),
}


def policy_key(name: str) -> Callable[[Any], Any]:
    """The key function of policy ``name``; a clear error for an unknown name."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown eviction policy {name!r}; choose one of {sorted(POLICIES)}") from None
