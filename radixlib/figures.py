"""Regenerate the README's figures into ``figures/``: ``python -m radixlib.figures``.

Deterministic: fixed inputs, matplotlib SVG with a fixed hash salt and no date, graphviz
SVG from a fixed cache state. ``tests/test_figures.py`` rebuilds them into a temporary
folder and fails when a committed file differs.

    radix_tree.svg             the cache lab's example tree after its example steps
    kv_pages.svg               the page pool of the same state
    hit_rate_vs_capacity.svg   Mooncake trace: hit rate against capacity per policy and Belady
    architecture.svg / .png    the components and one request's path through them
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

from .replay import hit_rate_curves
from .viz import draw_architecture, plot_hit_rate
from .widgets import CacheLab, LabConfig
from .workloads import mooncake_prompts

FIGURES_DIR = Path(__file__).resolve().parent.parent / "figures"
EXAMPLE_STEPS = [("insert", "you are a helpful bot . what is a cache"),
                 ("insert", "you are a helpful bot . explain paging"),
                 ("insert", "you are a terse bot . hi"),
                 ("match", "you are a helpful bot . what is a tree"),
                 ("lock", None)]
CAPACITIES = (0.05, 0.10, 0.25, 0.50)
POLICIES = ("lru", "lfu", "fifo", "mru", "slru")
TOKENS_PER_BLOCK = PAGE_SIZE = 16


def example_lab() -> CacheLab:
    """The lab after ``EXAMPLE_STEPS`` (page_size 1, 32 pages, LRU)."""
    lab = CacheLab(LabConfig(num_pages=32, page_size=1, policy="lru"))
    for action, arg in EXAMPLE_STEPS:
        lab.step(action, arg)
    return lab


def mooncake_curves() -> dict[str, list[tuple[float, float]]]:
    """Hit rate against capacity on the whole Mooncake trace, 16 tokens per block, page_size 16."""
    return hit_rate_curves(mooncake_prompts(TOKENS_PER_BLOCK), PAGE_SIZE, CAPACITIES, POLICIES)


def build(out: Path = FIGURES_DIR) -> list[Path]:
    """Write every figure into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    lab = example_lab()
    paths = [out / "radix_tree.svg", out / "kv_pages.svg", out / "hit_rate_vs_capacity.svg",
             out / "architecture.svg", out / "architecture.png"]
    paths[0].write_text(lab.draw_tree().pipe(format="svg", encoding="utf-8"))
    paths[1].write_text(lab.draw_pages().pipe(format="svg", encoding="utf-8"))
    paths[3].write_text(draw_architecture().pipe(format="svg", encoding="utf-8"))
    paths[4].write_bytes(draw_architecture().pipe(format="png"))
    fig = plot_hit_rate(mooncake_curves(), "Mooncake synthetic trace: hit rate vs capacity")
    with matplotlib.rc_context({"svg.hashsalt": "radixlib"}):
        fig.savefig(paths[2], format="svg", metadata={"Date": None})
    return paths


if __name__ == "__main__":
    for path in build(Path(sys.argv[1]) if len(sys.argv) > 1 else FIGURES_DIR):
        print(path.relative_to(path.parent.parent))
