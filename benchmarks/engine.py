"""The engine beside transformers, on the same model, prompts and greedy tokens.

    (a) a loop of model.generate           one request at a time, DynamicCache
    (b) model.generate_batch               transformers' continuous batching, block sharing on
    (c) radixlib Engine, cache off         packed prefill + decode from the paged pool
    (d) radixlib Engine, cache on          ... and the radix prefix cache

Workloads: few-shot (32 requests, 768 shared tokens + a 32-token question, 16 new
tokens each) and a multi-turn chat (4 conversations x 3 turns, each turn's prompt the
whole history). End-of-sequence is off, so every method makes the same number of tokens;
the table checks that all four made identical tokens.

    python benchmarks/engine.py [--threads 2] [--quick] [--record]
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import ContinuousBatchingConfig, GenerationConfig, LlamaConfig

from radixlib.engine import Engine
from radixlib.models import seeded_model
from radixlib.request import SamplingParams
from radixlib.workloads import chat_turn_prompts, few_shot, multi_turn_chat

CONFIG = LlamaConfig(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                     intermediate_size=1376, vocab_size=32000, tie_word_embeddings=True,
                     max_position_embeddings=4096, bos_token_id=None, eos_token_id=None, pad_token_id=None)
NEW_TOKENS = 16
RECORD = Path(__file__).resolve().parent.parent / "figures" / "data" / "engine.json"
Generate = Callable[[list[list[int]]], list[list[int]]]


class Run(NamedTuple):
    method: str
    seconds: float
    new_tokens: int
    outputs: list[list[int]]
    hit_rate: float | None


def hf_loop() -> Generate:
    model = seeded_model(CONFIG)

    def generate(prompts):
        outs = []
        for p in prompts:
            ids = model.generate(torch.tensor([p]), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                 do_sample=False)
            outs.append(ids[0, len(p):].tolist())
        return outs
    return generate


def hf_batch(max_batch_tokens: int | None) -> Generate:
    model = seeded_model(CONFIG)
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                              eos_token_id=None, pad_token_id=0)
    cb = ContinuousBatchingConfig(allow_block_sharing=True, max_batch_tokens=max_batch_tokens)

    def generate(prompts):
        out = model.generate_batch(prompts, generation_config=config, continuous_batching_config=cb,
                                   warmup=False)
        return [list(out[k].generated_tokens) for k in sorted(out, key=_request_number)]
    return generate


def radix_engine(cache: bool) -> tuple[Generate, Engine]:
    engine = Engine(seeded_model(CONFIG), num_pages=2048, page_size=16, cache=cache,
                    schedule="lpm", max_prefill_tokens=8192)

    def generate(prompts):
        return [r.tokens for r in engine.generate(prompts, SamplingParams(max_new_tokens=NEW_TOKENS))]
    return generate, engine


def _request_number(request_id: str) -> int:
    return int("".join(c for c in request_id if c.isdigit()))


def timed(method: str, generate: Generate, turns: list[Callable], engine: Engine | None = None) -> Run:
    """Run every turn (a function from earlier outputs to prompts) through ``generate``."""
    outputs: list[list[list[int]]] = []
    start = time.perf_counter()
    for make_prompts in turns:
        outputs.append(generate(make_prompts(outputs)))
    seconds = time.perf_counter() - start
    flat = [o for turn in outputs for o in turn]
    return Run(method, seconds, sum(map(len, flat)), flat, engine.stats.hit_rate if engine else None)


def workloads(quick: bool) -> dict[str, list[Callable]]:
    n = 8 if quick else 32
    shots = few_shot(num_requests=n, num_examples=8, example_len=96, question_len=32)
    chats = multi_turn_chat(num_conversations=4, turns=3, system_len=256, user_len=32)

    def chat_turn(t):
        return lambda outs: chat_turn_prompts(chats, t, [[outs[k][c] for k in range(t)] for c in range(len(chats))])
    return {"few-shot": [lambda outs: shots], "multi-turn": [chat_turn(t) for t in range(3)]}


def methods(quick: bool):
    yield "(a) model.generate loop", lambda: (hf_loop(), None)
    if not quick:
        yield "(b) generate_batch default", lambda: (hf_batch(None), None)
    yield "(b) generate_batch 1024", lambda: (hf_batch(1024), None)
    yield "(c) engine, cache off", lambda: radix_engine(cache=False)
    yield "(d) engine, cache on", lambda: radix_engine(cache=True)


def report(name: str, runs: list[Run]) -> dict[str, float]:
    """Print the workload's table; return new tokens/s per method (as ``--record`` stores them)."""
    a = runs[0]
    b = max((r for r in runs if r.method.startswith("(b)")), key=lambda r: r.new_tokens / r.seconds)
    print(f"\n{name}: {a.new_tokens} new tokens per method")
    print(f"{'method':<28} {'seconds':>8} {'new tok/s':>10} {'vs (a)':>7} {'vs best (b)':>11} "
          f"{'hit rate':>9} {'same tokens':>12}")
    for r in runs:
        rate = r.new_tokens / r.seconds
        hit = "" if r.hit_rate is None else f"{r.hit_rate:.1%}"
        print(f"{r.method:<28} {r.seconds:>8.2f} {rate:>10.1f} {rate / (a.new_tokens / a.seconds):>6.2f}x "
              f"{rate / (b.new_tokens / b.seconds):>10.2f}x {hit:>9} {str(r.outputs == a.outputs):>12}")
    return {r.method: round(r.new_tokens / r.seconds, 1) for r in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="8 few-shot requests, one (b) budget")
    parser.add_argument("--record", action="store_true", help="also write figures/data/engine.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = sum(p.numel() for p in seeded_model(CONFIG).parameters()) / 1e6
    print(f"model: Llama {params:.1f}M params, float32, {args.threads} threads, torch {torch.__version__}")
    rates = {}
    for name, turns in workloads(args.quick).items():
        runs = []
        for method, build in methods(args.quick):
            generate, engine = build()
            runs.append(timed(method, generate, turns, engine))
        rates[name] = report(name, runs)
    if args.record:
        model_name = f"Llama {params:.1f}M, fp32, {args.threads} CPU threads"
        RECORD.write_text(json.dumps({"model": model_name, "rates": rates}, indent=2) + "\n")


if __name__ == "__main__":
    main()
