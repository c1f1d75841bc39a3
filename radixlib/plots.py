"""Plots for the chapters and the README: matplotlib ``Figure`` objects.

Every plot goes through ``figure``: one size, a title wrapped to fit the axes, a grid,
and labelled axes with units. A ``Figure`` renders itself in a notebook; ``save_svg``
writes it byte-identically from run to run.
"""
from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.transforms import Bbox

from .hicache import HiReplay
from .replay import Replay
from .viz import EVICTABLE, MATCHED, REQUEST, VICTIM

TITLE_WIDTH = 58            # characters per title line at the default figure width


def figure(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (6.4, 3.8)) -> tuple[Figure, Axes]:
    """A figure with one axes: its title wrapped to fit, both axes labelled, a light grid."""
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.subplots()
    ax.set(title="\n".join(textwrap.wrap(title, TITLE_WIDTH)), xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def save_svg(fig: Figure, path: Path) -> None:
    """An SVG that is byte-identical from run to run (fixed hash salt, no date)."""
    with matplotlib.rc_context({"svg.hashsalt": "radixlib"}):
        fig.savefig(path, format="svg", metadata={"Date": None})


def plot_hit_rate(curves: dict[str, Sequence[tuple[float, float]]], title: str) -> Figure:
    """Hit rate (%) against capacity (% of the distinct pages) for several eviction policies.

    ``curves`` maps a policy name to ``(capacity fraction, hit rate)`` points; ``"belady"``
    is drawn as a dashed black ceiling. Markers differ so that coinciding lines stay visible.
    """
    fig, ax = figure(title, "cache capacity (% of distinct pages)", "hit rate (% of prompt tokens)")
    for (name, points), marker in zip(curves.items(), "os^vDPX*"):
        xs, ys = zip(*points)
        style = {"color": "black", "linestyle": "--"} if name == "belady" else {"alpha": 0.8}
        ax.plot([100 * x for x in xs], [100 * y for y in ys], marker=marker, label=name, **style)
    ax.set_ylim(0, 100)
    ax.legend(title="eviction policy", fontsize=8)
    return fig


def plot_occupancy(replays: Iterable[Replay], title: str) -> Figure:
    """Pages held by the cache after each request, one line per replay."""
    fig, ax = figure(title, "request (arrival order)", "pool occupancy (pages)")
    for r in replays:
        ax.plot(range(1, len(r.occupancy) + 1), r.occupancy, label=f"{r.eviction}, {r.num_pages} pages")
    ax.legend(fontsize=8)
    return fig


def plot_cached_vs_computed(replay: Replay, title: str, start: int = 0, count: int = 60,
                            scale: int = 1) -> Figure:
    """Stacked bars of cached and computed prompt tokens for requests ``start+1 .. start+count``.

    ``scale``: real tokens per replayed token (32 for Mooncake blocks replayed as 16 tokens).
    """
    fig, ax = figure(title, "request (arrival order)", "prompt tokens")
    cached = [scale * c for c in replay.prefix_lens[start: start + count]]
    computed = [scale * p - c for p, c in zip(replay.prompt_lens[start: start + count], cached)]
    xs = range(start + 1, start + len(cached) + 1)
    ax.bar(xs, cached, color=MATCHED, label="cached (read from the pool)")
    ax.bar(xs, computed, bottom=cached, color=VICTIM, label="computed (prefill)")
    ax.legend(fontsize=8)
    return fig


def plot_prefill_vs_cached(cached: Sequence[int], measured_ms: Sequence[float],
                           ideal_ms: Sequence[float], title: str) -> Figure:
    """Prefill time against the number of prompt tokens already in the pool, beside the ideal."""
    fig, ax = figure(title, "cached prompt tokens", "prefill time (ms)")
    ax.plot(cached, measured_ms, "o-", label="measured (median)")
    ax.plot(cached, ideal_ms, "k--", label="ideal: full time x FLOPs ratio")
    ax.set_ylim(0, None)
    ax.legend(fontsize=8)
    return fig


def plot_throughput(rates: dict[str, dict[str, float]], title: str,
                    spread: dict[str, dict[str, Sequence[float]]] | None = None) -> Figure:
    """New tokens per second per method (bars), one group per workload; ``spread[workload][method]``
    (lowest, highest), when given, draws each bar's range over the runs."""
    fig, ax = figure(title, "new tokens per second", "method")
    methods = list(next(iter(rates.values())))
    width = 0.8 / len(rates)
    for i, (workload, by_method) in enumerate(rates.items()):
        medians = [by_method[m] for m in methods]
        ranges = None if spread is None else [[med - spread[workload][m][0] for m, med in zip(methods, medians)],
                                              [spread[workload][m][1] - med for m, med in zip(methods, medians)]]
        ax.barh([m + (i - (len(rates) - 1) / 2) * width for m in range(len(methods))], medians,
                height=width, label=workload, xerr=ranges, capsize=2 if ranges else 0)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    ax.invert_yaxis()
    ax.grid(False, axis="y")
    ax.legend(title="workload", fontsize=8)
    return fig


def plot_cluster_hit_rates(curves: dict[str, Sequence[tuple[int, float]]], title: str) -> Figure:
    """Hit rate (%) against the number of workers, one line per routing policy.

    ``curves`` maps a policy to ``(workers, hit rate)`` points; ``"one big worker"`` (the
    bound: one worker with every worker's memory) is drawn as a dashed black line.
    """
    fig, ax = figure(title, "workers", "hit rate (% of prompt tokens)")
    for (name, points), marker in zip(curves.items(), "os^vDPX*"):
        xs, ys = zip(*points)
        style = {"color": "black", "linestyle": "--"} if name == "one big worker" else {"alpha": 0.8}
        ax.plot(xs, [100 * y for y in ys], marker=marker, label=name, **style)
    ax.set_xticks(sorted({x for points in curves.values() for x, _ in points}))
    ax.set_ylim(0, 100)
    ax.legend(title="routing", fontsize=8)
    return fig


def plot_tradeoff(groups: dict[str, Sequence[tuple[str, float, float]]], title: str,
                  bound: float | None = None, marked: tuple[str, float, float] | None = None) -> Figure:
    """Hit rate (%) against load imbalance (max/mean), one point per router setting.

    ``groups`` maps a family of settings to ``(label, imbalance, hit rate)`` points, drawn
    with one marker and connected in the given order. Points of a family that (nearly) coincide
    share one label ("0.1, 0.3"); each label goes where it overlaps no label before it
    (``_label_apart``). ``bound`` (a hit rate) is a dashed line; ``marked`` a starred point.
    """
    fig, ax = figure(title, "load imbalance (max / mean requests in flight)", "hit rate (% of prompt tokens)")
    for (name, points), marker in zip(groups.items(), "os^vDPX*"):
        _, xs, ys = zip(*points)
        ax.plot(xs, [100 * y for y in ys], marker=marker, alpha=0.8, label=name)
    if marked is not None:
        label, x, y = marked
        ax.plot([x], [100 * y], "k*", markersize=12, label=label)
    if bound is not None:
        ax.axhline(100 * bound, color="black", linestyle="--", label="one big worker")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower right")
    fig.draw_without_rendering()                     # lay the axes out: pixel positions are final
    spots = [spot for points in groups.values()
             for spot in _merge_near(ax, [(label, x, 100 * y) for label, x, y in points])]
    markers = [(x, 100 * y, 4) for points in groups.values() for _, x, y in points]
    _label_apart(ax, spots, markers + ([(marked[1], 100 * marked[2], 7)] if marked else []))
    return fig


LABEL_OFFSETS = ((4, 3), (4, -10), (-4, 3), (-4, -10), (4, 12), (-4, 12), (4, -19), (-4, -19),
                 (4, 21), (-4, 21), (4, -28), (-4, -28))                    # in points, nearest first
NEAR_PIXELS = 8             # points closer than this on screen share one label


def _merge_near(ax: Axes, points: Sequence[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """``(label, x, y)`` points (data coordinates), each one within ``NEAR_PIXELS`` of an
    earlier kept point merged into that point's label ("0.1, 0.3")."""
    kept: list[list] = []                                  # [label, x, y, pixel x, pixel y]
    for label, x, y in points:
        px, py = ax.transData.transform((x, y))
        near = next((k for k in kept if abs(k[3] - px) < NEAR_PIXELS and abs(k[4] - py) < NEAR_PIXELS), None)
        if near is None:
            kept.append([label, x, y, px, py])
        else:
            near[0] = f"{near[0]}, {label}"
    return [(label, x, y) for label, x, y, _, _ in kept]


def _label_apart(ax: Axes, points: Sequence[tuple[str, float, float]],
                 markers: Sequence[tuple[float, float, float]]) -> None:
    """Label each ``(label, x, y)`` point at the first of ``LABEL_OFFSETS`` where its text stays
    inside the axes and overlaps no label placed before it, no marker (``(x, y, radius in
    pixels)``) and not the legend; at the first offset when none is free."""
    frame = ax.get_window_extent()
    taken = [Bbox.from_bounds(px - r, py - r, 2 * r, 2 * r)
             for x, y, r in markers for px, py in [ax.transData.transform((x, y))]]
    taken += [ax.get_legend().get_window_extent()] if ax.get_legend() else []
    for label, x, y in points:
        for offset in LABEL_OFFSETS:
            note = _note(ax, label, (x, y), offset)
            box = note.get_window_extent()
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if inside and not any(box.overlaps(other) for other in taken):
                break
            note.remove()
        else:                                       # no free place: the nearest one
            box = _note(ax, label, (x, y), LABEL_OFFSETS[0]).get_window_extent()
        taken.append(box)


def _note(ax: Axes, label: str, xy: tuple[float, float], offset: tuple[int, int]):
    """``label`` at ``offset`` points from ``xy``, on the side the offset points to."""
    return ax.annotate(label, xy, textcoords="offset points", xytext=offset, fontsize=7,
                       ha="left" if offset[0] > 0 else "right")


def plot_designs_hit_rate(capacities: Sequence[float], rates: dict[str, Sequence[float]], title: str) -> Figure:
    """Hit rate (%) against capacity (% of the distinct blocks), one line per cache design (chapter 09)."""
    fig, ax = figure(title, "cache capacity (% of distinct blocks)", "hit rate (% of prompt tokens)")
    for (name, ys), marker, style in zip(rates.items(), "os^vD", ("-", "--", ":", "-.", "-")):
        ax.plot([100 * c for c in capacities], [100 * y for y in ys], marker=marker, linestyle=style, label=name)
    ax.set_ylim(0, 100)
    ax.legend(title="cache", fontsize=8)
    return fig


def plot_designs_gap(capacities: Sequence[float], gaps: dict[str, Sequence[float]], title: str) -> Figure:
    """The difference of two designs' hit rates, in points, against capacity: one line per pair (chapter 09)."""
    fig, ax = figure(title, "cache capacity (% of distinct blocks)", "hit-rate difference (points)")
    ax.axhline(0, color="black", linewidth=0.8)
    for (name, ys), marker in zip(gaps.items(), "os^vD"):
        ax.plot([100 * c for c in capacities], [100 * y for y in ys], marker=marker, label=name)
    ax.legend(fontsize=8)
    return fig


def plot_staircase(shared: Sequence[int], hits: dict[str, Sequence[int]], title: str) -> Figure:
    """Tokens served from the cache against the tokens a prompt shares with a cached sequence."""
    fig, ax = figure(title, "tokens the prompt shares with the cached sequence", "tokens served from the cache")
    for (name, ys), style in zip(hits.items(), ("-", "--", ":", "-.")):
        ax.plot(shared, ys, linestyle=style, drawstyle="steps-post", linewidth=2, label=name)
    ax.legend(fontsize=8)
    return fig


def plot_lookup_cost(costs: dict, xlabel: str, title: str) -> Figure:
    """Microseconds per lookup (log-log) against ``xlabel``: ``costs[x][method]``, one line per method."""
    fig, ax = figure(title, xlabel, "microseconds per lookup")
    xs = sorted(costs, key=int)
    for name, marker in zip(costs[xs[0]], "os^vDP"):
        ax.plot([int(x) for x in xs], [costs[x][name] for x in xs], marker=marker, label=name)
    ax.set(xscale="log", yscale="log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")      # plain numbers (20, 100), not 2×10¹
    ax.set_xticks([int(x) for x in xs], [str(int(x)) for x in xs])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2, 5)))
    ax.yaxis.set_minor_formatter(plain)
    ax.legend(fontsize=8)
    return fig


