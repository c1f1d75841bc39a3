"""The executor's contract: what the engine hands it, and what it must answer.

The engine (with its router and scheduler) is the control plane: it decides which
tokens run and where their K/V live. An ``Executor`` is the execution plane: it runs
the forwards over the slots it is handed and picks each request's next token. Two
executors satisfy the contract: ``executor.AttentionExecutor`` (a transformers model
over the paged pool) and ``cost_model.CostModel`` (no model: a simulated clock).

This module imports nothing beyond the standard library, so the control plane runs
without torch.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from .request import SamplingParams


class ForwardRequest(NamedTuple):
    """One request's share of a forward.

    ``tokens``: the ids to compute now (the uncached suffix at prefill, one token at decode).
    ``start``: how many of the request's tokens already have K/V in the pool; the first
    new token sits at position ``start``.
    ``slots``: pool slots of the whole context, ``start + len(tokens)`` of them::

        slots:  [ 0 .. start)  cached, read only  |  [start .. start + len(tokens))  written now

    ``params`` and ``rid`` say how to pick the next token (``Executor.prefill``/``decode``);
    the draw for position p depends on ``(params.seed, rid, p)`` alone, so a request
    re-run after a retraction samples the same tokens.
    """
    tokens: Sequence[int]
    start: int
    slots: Sequence[int]
    params: SamplingParams = SamplingParams()
    rid: int = 0


class Executor(Protocol):
    """What the engine needs from whatever computes the forwards.

    Two limits let the engine refuse a request up front, alone, instead of failing the
    batch it would have joined (None: no limit):
    ``vocab_size``: prompt token ids must lie in ``0 .. vocab_size - 1``.
    ``max_context``: prompt + new tokens must not exceed it (the model's positions).
    """
    vocab_size: int | None
    max_context: int | None

    def prefill(self, batch: Sequence[ForwardRequest]) -> list[int]:
        """Compute every request's new tokens in one forward; each request's next token id."""

    def decode(self, batch: Sequence[ForwardRequest]) -> list[int]:
        """One new token per request (``len(tokens) == 1``); each request's next token id."""

    def clock(self) -> float:
        """Seconds, for time-to-first-token (wall time, or a simulated clock)."""
