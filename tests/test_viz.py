"""draw_tree / draw_pages on a known state: node count, labels, colours; plots; show_source."""
from __future__ import annotations

import base64
import re

import pytest

from radixlib import PageAllocator, RadixCache
from radixlib.lab import CacheLab, LabConfig, WordTokenizer
from radixlib.plots import (
    TITLE_WIDTH,
    plot_cached_vs_computed,
    plot_hit_rate,
    plot_occupancy,
    plot_prefill_vs_cached,
    plot_throughput,
)
from radixlib.replay import belady, replay
from radixlib.router import Router
from radixlib.viz import (
    EVICTABLE,
    FREE,
    LOCKED,
    MATCHED,
    REQUEST,
    VICTIM,
    draw_lab_steps,
    draw_pages,
    draw_tree,
    page_owners,
)


def serve(cache: RadixCache, tokens: list[int]) -> None:
    Router(cache).serve(tokens)


@pytest.fixture
def known():
    """root ── #2 [1 2 3 4] ─┬─ #1 [5 6]  (locked through a match)
                             └─ #3 [9 9]  (the only evictable leaf: next victim)"""
    cache = RadixCache(PageAllocator(num_pages=16, page_size=2))
    serve(cache, [1, 2, 3, 4, 5, 6])
    serve(cache, [1, 2, 3, 4, 9, 9, 9])
    match = cache.match_prefix([1, 2, 3, 4, 5, 6])
    cache.lock(match.node)
    return cache, match


def nodes_of(graph) -> dict[str, str]:
    """graphviz body lines that declare a node: name -> attribute text."""
    found = {}
    for line in graph.body:
        m = re.match(r"\s*(\w+) \[(.*)\]\s*$", line, re.S)
        if m and "->" not in line:
            found[m.group(1)] = m.group(2)
    return found


def test_draw_tree_one_box_per_node_with_stable_names(known):
    cache, match = known
    boxes = nodes_of(draw_tree(cache, highlight=match, legend=False))
    assert sorted(boxes) == ["n0", "n1", "n2", "n3"]
    assert draw_tree(cache, highlight=match).source == draw_tree(cache, highlight=match).source


def test_draw_tree_labels_say_text_length_pages_lock_time_hits(known):
    cache, _ = known
    label = nodes_of(draw_tree(cache))["n2"]
    for part in ['#2  \\"1 2 3 4\\"', "len=4 pages=[0, 1]", "lock=1", "t=9", "hits=2"]:
        assert part in label


def test_draw_tree_colours_by_role(known):
    cache, match = known
    boxes = nodes_of(draw_tree(cache, highlight=match))
    assert f'fillcolor="{LOCKED}"' in boxes["n1"] and f'fillcolor="{LOCKED}"' in boxes["n2"]
    assert f'fillcolor="{VICTIM}"' in boxes["n3"]
    assert f'color="{MATCHED}"' in boxes["n1"] and f'color="{MATCHED}"' not in boxes["n3"]
    assert "legend" in boxes


def test_evictable_leaf_that_is_not_next_victim_is_orange(known):
    cache, match = known
    serve(cache, [7, 7])                              # newer leaf: evictable, but LRU picks #3 first
    boxes = nodes_of(draw_tree(cache))
    assert f'fillcolor="{VICTIM}"' in boxes["n3"] and f'fillcolor="{EVICTABLE}"' in boxes["n4"]


def test_draw_tree_decodes_with_a_tokenizer():
    tok = WordTokenizer()
    cache = RadixCache(PageAllocator(num_pages=8, page_size=1))
    serve(cache, tok.encode("the cat sat"))
    assert '\\"the cat sat\\"' in nodes_of(draw_tree(cache, tokenizer=tok))["n1"]
    assert tok.decode(tok.encode("sat the")) == "sat the"


def test_draw_lab_steps_draws_the_tree_after_each_step_and_leaves_the_lab_where_it_was():
    lab = CacheLab(LabConfig(num_pages=12, page_size=1))
    for action, arg in [("insert", "the cat sat"), ("insert", "the cat ate"), ("match", "the cat"), ("evict", 1)]:
        lab.step(action, arg)
    lab.goto(2)
    steps = draw_lab_steps(lab)
    assert lab.position == 2
    assert steps.steps == ('1. insert "the cat sat"', '2. insert "the cat ate"', '3. match "the cat"', "4. evict 1")
    assert steps.messages == tuple(frame.message for frame in lab.history[1:])
    boxes = [nodes_of(drawing) for drawing in steps.drawings]
    # 1: one leaf; 2: "the cat" split off, new leaf "ate"; 3: match, no split; 4: the LRU leaf "sat" evicted
    assert [sorted(b.keys() - {"legend"}) for b in boxes] == [["n0", "n1"], ["n0", "n1", "n2", "n3"],
                                                              ["n0", "n1", "n2", "n3"], ["n0", "n2", "n3"]]
    assert [f'color="{MATCHED}"' in b.get("n2", "") for b in boxes] == [False, False, True, True]
    assert ["legend" in b for b in boxes] == [False, False, False, True]          # the key once, at the end


