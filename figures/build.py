"""Regenerate the README's figures into ``figures/``: ``make figures`` (``python figures/build.py [OUT]``).

Deterministic: fixed inputs, matplotlib SVG with a fixed hash salt and no date, graphviz
SVG from a fixed cache state. ``tests/test_figures.py`` rebuilds them into a temporary
folder and fails when a committed file differs.

    radix_tree.svg             the cache lab's example tree after its example steps
    kv_pages.svg               the page pool of the same state
    hit_rate_vs_capacity.svg   Mooncake trace: hit rate against capacity per policy and Belady
    architecture.svg / .png    the components and one request's path through them
    v2_beside_radixlib.svg     its companion (chapter 08): v2's data flow beside radixlib's, the three differences
    prefill_vs_cached.svg      benchmarks/prefill_reuse.py's last recorded run (figures/data/)
    engine_throughput.svg      benchmarks/engine.py's last recorded run (figures/data/)

The two benchmark figures draw data the benchmarks recorded (``--record``), so they are
as deterministic as the others; re-run a benchmark with ``--record`` to refresh them.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from radixlib.lab import CacheLab, LabConfig
from radixlib.plots import plot_hit_rate, plot_prefill_vs_cached, plot_throughput, save_svg
from radixlib.replay import hit_rate_curves
from radixlib.viz import draw_architecture, draw_lab, draw_pages, draw_v2_beside_radixlib
from radixlib.workloads import mooncake_prompts

FIGURES_DIR = Path(__file__).resolve().parent
DATA_DIR = FIGURES_DIR / "data"             # benchmark results recorded with --record
EXAMPLE_STEPS = [("insert", "you are a helpful bot . what is a cache"),
                 ("insert", "you are a helpful bot . explain paging"),
                 ("insert", "you are a terse bot . hi"),
                 ("match", "you are a helpful bot . what is a tree"),
                 ("lock", None)]
CAPACITIES = (0.05, 0.10, 0.25, 0.50)
EVICTIONS = ("lru", "lfu", "fifo", "mru", "slru")
TOKENS_PER_BLOCK = PAGE_SIZE = 16


def example_lab() -> CacheLab:
    """The lab after ``EXAMPLE_STEPS`` (page_size 1, 32 pages, LRU)."""
    lab = CacheLab(LabConfig(num_pages=32, page_size=1, eviction="lru"))
    for action, arg in EXAMPLE_STEPS:
        lab.step(action, arg)
    return lab


def mooncake_curves() -> dict[str, list[tuple[float, float]]]:
    """Hit rate against capacity on the whole Mooncake trace, 16 tokens per block, page_size 16."""
    return hit_rate_curves(mooncake_prompts(TOKENS_PER_BLOCK), PAGE_SIZE, CAPACITIES, EVICTIONS)


def build(out: Path = FIGURES_DIR) -> list[Path]:
    """Write every figure into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    lab = example_lab()
    prefill = json.loads((DATA_DIR / "prefill_reuse.json").read_text())
    engine = json.loads((DATA_DIR / "engine.json").read_text())
    graphs = {"radix_tree.svg": draw_lab(lab), "kv_pages.svg": draw_pages(lab.cache),
              "architecture.svg": draw_architecture(), "v2_beside_radixlib.svg": draw_v2_beside_radixlib()}
    plots = {"hit_rate_vs_capacity.svg": plot_hit_rate(mooncake_curves(),
                                                       "Mooncake synthetic trace: hit rate vs capacity"),
             "prefill_vs_cached.svg": plot_prefill_vs_cached(
                 prefill["cached"], prefill["ms"], prefill["ideal_ms"],
                 f"Prefill of {prefill['prompt_len']} tokens vs tokens cached ({prefill['model']})"),
             "engine_throughput.svg": plot_throughput(
                 engine["rates"], f"Engine beside transformers ({engine['model']}), median and range "
                                  f"of {engine['rounds']} rounds", engine["spread"])}
    for name, graph in graphs.items():
        (out / name).write_text(graph.pipe(format="svg", encoding="utf-8"))
    (out / "architecture.png").write_bytes(draw_architecture().pipe(format="png"))
    for name, fig in plots.items():
        save_svg(fig, out / name)
    return [out / name for name in [*graphs, "architecture.png", *plots]]


if __name__ == "__main__":
    for path in build(Path(sys.argv[1]) if len(sys.argv) > 1 else FIGURES_DIR):
        print(path.relative_to(path.parent.parent))
