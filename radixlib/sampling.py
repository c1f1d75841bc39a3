"""Sampling: turn one row of logits into the next token id."""
from __future__ import annotations

import torch

from .request import SamplingParams


def request_generator(params: SamplingParams, rid: int) -> torch.Generator:
    """A request's own random stream: a retracted request re-run from scratch samples the same tokens."""
    return torch.Generator().manual_seed(params.seed * 1_000_003 + rid)


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Greedy at temperature 0; otherwise temperature, then top-p (nucleus) sampling."""
    if params.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    sorted_probs, order = probs.sort(descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs          # mass strictly above each token
    sorted_probs[before >= params.top_p] = 0                 # keep the smallest set reaching top_p
    choice = torch.multinomial(sorted_probs.cpu(), 1, generator=generator)
    return int(order[choice])
