"""Chapter 07 · End to end: one request's generation loop over the pool, and what a budget lets the cache save."""
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


def few_shot_prompts(vocab_size: int, question_len: int = 16) -> list[list[int]]:
    """The chapter's few-shot batch: 8 requests, 4 shared examples of 48 tokens, then each its own question."""
    return few_shot(num_requests=8, num_examples=4, example_len=48, question_len=question_len, vocab_size=vocab_size)


def _prefilled_with_budget() -> int:
    """Prompt tokens prefilled for the 14-token-question batch at 512 tokens per round (one new token each:
    no decode step, so every computed token is a prompt token)."""
    tokenizer = default_tokenizer()
    engine = Engine(default_model(), tokenizer, num_pages=128, page_size=16, schedule="lpm", max_prefill_tokens=512)
    engine.generate(few_shot_prompts(len(tokenizer), question_len=14), SamplingParams(max_new_tokens=1))
    return engine.stats.computed_tokens


EXERCISES = [
    Exercise("greedy_generate", "implement", _greedy, _greedy_cases,
             hint="pool_for(model, ...), a PageAllocator and an AttentionExecutor; pages for prompt + new tokens; one "
                  "prefill of the whole prompt, then decode one token at a time, each step starting where the "
                  "pool's tokens end",
             source="Engine(model).generate (greedy)"),
    Exercise("prefilled_with_budget", "compute", _prefilled_with_budget, lambda: [()],
             hint="round 1 admits requests while each one's 206 tokens, in whole pages, are fewer than what is left "
                  "of 512, and none finds the examples cached; the later round's requests find the 192 example "
                  "tokens in the tree and compute their questions",
             source="Engine(..., schedule='lpm', max_prefill_tokens=512).stats.computed_tokens "
                    "(max_new_tokens=1)"),
]
