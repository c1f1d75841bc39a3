"""The engine refuses bad requests up front, alone, and an interrupted call leaves nothing behind.

Model-free: ``Echo`` is a ``CostModel`` whose next token depends on the request's last
token and its position, so every output is checkable and none depends on what was cached.
"""
import math
import re
import threading
import time

import pytest
from helpers import snapshot

from radixlib.cost_model import CostModel
from radixlib.engine import Engine
from radixlib.request import Request, SamplingParams

SHARED = list(range(10, 30))
PROMPTS = [SHARED + [1, 2, 3], SHARED + [4, 5], SHARED[:7] + [90, 91, 92, 93], [11, 12, 13], SHARED]
PARAMS = SamplingParams(max_new_tokens=6)


class Echo(CostModel):
    """Next token = f(last token, position): a wrong context or a mixed-up request shows."""

    def prefill(self, batch):
        super().prefill(batch)
        return [(r.tokens[-1] * 31 + r.start + len(r.tokens)) % 50 for r in batch]

    decode = prefill


def expected(prompt: list[int], new: int = PARAMS.max_new_tokens) -> list[int]:
    tokens = list(prompt)
    for _ in range(new):
        tokens.append((tokens[-1] * 31 + len(tokens)) % 50)
    return tokens[len(prompt):]


def assert_clean(e: Engine) -> None:
    """Nothing queued, nothing locked, every page free or in the tree."""
    e.check_invariants()
    assert e.scheduler.idle
    assert e.cache.protected_size == 0
    assert e.allocator.available + e.cache.total_size // e.allocator.page_size == e.allocator.num_pages


def test_echo_outputs_match_the_naive_reference():
    e = Engine(executor=Echo(), num_pages=64, page_size=4)
    for _ in range(2):                                  # the second run hits the cache
        assert [r.tokens for r in e.generate(PROMPTS, PARAMS)] == [expected(p) for p in PROMPTS]
    assert e.stats.cached_tokens > 0
    assert_clean(e)


# ---- 1. an interrupted generate releases everything it queued ------------------------------

WRAPPED = {"executor": ("prefill", "decode", "clock"),
           "router": ("match", "reserve", "make_room", "cache_unfinished", "cache_finished", "release", "peek")}
CONFIGS = {
    "lpm-chunked": dict(num_pages=64, page_size=4, schedule="lpm", chunk_size=8),
    "evicting-retracting": dict(num_pages=40, page_size=1, new_token_ratio=0.05),
    "no-cache": dict(num_pages=64, page_size=1, enable_cache=False),
}


class InterruptAt:
    """Counts every executor and router call of ``engine``; the ``k``-th raises KeyboardInterrupt."""

    def __init__(self, engine: Engine, k: float):
        self.k, self.calls, self.fired, self.targets = k, 0, False, [engine.executor, engine.router]
        for target, names in zip(self.targets, WRAPPED.values()):
            for name in names:
                setattr(target, name, self._wrap(getattr(target, name)))

    def _wrap(self, method):
        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.k:
                self.fired = True
                raise KeyboardInterrupt
            return method(*args, **kwargs)
        return call

    def remove(self) -> None:
        for target, names in zip(self.targets, WRAPPED.values()):
            for name in names:
                delattr(target, name)


def calls_in_one_run(options: dict) -> tuple[int, Engine]:
    e = Engine(executor=Echo(), **options)
    counter = InterruptAt(e, math.inf)
    e.generate(PROMPTS, PARAMS)
    return counter.calls, e


@pytest.mark.parametrize("config", CONFIGS)
def test_an_interrupt_at_any_call_leaves_the_engine_clean_and_usable(config):
    options = CONFIGS[config]
    total, uninterrupted = calls_in_one_run(options)
    if config == "evicting-retracting":                 # the sweep reaches those paths too
        assert uninterrupted.stats.retractions > 0 and uninterrupted.stats.evicted_tokens > 0
    want = [expected(p) for p in PROMPTS]
    for k in range(1, total + 1):
        e = Engine(executor=Echo(), **options)
        interrupt = InterruptAt(e, k)
        with pytest.raises(KeyboardInterrupt):
            e.generate(PROMPTS, PARAMS)
        assert interrupt.fired
        interrupt.remove()
        assert_clean(e)
        assert e.step() is None                         # no leftovers for a later call to finish
        results = e.generate(PROMPTS, PARAMS)
        assert [r.tokens for r in results] == want and not any(r.error for r in results)
        assert_clean(e)