def test_lab_steps_show_as_captioned_svgs_in_html_and_one_line_a_step_as_text():
    lab = CacheLab(LabConfig(num_pages=12, page_size=1))
    lab.step("insert", "a <b> & c")
    lab.step("match", "a")
    steps = draw_lab_steps(lab)
    html = steps._repr_html_()
    images = re.findall(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == html.count("<figcaption") == 2 and "<svg" not in html   # JupyterLab strips inline SVG
    assert "<title>n1</title>" in base64.b64decode(images[0]).decode() == steps.drawings[0].pipe("svg").decode()
    assert "&lt;b&gt; &amp; c" in html and "<b> &" not in html                    # prompts are escaped
    assert repr(steps).splitlines() == [f"{s}: {m}" for s, m in zip(steps.steps, steps.messages)]


def test_draw_tree_renders_svg(known):
    cache, match = known
    svg = draw_tree(cache, highlight=match).pipe(format="svg", encoding="utf-8")
    assert svg.count('class="node"') == 5             # root, three nodes, legend


def test_page_owners_and_grid(known):
    cache, _ = known
    held = cache.allocator.alloc(1)
    owners = page_owners(cache)
    tree = {p: n for n in cache.nodes() for p in n.pages}
    assert [o.kind for o in owners] == ["tree" if p in tree else "request" if p in held else "free"
                                        for p in range(cache.allocator.num_pages)]
    assert all(owners[p].node is node for p, node in tree.items()) and len(tree) == 4
    source = draw_pages(cache).source
    assert source.count(f'BGCOLOR="{FREE}"') == cache.allocator.available + 1   # + legend swatch
    assert source.count(f'BGCOLOR="{REQUEST}"') == 1 + 1


def test_plots_have_title_labels_and_legend():
    prompts = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 9, 9, 9, 9], [1, 2, 3, 4, 5, 6, 7, 8]]
    runs = [replay(prompts, 4, 2, "lru"), belady(prompts, 4, 2)]
    figures = [plot_hit_rate({"lru": [(0.5, 0.2), (1.0, 0.4)], "belady": [(0.5, 0.3), (1.0, 0.4)]}, "t"),
               plot_occupancy(runs, "t"), plot_cached_vs_computed(runs[0], "t"),
               plot_prefill_vs_cached([0, 8], [10.0, 4.0], [10.0, 3.0], "t"),
               plot_throughput({"w1": {"a": 1.0, "b": 2.0}, "w2": {"a": 3.0, "b": 4.0}}, "t")]
    for fig in figures:
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_legend() is not None
        assert any(word in ax.get_xlabel() for word in ("(", "request", "tokens"))
        assert ax.get_ylabel()
    bars = figures[-1].axes[0].patches
    assert [b.get_width() for b in bars] == [1.0, 2.0, 3.0, 4.0]     # one bar per workload x method


def test_throughput_spread_draws_each_bars_range():
    rates, spread = {"w": {"a": 2.0, "b": 5.0}}, {"w": {"a": (1.5, 3.0), "b": (4.0, 5.5)}}
    ax = plot_throughput(rates, "t", spread).axes[0]
    (segments,) = [c.get_segments() for c in ax.collections]              # the error bars
    assert [(s[0][0], s[1][0]) for s in segments] == [(1.5, 3.0), (4.0, 5.5)]
    assert not plot_throughput(rates, "t").axes[0].collections


def test_long_titles_are_wrapped_to_fit():
    title = "Prefill of 1024 tokens vs tokens cached (Llama 39.6M, fp32, 2 CPU threads)"
    lines = plot_prefill_vs_cached([0, 8], [10.0, 4.0], [10.0, 3.0], title).axes[0].get_title().split("\n")
    assert len(lines) == 2 and max(map(len, lines)) <= TITLE_WIDTH and " ".join(lines) == title


def test_architecture_draws_every_component_and_the_numbered_request_path():
    from radixlib.viz import ARCHITECTURE, COMPONENTS, PAGE_TO_SLOTS, PLANES, draw_architecture
    source = draw_architecture().source
    assert all(f"{name}\n{module}" in source for name, (module, _) in COMPONENTS.items())
    steps = [label.split()[0] for _, _, label in ARCHITECTURE if label[0].isdigit()]
    assert steps == ["1", "2", "3", "4", "5", "6"] and source.count(" -> ") == len(ARCHITECTURE) + 1
    assert f"{PAGE_TO_SLOTS[0]} -> {PAGE_TO_SLOTS[1]}" in source              # page ids index the pool
    assert sorted(n for names in PLANES.values() for n in names) == sorted(COMPONENTS)
