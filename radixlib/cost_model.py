"""A model-free executor: the engine's router and scheduler, with forwards replaced by a cost model.

It answers ``prefill``/``decode`` like ``AttentionExecutor`` (logits ``[B, vocab]``;
all-zero, so greedy picks token 0) and advances a simulated clock instead of running a
model, so long traces replay in seconds for hit-rate and scheduling studies::

    seconds per forward = overhead + per_token * tokens computed + per_context * tokens attended
"""
from __future__ import annotations

from typing import Sequence

import torch

from .executor import ForwardRequest


class CostModel:
    def __init__(self, vocab_size: int = 32000, overhead: float = 5e-3,
                 per_token: float = 5e-4, per_context: float = 1e-6):
        self.vocab_size = vocab_size
        self.overhead, self.per_token, self.per_context = overhead, per_token, per_context
        self.seconds = 0.0
        self.computed_tokens = 0

    def clock(self) -> float:
        """Simulated seconds spent so far (the engine reads time from here)."""
        return self.seconds

    def prefill(self, batch: Sequence[ForwardRequest]) -> torch.Tensor:
        new = sum(len(r.tokens) for r in batch)
        attended = sum(len(r.tokens) * (r.prefix_len + len(r.tokens)) for r in batch)
        self.seconds += self.overhead + self.per_token * new + self.per_context * attended
        self.computed_tokens += new
        return torch.zeros(len(batch), self.vocab_size)

    decode = prefill
