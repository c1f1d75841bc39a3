"""Chapter 08 · What control-plane faithful leaves on the table: audit a pool, find the leak,
derive the pool's peak."""
from __future__ import annotations

import random

from ..cost_model import CostModel
from ..engine import Engine
from ..pages import PageAllocator, page_aligned, pages_needed
from ..radix_cache import RadixCache
from ..request import Request, SamplingParams
from ..router import Router
from ..shortfalls import SETTINGS, audit_pages
from ..workloads import few_shot
from . import Exercise


def _audit_cases() -> list[tuple]:
    """Pools of up to 24 pages, each page with 0, 1 or 2 owners spread over free/tree/held."""
    rng = random.Random(8)
    cases = [(4, [0], [1], [2]), (4, [0, 0], [1, 2], [3]), (3, [], [0, 1], [1, 2]), (2, [1], [], [])]
    for _ in range(200):
        num_pages, lists = rng.randint(1, 24), ([], [], [])
        for page in range(num_pages):
            for _ in range(rng.choices([0, 1, 2], weights=[1, 8, 1])[0]):
                rng.choice(lists).append(page)
        for entries in lists:
            rng.shuffle(entries)
        cases.append((num_pages, *lists))
    return cases


def _pages_to_free(page_size: int, kv_len: int, pages: list[int], prefix_len: int, present: int) -> list[int]:
    """The pages radixlib's ``Router.cache_finished`` gives back, sorted, for a request whose
    K/V of ``kv_len`` tokens sit in ``pages``, that borrowed its first ``prefix_len`` tokens
    from the tree, while the tree now holds its first ``present`` tokens (the ones past
    ``prefix_len`` in other pages: another request cached them meanwhile)."""
    others = (present - prefix_len) // page_size
    allocator = PageAllocator(max(pages) + 1 + others, page_size)
    allocator.alloc(allocator.num_pages)
    cache = RadixCache(allocator)
    tokens = list(range(kv_len + 1))                 # the last sampled token has no K/V yet
    other_pages = list(range(max(pages) + 1, allocator.num_pages))
    if present:
        cache.insert(tokens[:present], pages[: prefix_len // page_size] + other_pages)
    allocator.free(sorted(set(range(max(pages) + 1)) - set(pages)))     # ids nobody uses
    req = Request(0, tokens)
    req.node = cache.match_prefix(tokens[:prefix_len]).node if prefix_len else cache.root
    cache.lock(req.node)
    req.pages, req.prefix_len, req.kv_len = list(pages), prefix_len, kv_len
    Router(cache).cache_finished(req)
    return sorted(p for p in pages if allocator.is_free(p))


def _finish_cases() -> list[tuple]:
    rng = random.Random(9)
    cases = [(16, 815, list(range(51)), 768, 768), (4, 10, [7, 3, 5], 4, 8), (1, 5, [4, 0, 2, 1, 3], 2, 3)]
    for _ in range(200):
        page_size = rng.choice([1, 2, 4, 16])
        kv_len = rng.randint(1, 80)
        count = pages_needed(kv_len, page_size)
        pages = rng.sample(range(count + 8), count)
        present = page_size * rng.randint(0, page_aligned(kv_len, page_size) // page_size)
        prefix_len = page_size * rng.randint(0, present // page_size)
        cases.append((page_size, kv_len, pages, prefix_len, present))
    return cases


PEAK_PAGE_SIZE, PEAK_NEW_TOKENS = 32, 33      # not the chapter's 16 and 16: the reader derives, not copies


def _peak_pool_pages() -> int:
    """Pages radixlib's pool holds at its peak while serving chapter 08's few-shot workload with
    pages of 32 tokens and 33 new tokens per request (the same control plane, on the model-free
    ``CostModel``; ``stats.occupancy`` is read after each forward)."""
    engine = Engine(executor=CostModel(), **{**SETTINGS, "page_size": PEAK_PAGE_SIZE})
    engine.generate(few_shot(num_requests=32, num_examples=8, example_len=96, question_len=32),
                    SamplingParams(max_new_tokens=PEAK_NEW_TOKENS))
    return max(tree + held for _, tree, held in engine.stats.occupancy)


EXERCISES = [
    Exercise("audit_pages", "implement", audit_pages, _audit_cases,
             hint="count each page's entries in free + tree + held: 0 entries -> leaked, 2 or more -> owned "
                  "twice; return (sorted leaked, sorted owned twice)",
             source="radixlib.shortfalls.audit_pages"),
    Exercise("pages_to_free", "implement", _pages_to_free, _finish_cases,
             hint="a finishing request gives back every page of its own that the tree does not keep after the "
                  "insert: which of its pages hold tokens the tree already had, and which page can no node take?",
             source="radixlib.router.Router.cache_finished (the pages it frees)"),
    Exercise("peak_pool_pages", "compute", _peak_pool_pages, lambda: [()],
             hint="the 768 shared tokens once, in whole pages of 32; then per request its 32-token question and "
                  "the decoded tokens that have K/V (the last one sampled has none yet), in whole pages",
             source="the peak of Engine(executor=CostModel()) on the few-shot workload, pages of 32, 33 new tokens"),
]