def plot_orders(hit_rates: dict[str, float], optimum: float, title: str) -> Figure:
    """Hit rate (%) per schedule order as bars, the optimum as a dashed line (chapter 06b).

    The legend sits above the axes, where it cannot hide a bar, and the title above the legend.
    """
    fig, ax = figure(title, "schedule order", "hit rate (% of prompt tokens)")
    ax.set_title(ax.get_title(), pad=20)                       # points: room for the legend's row
    names = list(hit_rates)
    ax.bar(names, [100 * hit_rates[n] for n in names], color=MATCHED, label="measured")
    ax.axhline(100 * optimum, color="black", linestyle="--", label=f"optimum (Theorem 3.1): {optimum:.1%}")
    ax.set_ylim(0, 100)
    ax.grid(False, axis="x")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    return fig


def plot_pool_occupancy(occupancy: Sequence[tuple[int, int, int]], num_pages: int, title: str) -> Figure:
    """Pages cached in the tree and held by running requests after each forward step, stacked,
    under the pool's size (``occupancy``: the engine's ``(step, tree pages, request pages)``).
    Step k's counts are drawn from k to k + 1 (a step plot)."""
    fig, ax = figure(title, "forward step", "pages")
    steps, tree, held = zip(*occupancy, (occupancy[-1][0] + 1, *occupancy[-1][1:]))   # the last step's right edge
    ax.stackplot(steps, tree, held, labels=["cached in the tree", "held by running requests"],
                 colors=[EVICTABLE, REQUEST], step="post")
    ax.axhline(num_pages, color="black", linestyle=":", label="pool size")
    ax.set_ylim(0, num_pages * 1.3)                           # room above the pool line for the legend
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))     # steps and pages are counts
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    return fig


