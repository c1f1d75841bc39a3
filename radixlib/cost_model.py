"""A model-free executor: the engine's router and scheduler, with forwards replaced by a cost model.

It satisfies the ``forward.Executor`` contract without a model: every next token is
``token`` (0 by default; the studies it serves need lengths, not words), and each
forward advances a simulated clock instead of running anything, so long traces replay
in seconds for hit-rate and scheduling studies::

    seconds per forward = overhead + per_token * tokens computed + per_context * tokens attended

Standard library only: an engine over a ``CostModel`` never imports torch.
"""
from __future__ import annotations

from collections.abc import Sequence

from .forward import ForwardRequest


class CostModel:
    """``vocab_size`` and ``max_context`` are the limits the engine checks prompts against
    (``forward.Executor``); None, the default, accepts any non-negative id and any length."""

    def __init__(self, overhead: float = 5e-3, per_token: float = 5e-4, per_context: float = 1e-6,
                 token: int = 0, vocab_size: int | None = None, max_context: int | None = None):
        self.overhead, self.per_token, self.per_context = overhead, per_token, per_context
        self.token, self.vocab_size, self.max_context = token, vocab_size, max_context
        self.seconds = 0.0
        self.computed_tokens = 0

    def clock(self) -> float:
        """Simulated seconds spent so far (the engine reads time from here)."""
        return self.seconds

    def prefill(self, batch: Sequence[ForwardRequest]) -> list[int]:
        new = sum(len(r.tokens) for r in batch)
        attended = sum(len(r.tokens) * (r.start + len(r.tokens)) for r in batch)
        self.seconds += self.overhead + self.per_token * new + self.per_context * attended
        self.computed_tokens += new
        return [self.token] * len(batch)

    decode = prefill
