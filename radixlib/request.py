"""Request: one prompt's life from the waiting queue to its last token.

A request's tokens are its prompt and its output so far. Their K/V live in ``pages``;
the first ``prefix_len`` tokens are shared with the tree (those pages belong to tree
nodes), the rest are its own::

    tokens:  [ prefix (tree's pages) | computed by this request (own pages) ]
             0                  prefix_len                               kv_len

``kv_len`` counts the tokens whose K/V are in the pool: the tokens as far as they have
been prefilled, then one more per decode step. The last sampled token has no K/V yet.
A retracted request keeps its output, as SGLang's ``Req.reset_for_retract`` does, and
is prefilled again over prompt + output (its "fill", SGLang's ``fill_ids``).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .radix_cache import TreeNode


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token; ``temperature == 0`` is greedy."""
    max_new_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[int, ...] = ()          # token ids that end the request (kept in the output)
    seed: int = 0                       # per-request sampling stream: a re-run samples the same tokens

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(eq=False)
class Request:
    rid: int
    prompt: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    output: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    pages: list[int] = field(default_factory=list)   # covers tokens [0, kv_len)
    kv_len: int = 0                                   # tokens whose K/V are in the pool
    prefix_len: int = 0                               # leading tokens owned by the tree
    node: TreeNode | None = None                      # locked end of the tree-owned prefix
    cached_tokens: int = 0                            # tokens served from the cache (first admission)
    computed_tokens: int = 0                          # tokens this request ran through the model
    retractions: int = 0
    arrival: float = 0.0                              # engine clock at submission
    first_token_at: float | None = None               # engine clock at the first sampled token
    error: str | None = None

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.output

    @property
    def finished(self) -> bool:
        if not self.output:
            return False
        return len(self.output) >= self.params.max_new_tokens or self.output[-1] in self.params.stop

    @property
    def remaining_new_tokens(self) -> int:
        return self.params.max_new_tokens - len(self.output)