def test_the_reported_interrupt_no_longer_hangs_the_next_call():
    e = Engine(executor=CostModel(), num_pages=64, page_size=4)
    e.executor.prefill = lambda batch: (_ for _ in ()).throw(KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        e.generate([[1, 2, 3, 4, 5]])
    assert_clean(e)
    del e.executor.prefill
    [result] = e.generate([[7, 8, 9]], SamplingParams(max_new_tokens=3))
    assert result.tokens == [0, 0, 0] and result.error is None
    assert_clean(e)


# ---- 2, 3, 8. a bad request is refused alone, before anything of it is queued --------------

BAD_PROMPTS = [
    ([5, -1, 6], "must be >= 0"),
    ([1, 2.5], "must be integers"),
    (["a", "b"], "must be integers"),
    (123, "a prompt is a string or a list of token ids"),
    (None, "a prompt is a string or a list of token ids"),
    ((float(i) for i in range(3)), r"must be integers, got 0.0 at position 0"),
    ([], "empty prompt"),
    ("some text", "needs a tokenizer"),
    ([1, 2, 10 ** 6], r"token id 1000000 is outside the vocabulary 0..99"),
    (list(range(60)), "60 prompt \\+ 6 new tokens exceed the model's context of 64"),
    ([1] * 50, r"can never be admitted: its 50-token prompt \(52 slots in whole pages\) \+ 6 new"),   # not the pool
]


@pytest.mark.parametrize("prompt, message", BAD_PROMPTS,
                         ids=["negative", "float", "str-ids", "int", "None", "float-generator", "empty",
                              "text-no-tokenizer", "out-of-vocab", "too-long", "too-big-for-pool"])
def test_a_bad_request_is_refused_alone(prompt, message):
    e = Engine(executor=Echo(vocab_size=100, max_context=64), num_pages=12, page_size=4)
    results = e.generate([PROMPTS[0], PROMPTS[3], prompt, PROMPTS[1]], PARAMS)
    bad = results[2]
    assert bad.tokens == [] and bad.error.startswith("request 2 ")
    assert re.search(message, bad.error)
    assert [r.tokens for r in results[:2] + results[3:]] == [expected(p) for p in (PROMPTS[0], PROMPTS[3], PROMPTS[1])]
    assert_clean(e)
    assert [r.tokens for r in e.generate(PROMPTS, PARAMS)] == [expected(p) for p in PROMPTS]


@pytest.mark.parametrize("prompt, message", BAD_PROMPTS[:3])
def test_a_refused_request_touches_nothing(prompt, message):
    e = Engine(executor=Echo(), num_pages=32, page_size=4)
    e.generate(PROMPTS[:2], PARAMS)
    before = snapshot(e.cache)
    [result] = e.generate([prompt], PARAMS)
    assert result.error and snapshot(e.cache) == before
    assert e.stats.prompt_tokens == len(PROMPTS[0]) + len(PROMPTS[1])


def test_numpy_ids_are_accepted():
    np = pytest.importorskip("numpy")
    e = Engine(executor=Echo(), num_pages=32, page_size=4)
    [result] = e.generate([np.array(PROMPTS[3])], PARAMS)
    assert result.tokens == expected(PROMPTS[3])


@pytest.mark.parametrize("prompts, params, message", [
    ("a single string", None, "prompts must be a list of prompts"),
    (7, None, "prompts must be a list of prompts"),
    ([[1, 2]], {"max_new_tokens": 2}, "params must be a SamplingParams"),
])
def test_a_bad_call_raises_and_changes_nothing(prompts, params, message):
    e = Engine(executor=Echo(), num_pages=32, page_size=4)
    queued = Request(99, [1, 2, 3], PARAMS)
    e.scheduler.add(queued)                             # step-by-step use: a request already waiting
    with pytest.raises(TypeError, match=message):
        e.generate(prompts, params)
    assert e.scheduler.waiting == [queued] and queued.error is None
    assert e.generate([], PARAMS) == [] and queued.output == expected([1, 2, 3])


@pytest.mark.parametrize("options, error, message", [
    (dict(max_new_tokens=None), TypeError, "max_new_tokens must be an int >= 1, got NoneType None"),
    (dict(max_new_tokens=0), ValueError, "max_new_tokens must be an int >= 1, got 0"),
    (dict(max_new_tokens=2.0), TypeError, "max_new_tokens must be an int"),
    (dict(max_new_tokens=True), TypeError, "max_new_tokens must be an int"),
    (dict(temperature=math.nan), ValueError, "temperature must be a finite number >= 0, got nan"),
    (dict(temperature=math.inf), ValueError, "temperature must be a finite number >= 0"),
    (dict(temperature=-0.5), ValueError, "temperature must be a finite number >= 0"),
    (dict(temperature="0.7"), TypeError, "temperature must be a finite number"),
    (dict(top_p=0), ValueError, r"top_p must be a number in \(0, 1\]"),
    (dict(top_p=1.5), ValueError, "top_p must be"),
    (dict(top_p=math.nan), ValueError, "top_p must be"),
    (dict(stop=5), TypeError, "stop must be a tuple of token ids, got int 5"),
    (dict(stop="ab"), TypeError, "stop must be a tuple of token ids"),
    (dict(stop=(1, -2)), ValueError, "a stop token id must be an int >= 0"),
    (dict(stop=(1.0,)), TypeError, "a stop token id must be an int"),
    (dict(seed=2 ** 64), ValueError, r"seed must be an int in \[0, 2\*\*63\)"),
    (dict(seed=-1), ValueError, "seed must be an int >= 0"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
])
def test_invalid_sampling_params_fail_at_construction(options, error, message):
    with pytest.raises(error, match=message):
        SamplingParams(**options)


def test_valid_sampling_params_at_the_edges():
    p = SamplingParams(max_new_tokens=1, temperature=0, top_p=1, stop=[2, 3], seed=2 ** 63 - 1)
    assert p.stop == (2, 3) and hash(p)
    assert SamplingParams(temperature=2, top_p=1e-9).temperature == 2


# ---- 7. nonsensical scheduler options are refused at construction --------------------------

@pytest.mark.parametrize("options, error, message", [
    (dict(chunk_size=0), ValueError, r"chunk_size must be an int >= 4 \(at least one page\), got 0"),
    (dict(chunk_size=2), ValueError, "chunk_size must be an int >= 4"),
    (dict(chunk_size=8.0), TypeError, "chunk_size must be an int"),
    (dict(max_running=0), ValueError, "max_running must be an int >= 1, got 0"),
    (dict(max_running=None), TypeError, "max_running must be an int"),
    (dict(max_prefill_tokens=-1), ValueError, "max_prefill_tokens must be an int >= 4"),
    (dict(new_token_ratio=0), ValueError, r"new_token_ratio must be a number in \(0, 1\], got 0"),
    (dict(new_token_ratio=1.5), ValueError, "new_token_ratio must be"),
    (dict(new_token_ratio=math.nan), ValueError, "new_token_ratio must be"),
    (dict(in_batch_threshold=-1), ValueError, "in_batch_threshold must be an int >= 0, got -1"),
    (dict(schedule="sjf"), ValueError, "unknown schedule"),
])
def test_nonsensical_scheduler_options_are_refused(options, error, message):
    with pytest.raises(error, match=message):
        Engine(executor=Echo(), num_pages=32, page_size=4, **options)


def test_the_smallest_sensible_options_run():
    e = Engine(executor=Echo(), num_pages=32, page_size=4, chunk_size=4, max_running=1,
               max_prefill_tokens=4, new_token_ratio=1e-3, in_batch_threshold=0)
    assert [r.tokens for r in e.generate(PROMPTS, PARAMS)] == [expected(p) for p in PROMPTS]
    assert_clean(e)


# ---- 10. threads take turns ----------------------------------------------------------------

class Yielding(Echo):
    """Gives up the GIL in every forward, so unguarded threads would interleave."""

    def prefill(self, batch):
        time.sleep(0)
        return super().prefill(batch)

    decode = prefill


def test_two_threads_calling_generate_both_get_correct_outputs():
    e = Engine(executor=Yielding(), num_pages=256, page_size=4)
    prompts = {t: [[t * 100 + i, 7, 8, i] + SHARED for i in range(12)] for t in (1, 2)}
    outputs, errors = {}, []
    start = threading.Barrier(2)

    def worker(t: int) -> None:
        try:
            start.wait()
            outputs[t] = [[r.tokens for r in e.generate(prompts[t], PARAMS)] for _ in range(5)]
        except Exception as exc:                        # surfaces in the main thread's assert
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for t in prompts:
        assert outputs[t] == [[expected(p) for p in prompts[t]]] * 5
    assert_clean(e)
