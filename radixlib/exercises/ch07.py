"""Chapter 07 · End to end: one request's generation loop over the pool, and what the cache saves."""
from __future__ import annotations

from ..engine import Engine
from ..models import default_model, default_tokenizer
from ..request import SamplingParams
from ..workloads import few_shot
from . import Exercise

PROMPTS = ["the cat sat on the mat .", "you are a helpful assistant . what is a cache ?",
           "once upon a time a small model lived in a big library .", "red green blue"]


def _greedy(model, prompt: list[int], max_new_tokens: int) -> list[int]:
    engine = Engine(model, num_pages=64, page_size=4)
    return engine.generate([prompt], SamplingParams(max_new_tokens=max_new_tokens))[0].tokens


def _greedy_cases() -> list[tuple]:
    tokenizer, model = default_tokenizer(), default_model()
    return [(model, tokenizer.encode(text), new) for text, new in zip(PROMPTS, (1, 6, 12, 3))]


def few_shot_prompts(vocab_size: int) -> list[list[int]]:
    """The chapter's few-shot batch: 8 requests, 4 shared examples of 48 tokens, a 16-token question."""
    return few_shot(num_requests=8, num_examples=4, example_len=48, question_len=16, vocab_size=vocab_size)


def _computed_without_cache() -> int:
    engine = Engine(default_model(), default_tokenizer(), num_pages=128, page_size=16, enable_cache=False)
    results = engine.generate(few_shot_prompts(len(default_tokenizer())), SamplingParams(max_new_tokens=1))
    return sum(r.computed_tokens for r in results)


EXERCISES = [
    Exercise("greedy_generate", "implement", _greedy, _greedy_cases,
             hint="pool_for(model, ...), a PageAllocator and an AttentionExecutor; pages for prompt + new tokens; one "
                  "prefill of the whole prompt, then decode one token at a time, each step starting where the "
                  "pool's tokens end",
             source="Engine(model).generate (greedy)"),
    Exercise("computed_without_cache", "compute", _computed_without_cache, lambda: [()],
             hint="run the 8 few-shot prompts through an Engine with enable_cache=False and max_new_tokens=1; sum "
                  "the results' computed_tokens",
             source="sum(r.computed_tokens for r in Engine(..., enable_cache=False).generate(prompts, ...))"),
]
