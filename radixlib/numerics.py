"""How close is close enough: float comparisons bounded by the arithmetic's own error.

Two float32 computations of the same logits (a full forward, and the suffix over the pool) sum
their matmuls in different orders, so they differ by rounding, and by how much depends on the
CPU's kernels and the thread count. No constant bound is safe on every machine. The bound here
is measured: the same weights widened to float64 give (nearly) exact logits, the float32
reference's distance from them is the arithmetic's own error, and a result passes when it is no
farther from the exact logits than that, within a small slack.
"""
import torch

UNIT_ROUNDOFF = {torch.float32: 2.0 ** -24, torch.float64: 2.0 ** -53}
SLACK = 2.0   # two roundings of one size, summed in different orders


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b|, computed in float64."""
    return (a.double() - b.double()).abs().max().item()


def as_accurate(ours: torch.Tensor, reference: torch.Tensor, exact: torch.Tensor, slack: float = SLACK) -> bool:
    """``ours`` is as close to ``exact`` as ``reference`` (computed in the same dtype) is, times ``slack``."""
    return max_difference(ours, exact) <= slack * max_difference(reference, exact)


def float64_bound(float32_error: float, slack: float = SLACK) -> float:
    """The float32 error measured on a computation, scaled to float64's precision: what the same
    computation in float64 may differ by when it sums in another order."""
    return slack * float32_error * UNIT_ROUNDOFF[torch.float64] / UNIT_ROUNDOFF[torch.float32]
