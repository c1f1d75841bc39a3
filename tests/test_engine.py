"""The engine end to end on a real (tiny, seeded) transformers model."""
import pytest
import torch
from transformers import LlamaConfig

from radixlib import executor as executor_module
from radixlib.engine import Engine
from radixlib.models import seeded_model
from radixlib.request import SamplingParams

CONFIG = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=128, vocab_size=97, max_position_embeddings=256,
                     initializer_range=0.2, bos_token_id=None, eos_token_id=None, pad_token_id=None)
SHARED = [5, 17, 23, 42, 8, 8, 61, 3, 77, 12, 30, 9, 14, 55, 2, 70, 21, 33]
PROMPTS = [SHARED + [1, 2, 3], SHARED + [4, 5], SHARED[:7] + [90, 91, 92, 93], [11, 12, 13]]
NEW = 12


@pytest.fixture(scope="module")
def reference() -> list[list[int]]:
    """``model.generate`` greedy, one prompt at a time, on a separate copy of the weights."""
    model = seeded_model(CONFIG, seed=1)
    out = []
    for p in PROMPTS:
        ids = model.generate(torch.tensor([p]), max_new_tokens=NEW, do_sample=False, min_new_tokens=NEW)
        out.append(ids[0, len(p):].tolist())
    return out


def engine(**options) -> Engine:
    return Engine(seeded_model(CONFIG, seed=1), **options)


@pytest.mark.parametrize("options", [
    dict(num_pages=64, page_size=4, enable_cache=True),
    dict(num_pages=64, page_size=4, enable_cache=False),
    dict(num_pages=256, page_size=1, schedule="lpm"),
    dict(num_pages=64, page_size=4, chunk_size=8),
    dict(num_pages=11, page_size=4, new_token_ratio=0.05),          # tiny pool: retractions
], ids=["cache", "no-cache", "lpm-ps1", "chunked", "retract"])
def test_greedy_output_equals_model_generate(reference, options):
    eng = engine(**options)
    results = eng.generate(PROMPTS, SamplingParams(max_new_tokens=NEW))
    assert [r.tokens for r in results] == reference
    eng.check_invariants()
    if options.get("new_token_ratio"):
        assert eng.stats.retractions == eng.scheduler.retractions > 0
        assert eng.stats.evicted_tokens > 0             # a 14-page pool must evict to serve them all
    if options.get("enable_cache", True):
        again = eng.generate(PROMPTS, SamplingParams(max_new_tokens=NEW))
        assert [r.tokens for r in again] == reference
        assert all(r.cached_tokens > 0 for r in again[:3])


def test_cache_saves_computation_and_counts_it():
    eng = engine(num_pages=64, page_size=4)
    first = eng.generate(PROMPTS[:2], SamplingParams(max_new_tokens=4))
    second = eng.generate(PROMPTS[:2], SamplingParams(max_new_tokens=4))
    assert [r.cached_tokens for r in second] == [20, 16]     # 21 and 20 tokens: len-1 cap, whole pages
    assert sum(r.computed_tokens for r in second) < sum(r.computed_tokens for r in first)
    assert 0 < eng.stats.hit_rate < 1 and eng.stats.occupancy


def test_stats_record_each_forward_batch():
    eng = engine(num_pages=64, page_size=4, max_prefill_tokens=16)
    eng.generate(PROMPTS, SamplingParams(max_new_tokens=3))
    assert len(eng.stats.batches) == len(eng.stats.occupancy) == eng.stats.forwards
    # A 16-token budget admits the 21-token prompt alone (a round's first request always goes in), then
    # the two that hit it (4 and 7 new tokens, 4 + 8 slots in whole pages), then the last; two decodes follow.
    assert eng.stats.batches == [("prefill", 1), ("prefill", 2), ("prefill", 1), ("decode", 4), ("decode", 4)]


def test_sampling_is_reproducible_through_retraction():
    params = SamplingParams(max_new_tokens=NEW, temperature=0.8, top_p=0.9, seed=7)
    roomy = engine(num_pages=64, page_size=4).generate(PROMPTS, params)
    tight_engine = engine(num_pages=11, page_size=4, new_token_ratio=0.05)
    tight = tight_engine.generate(PROMPTS, params)
    assert tight_engine.scheduler.retractions > 0
    assert [r.tokens for r in tight] == [r.tokens for r in roomy]