def plot_rolling_hit_rate(replays: Iterable[Replay], window: int, title: str) -> Figure:
    """Hit rate (%) over the last ``window`` requests, as the replay goes, one line per replay."""
    fig, ax = figure(title, "request (arrival order)", f"hit rate over the last {window} requests (%)")
    for r in replays:
        cached, prompt = _running_sums(r.prefix_lens), _running_sums(r.prompt_lens)
        xs = range(window, len(r.prefix_lens) + 1)
        ax.plot(xs, [100 * (cached[i] - cached[i - window]) / (prompt[i] - prompt[i - window]) for i in xs],
                label=f"{r.eviction}, {r.hit_rate:.1%} overall")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    return fig


def _running_sums(values: Sequence[int]) -> list[int]:
    """``[0, v0, v0 + v1, ...]``."""
    sums = [0]
    for v in values:
        sums.append(sums[-1] + v)
    return sums


def plot_computed_tokens(computed: dict[str, dict[str, int]], title: str) -> Figure:
    """Prompt tokens the model computed per workload (bars, one per engine), each bar labelled.

    ``computed[workload][engine]``: counted by a hook on the input embeddings (chapter 08).
    """
    fig, ax = figure(title, "prompt tokens the model computed", "workload")
    workloads = list(computed)
    engines = list(computed[workloads[0]])
    width = 0.8 / len(engines)
    for i, engine in enumerate(engines):
        ys = [w + (i - (len(engines) - 1) / 2) * width for w in range(len(workloads))]
        bars = ax.barh(ys, [computed[w][engine] for w in workloads], height=width, label=engine)
        ax.bar_label(bars, fmt="{:,.0f}", padding=3, fontsize=8)
    ax.set_yticks(range(len(workloads)), workloads)
    ax.invert_yaxis()
    ax.margins(x=0.15)
    ax.grid(False, axis="y")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_kv_held(traces: dict[str, Sequence[int]], title: str) -> Figure:
    """KV bytes held (MiB) after each forward of a run, one line per engine or count.

    A label ending in "(count)" is drawn dashed: what an allocator believes, not what memory holds.
    """
    fig, ax = figure(title, "forward (prefills and decode steps, in order)", "KV cache held (MiB)")
    for (name, trace), marker in zip(traces.items(), "os^v"):
        style = "--" if name.endswith("(count)") else "-"
        ax.plot(range(1, len(trace) + 1), [b / 2**20 for b in trace], style, marker=marker, markersize=4, label=name)
    ax.set_ylim(0, None)
    ax.legend(fontsize=8)
    return fig


