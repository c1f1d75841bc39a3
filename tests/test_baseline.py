"""The v2-shaped baseline (chapter 08): the same tokens and decisions as radixlib, and exactly
the three shortfalls: full prefills, per-request K/V, a page manager that notices nothing."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import LlamaConfig

from radixlib import PageAllocator, RadixCache
from radixlib.baseline import BaselineEngine, FullForwardExecutor, LoosePageManager, LooseRouter
from radixlib.engine import Engine
from radixlib.executor import kv_shape
from radixlib.forward import ForwardRequest
from radixlib.models import seeded_model
from radixlib.radix_cache import InvariantError
from radixlib.request import SamplingParams
from radixlib.router import Router
from radixlib.shortfalls import Audit, audit, audit_pages, leak_study, side_by_side
from radixlib.viz import FIX, SHORTFALL, draw_v2_beside_radixlib

CONFIG = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=128, vocab_size=97, max_position_embeddings=256,
                     initializer_range=0.2, bos_token_id=None, eos_token_id=None, pad_token_id=None)
SHARED = [5, 17, 23, 42, 8, 8, 61, 3, 77, 12, 30, 9, 14, 55, 2, 70, 21, 33]
PROMPTS = [SHARED + [1, 2, 3], SHARED + [4, 5], SHARED[:7] + [90, 91, 92, 93], [11, 12, 13]]
NEW = 12


def model():
    return seeded_model(CONFIG, seed=1)


def bytes_per_token() -> int:
    layers, heads, dim = kv_shape(CONFIG)
    return 2 * layers * heads * dim * 4                  # K and V, float32


@pytest.fixture(scope="module")
def reference() -> list[list[int]]:
    """``model.generate`` greedy, one prompt at a time."""
    m = model()
    return [m.generate(torch.tensor([p]), max_new_tokens=NEW, do_sample=False, min_new_tokens=NEW)[0, len(p):].tolist()
            for p in PROMPTS]


@pytest.mark.parametrize("options", [
    dict(num_pages=64, page_size=4),
    dict(num_pages=64, page_size=4, enable_cache=False),
    dict(num_pages=256, page_size=1, schedule="lpm"),
    dict(num_pages=64, page_size=4, chunk_size=8),
    dict(num_pages=44, page_size=1, new_token_ratio=0.05),          # a small pool: retractions (page size 1:
], ids=["cache", "no-cache", "lpm-ps1", "chunked", "retract"])      # no partial page, so nothing leaks)
def test_same_tokens_and_decisions_as_radixlib_and_model_generate(reference, options):
    ours, baseline = Engine(model(), **options), BaselineEngine(model(), **options)
    mine = ours.generate(PROMPTS, SamplingParams(max_new_tokens=NEW))
    theirs = baseline.generate(PROMPTS, SamplingParams(max_new_tokens=NEW))
    assert [r.tokens for r in theirs] == [r.tokens for r in mine] == reference
    assert [r.cached_tokens for r in theirs] == [r.cached_tokens for r in mine]
    assert baseline.scheduler.retractions == ours.scheduler.retractions
    if options.get("new_token_ratio"):
        assert baseline.scheduler.retractions > 0


def test_the_model_computes_every_prompt_token_the_router_called_cached():
    """Shortfall 1: the same cache hits on paper; the hook sees every prompt token computed."""
    turns = [lambda outputs: PROMPTS, lambda outputs: PROMPTS]          # the second turn hits the first
    ours, base = side_by_side((model(), model()), turns, new_tokens=4, num_pages=64, page_size=4, max_prefill_tokens=64)
    assert ours.outputs == base.outputs and ours.cached == base.cached and sum(base.cached) > 0
    assert base.claimed == ours.claimed == ours.computed["prefill"] < base.computed["prefill"]
    assert base.computed["prefill"] == 2 * sum(map(len, PROMPTS))        # each turn, every token
    assert base.computed["decode"] == ours.computed["decode"] == 2 * len(PROMPTS) * 3


def test_decode_reads_per_request_caches_that_hold_a_shared_prefix_once_each():
    """Shortfall 2: K/V live in one DynamicCache per request; a cache leaves with its request."""
    executor = FullForwardExecutor(model())
    a, b = PROMPTS[0], PROMPTS[1]
    next_a, next_b = executor.prefill([ForwardRequest(a, 0, []), ForwardRequest(b, 0, [], rid=1)])
    assert executor.kv_bytes == (len(a) + len(b)) * bytes_per_token()     # SHARED stored twice
    executor.decode([ForwardRequest([next_a], len(a), [], rid=0), ForwardRequest([next_b], len(b), [], rid=1)])
    executor.decode([ForwardRequest([next_a], len(a) + 1, [], rid=0)])    # request 1 finished
    assert set(executor.caches) == {0} and executor.kv_bytes == (len(a) + 2) * bytes_per_token()


def test_a_forward_out_of_step_with_its_cache_is_refused():
    executor = FullForwardExecutor(model())
    with pytest.raises(ValueError, match="cache holds 0 tokens, but the forward starts at position 18"):
        executor.prefill([ForwardRequest(PROMPTS[0][18:], 18, [])])       # a suffix: the v2 executor needs it all
    assert executor.caches == {}


def test_the_baseline_needs_a_model_or_an_executor():
    with pytest.raises(ValueError, match="needs a model"):
        BaselineEngine(num_pages=8, page_size=4)


def test_the_loose_manager_takes_a_page_back_twice_and_hands_it_out_twice():
    loose, strict = LoosePageManager(4), PageAllocator(4)
    for manager in (loose, strict):
        manager.free(manager.alloc(1))
    loose.free([0])                                                       # a double free: accepted
    assert loose.available == 5 > loose.num_pages and loose.alloc(2) == [0, 0]
    with pytest.raises(ValueError, match="double free or unknown page"):
        strict.free([0])
    assert strict.available == 4


@pytest.mark.parametrize("page_size, leaks", [(1, 0), (4, 3)])
def test_the_loose_router_leaks_a_partial_last_page_and_only_the_audit_sees_it(page_size, leaks):
    """Prompts of 21, 20, 11 and 3 tokens: at page size 4, three end inside a page."""
    loose = LooseRouter(RadixCache(LoosePageManager(64, page_size)))
    for prompt in PROMPTS:
        loose.serve(prompt)                                               # no error, no warning
    free = loose.allocator.free_list()
    tree = [p for node in loose.cache.nodes() for p in node.pages]
    assert len(audit_pages(64, free, tree, []).leaked) == leaks
    assert loose.allocator.available + loose.cache.total_size // page_size == 64 - leaks
    caught = LooseRouter(RadixCache(PageAllocator(64, page_size)))       # the slip over radixlib's allocator
    for prompt in PROMPTS:
        caught.serve(prompt)
    if leaks:
        with pytest.raises(InvariantError, match=r"allocated but owned by nobody \(leak\)"):
            caught.check_invariants([])
    router = Router(RadixCache(PageAllocator(64, page_size)))             # radixlib's own router
    for prompt in PROMPTS:
        router.serve(prompt)
    router.check_invariants([])


@given(st.lists(st.integers(0, 2), min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_audit_pages_counts_every_page_by_its_owners(owner_counts, rng):
    lists = ([], [], [])
    for page, count in enumerate(owner_counts):
        for _ in range(count):
            rng.choice(lists).append(page)
    found = audit_pages(len(owner_counts), *lists)
    assert found == Audit([p for p, n in enumerate(owner_counts) if n == 0],
                          [p for p, n in enumerate(owner_counts) if n == 2])


def test_the_audit_of_each_engine_after_serving():
    ours, baseline = Engine(model(), num_pages=64, page_size=4), BaselineEngine(model(), num_pages=64, page_size=4)
    for engine in (ours, baseline):
        engine.generate(PROMPTS, SamplingParams(max_new_tokens=NEW))
    assert audit(ours) == Audit([], [])
    kv_lens = [len(p) + NEW - 1 for p in PROMPTS]                        # 32, 31, 22, 14
    assert len(audit(baseline).leaked) == sum(n % 4 != 0 for n in kv_lens) == 3
    assert audit(baseline).owned_twice == []


def test_the_leak_fills_the_pool_until_the_baseline_stops_serving():
    prompts = [[7] * 40 + [8 + i] * 9 for i in range(40)]                 # 49 tokens + 3 new: 51 with K/V
    runs = leak_study(prompts, num_pages=16, page_size=8, new_tokens=3)
    assert runs["radixlib"].error is None and runs["radixlib"].leaked == [0] * 40
    base = runs["baseline"]
    assert "ran nothing twice" in base.error and 0 < len(base.leaked) < 40
    assert base.leaked == list(range(1, len(base.leaked) + 1))            # one page per request
    assert base.usable[-1] < runs["radixlib"].usable[-1]


def test_the_companion_drawing_marks_the_three_differences_on_each_side():
    source = draw_v2_beside_radixlib().source
    assert [source.count(number) for number in "①②③"] == [2, 4, 2]    # per side: 1, 2 (write, read), 1
    assert source.count(SHORTFALL) == source.count(FIX) == 8      # 4 marked edges a side: line and label
