"""Models: the embedded default, and real checkpoints from a local folder.

The default is a small Llama built from a config with seeded weights, plus a word-level
tokenizer whose vocabulary is every word of ``CORPUS`` (embedded below), so the chapters
run offline in seconds and still show readable text. Its weights are random: what it says
is nonsense, but the SAME nonsense whether its K/V were cached or recomputed, which is
exactly what the chapters check.

``load_model(path)`` loads a real checkpoint from a local folder. Nothing here ever
downloads anything.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from .executor import SUPPORTED_ARCHITECTURES, kv_shape

CORPUS = """
You are a helpful assistant. Answer the question in one short sentence.
Question: What is a cache? Answer: A cache keeps the results of past work so that we do not
compute them again.
Question: What is a prefix? Answer: A prefix is the first part of a sequence, such as the
first words of a prompt.
Question: What is a radix tree? Answer: A radix tree is a tree whose edges carry runs of
tokens, so prompts that begin with the same words share the same path from the root.
Question: Why share the system prompt? Answer: Every request starts with it, so its keys and
values are computed once and then reused by all the requests that follow.
User: Hello! Can you help me plan a trip to the sea? Assistant: Of course. How many days do
you have, and do you like to walk, swim or read?
User: Three days, and I like to walk. Assistant: Then walk along the coast on the first day,
visit the old town on the second day and climb the hill on the last day.
User: Thank you, that sounds good. Assistant: You are welcome. Have a nice trip!
Let us think step by step. First, count the tokens that are already cached. Second, compute
only the tokens that are new. Third, write their keys and values into free pages of the pool.
Option A: evict the least recently used leaf. Option B: evict the least frequently used leaf.
Option C: keep everything and wait. Which option frees memory without hurting the hit rate?
The scheduler takes requests from the waiting queue, matches each prompt against the tree,
allocates pages for the part that is not cached, and runs one batch of prefill and decode.
When memory is short, it evicts unlocked leaves, oldest first, until enough pages are free.
A request that is running locks its path, so no node it reads from can be evicted.
The model reads a prompt, predicts the next token, appends it and repeats until it stops.
Attention lets each token look at every token before it; the keys and values of those
tokens are what the pool stores, one slot per token, one page per few slots. The pool has a
fixed number of pages, and a page that no one uses is free.
Once upon a time a small model lived in a big library. Every morning it read the same
story, and every morning it remembered a little more of the beginning, so it could start
where it had stopped the day before. The librarian was happy, because the lights stayed on
for less time and the books were never late.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Colors: red, green, blue, yellow, black, white.
Days: Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday.
"""

SPECIAL_TOKENS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def default_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over ``CORPUS``: one id per word, punctuation mark or digit.

    Text is lowercased and every run of white space becomes one space; a word not in the
    corpus becomes ``<unk>``. Ids are the special tokens first, then the words in sorted
    order, so the vocabulary never changes.
    """
    pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation(),
                                             pre_tokenizers.Digits(individual_digits=True)])
    normalizer = normalizers.Sequence([normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    words = sorted({word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(CORPUS))})
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS.values(), *words])}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def default_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """A small Llama (GQA, RoPE, tied embeddings) sized so every chapter runs in seconds.

    Its random weights are drawn 10x wider than transformers' default (``initializer_range``),
    so greedy decoding wanders over the vocabulary instead of repeating one word.
    """
    return LlamaConfig(hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=352, max_position_embeddings=2048,
                       vocab_size=len(tokenizer), tie_word_embeddings=True, initializer_range=0.2,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)


def seeded_model(config: PreTrainedConfig, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """The model ``config`` describes, with weights drawn from ``seed`` (global RNG untouched).

    In bfloat16 it holds the float32 model's weights, rounded; RoPE tables stay float32. In
    float64 it holds the float32 model's weights exactly (drawn in float32, then widened), so a
    float64 twin measures the float32 model's own rounding error.

    The model gets its own copy of ``config``: transformers keeps the attention implementation
    there, so two models built from one config object would otherwise switch together.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        draw = torch.float32 if dtype == torch.float64 else dtype
        model = AutoModelForCausalLM.from_config(copy.deepcopy(config), dtype=draw)
    return (model.to(dtype) if draw != dtype else model).eval()


def default_model(dtype: torch.dtype = torch.float32, seed: int = 0) -> PreTrainedModel:
    """The embedded default model, whose vocabulary is ``default_tokenizer()``'s."""
    return seeded_model(default_config(default_tokenizer()), seed, dtype)


def load_model(path: str | Path, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """A transformers checkpoint from the local folder ``path`` (in its own dtype by default).

    Refuses, before loading any weights, a folder without ``config.json`` and an
    architecture the executor does not support.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no transformers checkpoint (no config.json); "
                                f"radixlib loads local folders only and never downloads")
    architectures = AutoConfig.from_pretrained(path, local_files_only=True).architectures or []
    if not set(architectures) & set(SUPPORTED_ARCHITECTURES):
        raise ValueError(f"{path} holds a {'/'.join(architectures) or 'model of unknown architecture'}; "
                         f"radixlib supports {', '.join(SUPPORTED_ARCHITECTURES)}")
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype or "auto")
    return model.eval()


def prefill_flops(config: PreTrainedConfig, cached: int, total: int) -> int:
    """FLOPs (2 per multiply-add) to compute tokens ``cached .. total-1`` and the last token's logits."""
    layers, kv_heads, head_dim = kv_shape(config)
    q_dim, kv_dim, hidden = config.num_attention_heads * head_dim, kv_heads * head_dim, config.hidden_size
    per_token = 2 * layers * (hidden * (2 * q_dim + 2 * kv_dim) + 3 * hidden * config.intermediate_size)
    keys_seen = sum(range(cached + 1, total + 1))         # the token at position p sees p + 1 keys
    attention = 4 * layers * q_dim * keys_seen             # Q·K and weights·V
    return (total - cached) * per_token + attention + 2 * hidden * config.vocab_size