def plot_leaks(runs: dict[str, tuple[Sequence[int], Sequence[int]]], pool_pages: int, title: str) -> Figure:
    """Pages leaked and pages still usable (free + evictable) after each request served.

    ``runs[engine] = (leaked, usable)``; a run that ends before the others is marked where it stopped.
    """
    fig, ax = figure(title, "requests served", "pages")
    longest = max(len(leaked) for leaked, _ in runs.values())
    for (name, (leaked, usable)), colour in zip(runs.items(), ("tab:blue", "tab:red", "tab:green")):
        xs = range(1, len(leaked) + 1)
        ax.plot(xs, usable, color=colour, label=f"{name}: usable (free + evictable)")
        ax.plot(xs, leaked, color=colour, linestyle="--", label=f"{name}: leaked")
        if len(leaked) < longest:
            ax.plot([len(leaked)], [usable[-1]], "x", color=colour, markersize=10, label=f"{name}: stops serving")
    ax.axhline(pool_pages, color="black", linewidth=0.8, linestyle=":", label="pool")
    ax.set_ylim(0, pool_pages * 1.08)
    ax.legend(fontsize=8, loc="center right")
    return fig


def plot_tiered_hit_rate(curves: dict[float, Sequence[tuple[float, float]]], unlimited: float,
                         title: str) -> Figure:
    """Hit rate (%) against device capacity (% of the distinct pages), one line per host pool
    (``curves`` maps host pages / device pages to points; 0 is the one-tier cache, drawn grey);
    the cache with room for everything is a dashed black line (chapter 11)."""
    fig, ax = figure(title, "device capacity (% of distinct pages)", "hit rate (% of prompt tokens)")
    for (ratio, points), marker in zip(sorted(curves.items()), "os^vDP"):
        xs, ys = zip(*points)
        style = ({"color": "black", "linestyle": ":", "markerfacecolor": "none", "markersize": 10, "zorder": 3}
                 if ratio == 0 else {"alpha": 0.85})       # hollow and on top: visible where a line covers it
        label = "one tier (no host pool)" if ratio == 0 else f"host pool {ratio:g}x the device"
        ax.plot([100 * x for x in xs], [100 * y for y in ys], marker=marker, label=label, **style)
    ax.axhline(100 * unlimited, color="black", linestyle="--", label=f"room for everything: {unlimited:.1%}")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_write_policies(replays: Sequence[HiReplay], title: str, scale: int = 1) -> Figure:
    """Hit rate (%) against tokens written to the host, one point per replay, marked by write
    policy and labelled with its host ratio; ``scale`` real tokens per replayed token."""
    fig, ax = figure(title, "tokens copied device -> host (millions)", "hit rate (% of prompt tokens)")
    policies = list(dict.fromkeys(r.write_policy for r in replays))
    groups = []                                              # per policy: (label, x, y) points
    for policy, marker in zip(policies, "os^"):
        points = [(f"{r.host_pages / r.num_pages:.0f}x", scale * r.written_tokens / 1e6, 100 * r.hit_rate)
                  for r in replays if r.write_policy == policy]
        ax.plot([x for _, x, _ in points], [y for _, _, y in points], marker=marker, linestyle="",
                markersize=8, label=policy)
        groups.append(points)
    ax.set_ylim(0, 100)
    ax.set_xlim(0, None)
    ax.legend(title="write policy (label: host ratio)", fontsize=8)
    fig.draw_without_rendering()                             # pixel positions are final
    _label_apart(ax, [spot for points in groups for spot in _merge_near(ax, points)],
                 [(x, y, 6) for points in groups for _, x, y in points])
    return fig


def plot_load_vs_recompute(breakeven: dict[str, float], links: dict[str, float], title: str) -> Figure:
    """Each model's breakeven host-link bandwidth (GB/s, log scale; a bar) beside the bandwidth of
    some links (vertical lines): over a link faster than its bar, loading a prefix back beats
    recomputing it (chapter 11)."""
    fig, ax = figure(title, "host link bandwidth (GB/s, log scale)", "")
    names = list(breakeven)
    ax.barh(names, [breakeven[n] / 1e9 for n in names], color=MATCHED, label="breakeven: load = recompute")
    styles = zip(("--", "-.", ":", "--", "-."), ("black", "dimgray", "tab:red", "tab:purple", "tab:brown"))
    for (link, bandwidth), (style, color) in zip(links.items(), styles):
        ax.axvline(bandwidth / 1e9, color=color, linestyle=style, linewidth=1.2, label=link)
    ax.set_xscale("log")
    ax.set_xlim(0.5, 3000)                                  # room for the legend right of the links
    ax.invert_yaxis()
    ax.grid(False, axis="y")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=7, loc="center right")
    return fig
