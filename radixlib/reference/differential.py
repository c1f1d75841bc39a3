"""Run one stream through both sides and stop at the first difference."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .ops import CACHE_OPS, Op, Outcome, Side, brief, tree_view

TREE_CHECK_EVERY = 1_000     # also compare total sizes and whole trees (shape, pages, locks, hits, time order)


class Difference(AssertionError):
    """The two caches disagreed; the message names the operation and both answers."""


def compare(ops: Sequence[Op], ours: Side, theirs: Side) -> Counter[str]:
    """Apply every op to both sides and compare outcomes; how many ops of each kind ran."""
    counts: Counter[str] = Counter()
    for index, op in enumerate(ops):
        mine, reference = _apply(ours, index, op), _apply(theirs, index, op)
        if mine != reference:
            raise Difference(f"op {index} {brief(op)}:\n  {ours.name}: {mine}\n  {theirs.name}: {reference}")
        if isinstance(op, CACHE_OPS):
            counts[type(op).__name__] += 1
        if index % TREE_CHECK_EVERY == 0 or index == len(ops) - 1:
            compare_trees(ours, theirs, f"after op {index}")
    return counts


def compare_trees(ours: Side, theirs: Side, when: str) -> None:
    """The whole trees, and the total sizes, must be equal."""
    if ours.total_size() != theirs.total_size():
        raise Difference(f"{when}: total size {ours.name} {ours.total_size()}, {theirs.name} {theirs.total_size()}")
    mine, reference = tree_view(ours.snapshot()), tree_view(theirs.snapshot())
    for position, (a, b) in enumerate(zip(mine, reference)):
        if a != b:
            raise Difference(f"{when}, node {position} (depth first):\n  {ours.name}: {a}\n  {theirs.name}: {b}")
    if len(mine) != len(reference):
        raise Difference(f"{when}: {ours.name} has {len(mine)} nodes, {theirs.name} {len(reference)}")


def _apply(side: Side, index: int, op: Op) -> Outcome | None:
    try:
        return side.apply(index, op)
    except Exception as error:
        raise Difference(f"op {index} {brief(op)}: {side.name} raised {error!r}") from error
