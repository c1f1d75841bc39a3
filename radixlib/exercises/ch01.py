"""Chapter 01 · Pages and the KV pool: page arithmetic and the bytes a token costs."""
from __future__ import annotations

import random

import torch

from ..kv_pool import KVPool
from ..pages import slots_of
from . import Exercise

DTYPES = {4: torch.float32, 2: torch.bfloat16, 1: torch.float8_e4m3fn}   # bytes per element -> dtype


def _slots_cases() -> list[tuple]:
    rng = random.Random(1)
    cases = [([5, 2], 4, 6), ([0], 1, 1), ([3, 1, 2], 16, 48)]
    for _ in range(200):
        page_size = rng.choice([1, 2, 4, 16])
        pages = rng.sample(range(64), rng.randint(1, 6))
        cases.append((pages, page_size, rng.randint(1, len(pages) * page_size)))
    return cases


def _kv_bytes(num_layers: int, kv_heads: int, head_dim: int, bytes_per_element: int) -> int:
    return KVPool(num_layers, 1, 1, kv_heads, head_dim, dtype=DTYPES[bytes_per_element]).bytes_per_token


def _kv_cases() -> list[tuple]:
    rng = random.Random(2)
    known = [(28, 4, 128, 4), (32, 8, 128, 2), (80, 8, 128, 2), (24, 2, 64, 2)]
    return known + [(rng.randint(1, 96), rng.choice([1, 2, 4, 8, 32]), rng.choice([64, 96, 128, 256]),
                     rng.choice(list(DTYPES))) for _ in range(100)]


EXERCISES = [
    Exercise("slots_of", "implement", slots_of, _slots_cases,
             hint="page p owns slots p*page_size .. p*page_size + page_size - 1; keep the first num_tokens",
             source="radixlib.pages.slots_of"),
    Exercise("kv_bytes_per_token", "implement", _kv_bytes, _kv_cases,
             hint="a token stores one K and one V vector of kv_heads x head_dim elements in every layer",
             source="KVPool(...).bytes_per_token"),
]
