"""What the model benchmarks share: one thread, two clocks, interleaved rounds, median and spread.

One intra-op thread (``--threads 1`` by default). Every torch op big enough to be split (a
gather of a few hundred K/V rows, an attention over them, a matrix multiply) opens an OpenMP
parallel region that ends at a barrier waiting for every thread. When another process holds
the second core, that wait lasts until the scheduler gives our worker thread a turn, so an
op's cost depends on the neighbours, and most for code that issues many mid-sized ops. With
one thread nothing waits for a descheduled worker.

Two clocks. CPU time (``time.process_time``: this process, all its threads) counts the work
done and hardly moves when neighbours take turns on the core; with one thread it is what the
wall clock shows on an idle machine, so it is the figure to quote, and targets are judged on
it. Wall time is printed beside it, for this machine under its load at the time.

Every round runs every variant, in an order that rotates from round to round; ratios are
taken within a round (the same load for all), then summed up over the rounds as a median and
a spread (lowest..highest).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

T = TypeVar("T")
CLOCKS = ("cpu", "wall")
# The model every model benchmark times: a seeded 39.6M-parameter Llama (each adds its own settings).
MODEL_SHAPE = dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                   intermediate_size=1376, vocab_size=32000)
CLOCK_NOTE = ("targets are judged on CPU time; wall time is this machine under its load at the time, "
              "which neighbours change (see benchmarks/timing.py)")


class Timed(NamedTuple):
    """Seconds one call took, on both clocks."""
    cpu: float
    wall: float


class Spread(NamedTuple):
    """The median of some values and their range."""
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def format(self, spec: str = ".2f") -> str:
        return f"{self.median:{spec}} ({self.low:{spec}}..{self.high:{spec}})"


def model_bench_parser(doc: str, rounds: int, record: str) -> argparse.ArgumentParser:
    """The options every model benchmark takes: ``--threads`` (torch intra-op threads, 1 by
    default: see above), ``--rounds`` (timed rounds) and ``--record`` (also write ``record``)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see timing.py)")
    parser.add_argument("--rounds", type=int, default=rounds, help="timed rounds (after one warm-up round)")
    parser.add_argument("--record", action="store_true", help=f"also write {record}")
    return parser


def timed(run: Callable[[], T]) -> tuple[T, Timed]:
    """``run()``'s result and how long it took."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = run()
    return result, Timed(time.process_time() - cpu, time.perf_counter() - wall)


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """``items`` starting at ``round_index`` (wrapping), so no variant always runs first."""
    k = round_index % len(items)
    return [*items[k:], *items[:k]]


def interleaved(variants: dict[str, Callable[[], object]], rounds: int, repeat: int = 1) -> dict[str, list[Timed]]:
    """How long each variant took, one value per round: every round calls every variant
    ``repeat`` times in a row (the median of those is the round's value), in rotated order."""
    seconds: dict[str, list[Timed]] = {name: [] for name in variants}
    for r in range(rounds):
        for name in rotated(list(variants), r):
            calls = [timed(variants[name])[1] for _ in range(repeat)]
            seconds[name].append(Timed(*(statistics.median(clock) for clock in zip(*calls))))
    return seconds


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def verdict(label: str, values: Sequence[float], goal: float, at_least: bool = True,
            judge_worst: bool = True) -> str:
    """``target: label >= goal ...: met``, or ``MISSED by`` the shortfall of the worst round
    (of the median alone when ``judge_worst`` is off)."""
    spread = Spread.of(values)
    worst = spread.low if at_least else spread.high
    judged = worst if judge_worst else spread.median
    shortfall = max(goal - judged, 0.0) if at_least else max(judged - goal, 0.0)
    sign, on = (">=" if at_least else "<="), ("median and worst" if judge_worst else "median")
    outcome = "met" if shortfall == 0 else f"MISSED by {shortfall:.2f}"
    return f"target: {label} {sign} {goal:g} on the {on}: median {spread.median:.2f}, worst {worst:.2f}: {outcome}"
