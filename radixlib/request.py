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
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .radix_cache import TreeNode


MAX_SEED = 2 ** 63                      # seeds are mixed into 63-bit draw seeds (``sampling.draw_seed``)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token; ``temperature == 0`` is greedy.

    Checked at construction (``TypeError`` for a wrong type, ``ValueError`` for a value out
    of range), so a request never carries parameters the executor cannot use. The ranges
    of temperature and top_p are SGLang's (``SamplingParams.verify``).
    """
    max_new_tokens: int = 16            # >= 1: the prefill already samples the first token
    temperature: float = 0.0            # finite, >= 0
    top_p: float = 1.0                  # in (0, 1]
    stop: tuple[int, ...] = ()          # token ids that end the request (kept in the output); a list is converted
    seed: int = 0                       # in [0, 2**63): a re-run samples the same tokens

    def __post_init__(self):
        check_int("max_new_tokens", self.max_new_tokens, 1)
        check_int("seed", self.seed, 0)
        if self.seed >= MAX_SEED:
            raise ValueError(f"seed must be an int in [0, 2**63), got {self.seed}")
        check_real("temperature", self.temperature, lambda t: t >= 0, "a finite number >= 0")
        check_real("top_p", self.top_p, lambda p: 0 < p <= 1, "a number in (0, 1]")
        if not isinstance(self.stop, (tuple, list)):
            raise TypeError(f"stop must be a tuple of token ids, got {type(self.stop).__name__} {self.stop!r}")
        for token in self.stop:
            check_int("a stop token id", token, 0)
        object.__setattr__(self, "stop", tuple(self.stop))      # frozen: hashable, never shared


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value, low: int, why: str = "") -> None:
    """An int (bool is not one) ``>= low``; else an error naming ``name`` and what is expected.

    Shared with ``Scheduler``'s options: TypeError for a wrong type, ValueError out of range.
    """
    expected = f"an int >= {low}" + (f" ({why})" if why else "")
    if not _is_int(value):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be {expected}, got {value}")


def check_real(name: str, value, in_range: Callable[[float], bool], expected: str) -> None:
    """A finite real number (bool is not one) for which ``in_range`` holds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and in_range(value)):
        raise ValueError(f"{name} must be {expected}, got {value}")


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