def test_text_prompts_with_the_default_model():
    from radixlib.models import default_model, default_tokenizer
    tok = default_tokenizer()
    eng = Engine(default_model(), tok, num_pages=128, page_size=4)
    results = eng.generate(["the cat sat on the mat.", "the cat sat on the chair."], SamplingParams(max_new_tokens=5))
    assert all(isinstance(r.text, str) and len(r.tokens) == 5 for r in results)
    assert results[0].ttft is not None and results[0].ttft >= 0


class FlakyExecutor:
    """Wraps an executor; its ``fail_at``-th forward raises mid-batch."""
    def __init__(self, inner, fail_at: int):
        self.inner, self.fail_at, self.calls = inner, fail_at, 0
        self.clock, self.vocab_size, self.max_context = inner.clock, inner.vocab_size, inner.max_context

    def _run(self, fn, batch):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("device lost")
        return fn(batch)

    def prefill(self, batch):
        return self._run(self.inner.prefill, batch)

    def decode(self, batch):
        return self._run(self.inner.decode, batch)


@pytest.mark.parametrize("fail_at", [1, 3])
def test_executor_failure_releases_the_batch_and_the_engine_stays_usable(reference, fail_at):
    eng = engine(num_pages=64, page_size=4)
    eng.executor = FlakyExecutor(eng.executor, fail_at)
    results = eng.generate(PROMPTS, SamplingParams(max_new_tokens=NEW))
    failed = [r for r in results if r.error]
    assert failed and all("device lost" in r.error for r in failed)
    assert all(r.tokens == ref for r, ref in zip(results, reference) if not r.error)
    eng.check_invariants()
    assert eng.cache.protected_size == 0
    assert eng.allocator.available + eng.cache.total_size // 4 == 64
    retry = eng.generate(PROMPTS, SamplingParams(max_new_tokens=NEW))
    assert [r.tokens for r in retry] == reference


def assert_clean(eng: Engine) -> None:
    """Nothing queued, nothing locked, every page free or in the tree."""
    eng.check_invariants()
    assert eng.scheduler.idle and eng.cache.protected_size == 0
    assert eng.allocator.available + eng.cache.total_size // eng.allocator.page_size == eng.allocator.num_pages


@pytest.mark.parametrize("bad, message", [
    ([], "request 1 refused: empty prompt"),
    ([5, 6, 10 ** 6], "request 1 refused: token id 1000000 is outside the vocabulary 0..96"),
    (list(range(90)) * 3, "request 1 refused: 270 prompt + 12 new tokens exceed the model's context of 256"),
])
def test_a_request_the_model_cannot_run_is_refused_alone(reference, bad, message):
    eng = engine(num_pages=256, page_size=4)
    good, refused, other = eng.generate([PROMPTS[0], bad, PROMPTS[1]], SamplingParams(max_new_tokens=NEW))
    assert [good.tokens, other.tokens] == reference[:2] and good.error is other.error is None
    assert refused.tokens == [] and refused.error.startswith(message)
    assert_clean(eng)


@pytest.mark.parametrize("target, name, k", [("executor", "prefill", 1), ("module", "sample", 5),
                                             ("router", "cache_unfinished", 2), ("executor", "decode", 3)])
def test_an_interrupt_inside_the_model_leaves_nothing_behind(reference, monkeypatch, target, name, k):
    eng = engine(num_pages=64, page_size=4)
    owner = {"executor": eng.executor, "router": eng.router, "module": executor_module}[target]
    original, calls = getattr(owner, name), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == k:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, interrupted)
    with pytest.raises(KeyboardInterrupt):
        eng.generate(PROMPTS, SamplingParams(max_new_tokens=NEW))
    assert_clean(eng)
    results = eng.generate(PROMPTS, SamplingParams(max_new_tokens=NEW))
    assert [r.tokens for r in results] == reference
    assert_clean(eng)
