"""Chapter 05 · The executor: the shifted causal mask, and what a suffix-only prefill costs."""
from __future__ import annotations

import random

from transformers import LlamaConfig

from ..executor import causal_mask
from ..models import prefill_flops
from . import Exercise


def _mask_cases() -> list[tuple]:
    rng = random.Random(15)
    return [(0, 1), (3, 2), (0, 4), (5, 1)] + [(rng.randint(0, 40), rng.randint(1, 12)) for _ in range(150)]


def _flops_cases() -> list[tuple]:
    rng = random.Random(16)
    cases = []
    for _ in range(120):
        heads = rng.choice([4, 8, 16, 32])
        config = LlamaConfig(hidden_size=heads * rng.choice([32, 64, 128]), num_hidden_layers=rng.randint(1, 40),
                             num_attention_heads=heads, num_key_value_heads=heads // rng.choice([1, 2, 4]),
                             intermediate_size=rng.randint(64, 30000), vocab_size=rng.randint(100, 160000))
        total = rng.randint(1, 4096)
        cases.append((config, rng.randint(0, total - 1), total))
    return cases


EXERCISES = [
    Exercise("causal_mask", "implement", causal_mask, _mask_cases,
             hint="a bool tensor [num_new, start + num_new]: new token i sits at position start + i and may attend "
                  "to keys 0 .. start + i",
             source="radixlib.executor.causal_mask"),
    Exercise("prefill_flops", "implement", prefill_flops, _flops_cases,
             hint="2 FLOPs per multiply-add; per computed token and layer: the q, k, v, o projections and the 3 MLP "
                  "matrices; per computed token at position p: 2 x 2 x q_dim FLOPs for each of its p + 1 keys; "
                  "plus the last token's logits",
             source="radixlib.models.prefill_flops"),
]
