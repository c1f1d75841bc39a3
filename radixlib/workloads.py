"""Workloads: prompt streams with realistic sharing.

The Mooncake FAST'25 synthetic trace (``radixlib/data/``, Apache-2.0, see its NOTICE;
shipped as package data) records each request as a
list of hash ids, one per 512-token block; equal ids mean equal content, and an id
stands for its whole prefix. We turn block ``h`` into ``tokens_per_block`` token ids
that belong to ``h`` alone, so two prompts share tokens exactly where they share blocks::

    hash_ids [0, 1, 7]  ->  tokens [0*T .. 0*T+T) + [1*T .. 1*T+T) + [7*T .. 7*T+T)     (T = tokens_per_block)
"""
from __future__ import annotations

import json
import random
from importlib.resources import files
from pathlib import Path
from typing import NamedTuple

MOONCAKE_TRACE = files(__package__) / "data" / "mooncake_synthetic_trace.jsonl"


class TraceRequest(NamedTuple):
    timestamp_ms: int
    input_length: int
    output_length: int
    hash_ids: list[int]


def load_mooncake(path: str | Path | None = None, limit: int | None = None) -> list[TraceRequest]:
    """The trace's requests in arrival order (the first ``limit`` of them); the shipped trace by default."""
    requests = []
    with open(path) if path is not None else MOONCAKE_TRACE.open() as f:
        for line in f:
            if limit is not None and len(requests) >= limit:
                break
            r = json.loads(line)
            requests.append(TraceRequest(r["timestamp"], r["input_length"], r["output_length"], r["hash_ids"]))
    return requests


def block_tokens(hash_ids: list[int], tokens_per_block: int = 16) -> list[int]:
    """Token ids of a prompt made of the blocks ``hash_ids``."""
    return [h * tokens_per_block + i for h in hash_ids for i in range(tokens_per_block)]


def mooncake_prompts(tokens_per_block: int = 16, limit: int | None = None) -> list[list[int]]:
    """Every trace request as a token list, ``tokens_per_block`` tokens per 512-token block."""
    return [block_tokens(r.hash_ids, tokens_per_block) for r in load_mooncake(limit=limit)]


# --- synthetic workloads (token level, seeded) ---------------------------------------------
#
# Every generator draws token ids from ``random.Random(seed)`` in ``[first_id, vocab_size)``
# (``first_id`` skips a tokenizer's special tokens), so the same call gives the same prompts.

VOCAB_SIZE = 32_000     # a Llama-sized vocabulary
FIRST_ID = 4            # ids below are special tokens (<unk>, <s>, </s>, <pad> in models.py)

def _tokens(rng: random.Random, n: int, vocab_size: int, first_id: int) -> list[int]:
    return [rng.randrange(first_id, vocab_size) for _ in range(n)]


def shared_prefix(num_requests: int, prefix_len: int, suffix_len: int, vocab_size: int = VOCAB_SIZE,
                  seed: int = 0, first_id: int = FIRST_ID) -> list[list[int]]:
    """One shared prefix (a system prompt), then a distinct suffix per request."""
    rng = random.Random(seed)
    prefix = _tokens(rng, prefix_len, vocab_size, first_id)
    return [prefix + _tokens(rng, suffix_len, vocab_size, first_id) for _ in range(num_requests)]


def few_shot(num_requests: int = 32, num_examples: int = 8, example_len: int = 96, question_len: int = 32,
             vocab_size: int = VOCAB_SIZE, seed: int = 0, first_id: int = FIRST_ID) -> list[list[int]]:
    """The same ``num_examples`` worked examples before each request's own question.

    [ example 1 | example 2 | ... | example k | question_i ]   (examples shared by all)
    """
    return shared_prefix(num_requests, num_examples * example_len, question_len, vocab_size, seed, first_id)


def tree_of_thought(depth: int = 3, branching: int = 3, root_len: int = 64, step_len: int = 16,
                    vocab_size: int = VOCAB_SIZE, seed: int = 0, first_id: int = FIRST_ID,
                    leaves_only: bool = False) -> list[list[int]]:
    """One prompt per thought: the problem, then the chain of steps that led to it.

    Level d holds branching**d prompts; siblings share everything but their last step.
    ``leaves_only`` keeps the deepest level (no prompt is then a prefix of another).
    """
    rng = random.Random(seed)
    level = [_tokens(rng, root_len, vocab_size, first_id)]
    prompts = []
    for _ in range(depth):
        level = [p + _tokens(rng, step_len, vocab_size, first_id) for p in level for _ in range(branching)]
        prompts += level
    return level if leaves_only else prompts


class Conversation(NamedTuple):
    system: list[int]
    user_turns: list[list[int]]


def multi_turn_chat(num_conversations: int = 4, turns: int = 3, system_len: int = 64, user_len: int = 24,
                    vocab_size: int = VOCAB_SIZE, seed: int = 0, first_id: int = FIRST_ID) -> list[Conversation]:
    """Conversations that share a system prompt; each turn's prompt is the whole history so far."""
    rng = random.Random(seed)
    system = _tokens(rng, system_len, vocab_size, first_id)
    return [Conversation(system, [_tokens(rng, user_len, vocab_size, first_id) for _ in range(turns)])
            for _ in range(num_conversations)]


def chat_turn_prompts(conversations: list[Conversation], turn: int,
                      answers: list[list[list[int]]]) -> list[list[int]]:
    """The prompts of ``turn``: system, then every earlier user message and its answer, then the new message.

    ``answers[c][t]`` is conversation c's answer at turn t (for every t < turn).
    """
    prompts = []
    for c, conv in enumerate(conversations):
        history = list(conv.system)
        for t in range(turn):
            history += conv.user_turns[t] + answers[c][t]
        prompts.append(history + conv.user_turns[turn])
    return prompts
