"""Workloads: prompt streams with realistic sharing.

The Mooncake FAST'25 synthetic trace (``data/``, Apache-2.0) records each request as a
list of hash ids, one per 512-token block; equal ids mean equal content, and an id
stands for its whole prefix. We turn block ``h`` into ``tokens_per_block`` token ids
that belong to ``h`` alone, so two prompts share tokens exactly where they share blocks::

    hash_ids [0, 1, 7]  ->  tokens [0*T .. 0*T+T) + [1*T .. 1*T+T) + [7*T .. 7*T+T)     (T = tokens_per_block)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MOONCAKE_TRACE = DATA_DIR / "mooncake_synthetic_trace.jsonl"


class TraceRequest(NamedTuple):
    timestamp_ms: int
    input_length: int
    output_length: int
    hash_ids: list[int]


def load_mooncake(path: str | Path = MOONCAKE_TRACE, limit: int | None = None) -> list[TraceRequest]:
    """The trace's requests in arrival order (the first ``limit`` of them)."""
    requests = []
    with open(path) as f:
        for line in f:
            if limit is not None and len(requests) >= limit:
                break
            r = json.loads(line)
            requests.append(TraceRequest(r["timestamp"], r["input_length"], r["output_length"], r["hash_ids"]))
    return requests


def block_tokens(hash_ids: list[int], tokens_per_block: int = 16) -> list[int]:
    """Token ids of a prompt made of the blocks ``hash_ids``."""
    return [h * tokens_per_block + i for h in hash_ids for i in range(tokens_per_block)]


def mooncake_prompts(tokens_per_block: int = 16, limit: int | None = None) -> list[list[int]]:
    """Every trace request as a token list, ``tokens_per_block`` tokens per 512-token block."""
    return [block_tokens(r.hash_ids, tokens_per_block) for r in load_mooncake(limit=limit)]
