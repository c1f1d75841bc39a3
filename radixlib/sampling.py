"""Sampling: turn one row of logits into the next token id.

Every draw has its own seed, made from the request's seed, its id and the position of
the token being drawn. Sampling is therefore stateless: a request that is retracted and
re-run draws the same token at the same position, whatever ran beside it.
"""
from __future__ import annotations

import torch

from .request import SamplingParams

SEED_MIX = 1_000_003            # a prime: (seed, rid, position) -> one 63-bit draw seed
SEED_BITS = 63                  # torch.Generator.manual_seed takes values below 2**64


def draw_seed(seed: int, rid: int, position: int) -> int:
    """The seed of the draw at ``position`` of request ``rid`` (deterministic, well spread)."""
    return ((seed * SEED_MIX + rid) * SEED_MIX + position) % (1 << SEED_BITS)


def sample(logits: torch.Tensor, params: SamplingParams, rid: int, position: int) -> int:
    """Greedy at temperature 0; otherwise temperature, then top-p (nucleus) sampling."""
    if params.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    sorted_probs, order = probs.sort(descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs          # mass strictly above each token
    sorted_probs[before >= params.top_p] = 0                 # keep the smallest set reaching top_p
    generator = torch.Generator().manual_seed(draw_seed(params.seed, rid, position))
    choice = torch.multinomial(sorted_probs.cpu(), 1, generator=generator)
    return int(order[choice])
