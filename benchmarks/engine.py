"""The engine beside transformers, on the same model, prompts and greedy tokens.

Loop: every radixlib engine here runs SGLang's non-overlap loop (``event_loop_normal``, as under
``--disable-overlap-schedule``; see ``radixlib/engine.py``), not its default overlap loop.

    (a) a loop of model.generate           one request at a time, DynamicCache
    (b) model.generate_batch               transformers' continuous batching, block sharing on
    (c) radixlib Engine, cache off         packed prefill + decode from the paged pool
    (d) radixlib Engine, cache on          ... and the radix prefix cache

Workloads: few-shot (32 requests, 768 shared tokens + a 32-token question, 16 new
tokens each) and a multi-turn chat (4 conversations x 3 turns, each turn's prompt the
whole history). End-of-sequence is off, so every method makes the same number of tokens;
the table checks that all of them made identical tokens.

Every method gets its own model, built and warmed up (one untimed call) before any timing.
Then each round runs every method once on each workload, in an order that rotates from
round to round; each engine run starts from a fresh Engine (an empty cache) over its warm
model. Ratios are taken within a round (the same load for all methods), then summed up as
the median and the worst round. One intra-op thread by default, and two clocks: CPU time,
the figure to quote and the one targets are judged on, and wall time (why: ``timing.py``).

    python benchmarks/engine.py [--threads 1] [--rounds 3] [--quick] [--record]
"""
from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from timing import (
    CLOCK_NOTE,
    CLOCKS,
    MODEL_SHAPE,
    Spread,
    Timed,
    load_average,
    model_bench_parser,
    rotated,
    timed,
    verdict,
)
from transformers import ContinuousBatchingConfig, GenerationConfig, LlamaConfig

from radixlib.engine import Engine
from radixlib.models import seeded_model
from radixlib.request import SamplingParams
from radixlib.shortfalls import chat_turn
from radixlib.workloads import few_shot, multi_turn_chat

CONFIG = LlamaConfig(**MODEL_SHAPE, tie_word_embeddings=True, max_position_embeddings=4096, bos_token_id=None,
                     eos_token_id=None, pad_token_id=None)
NEW_TOKENS = 16
WARM_UP = [[7] * 40, [8] * 24]                      # one untimed call per method: first-call costs
RECORD = Path(__file__).resolve().parent.parent / "figures" / "data" / "engine.json"
LOOP, CACHED_ENGINE = "(a) model.generate loop", "(d) engine, cache on"
TARGETS = [("few-shot", LOOP, 5.0), ("few-shot", "best (b)", 2.5), ("multi-turn", LOOP, 3.0)]
Generate = Callable[[list[list[int]]], list[list[int]]]


class Run(NamedTuple):
    seconds: Timed
    new_tokens: int
    outputs: list[list[int]]
    hit_rate: float | None

    def rate(self, clock: str) -> float:
        """New tokens per second of ``clock``."""
        return self.new_tokens / getattr(self.seconds, clock)


class Method(NamedTuple):
    """``fresh()`` gives what one run uses: a generate function, and the engine behind it if any."""
    name: str
    fresh: Callable[[], tuple[Generate, Engine | None]]


def hf_loop(model) -> Generate:
    def generate(prompts):
        outs = []
        for p in prompts:
            ids = model.generate(torch.tensor([p]), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                 do_sample=False)
            outs.append(ids[0, len(p):].tolist())
        return outs
    return generate


def hf_batch(model, max_batch_tokens: int | None) -> Generate:
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
                              eos_token_id=None, pad_token_id=0)
    cb = ContinuousBatchingConfig(allow_block_sharing=True, max_batch_tokens=max_batch_tokens)

    def generate(prompts):
        out = model.generate_batch(prompts, generation_config=config, continuous_batching_config=cb,
                                   warmup=False)
        return [list(out[k].generated_tokens) for k in sorted(out, key=_request_number)]
    return generate


PREFILL_BUDGET = 1024   # tokens per forward: the same budget as (b)'s best max_batch_tokens


def radix_engine(model, cache: bool) -> tuple[Generate, Engine]:
    """The engine with SGLang's scheduling; its prefill budget is (b)'s, so that requests arriving
    together are spread over rounds alike (with a budget that admits every sharer in the first
    round, each computes the shared prefix: chapter 07)."""
    engine = Engine(model, num_pages=2048, page_size=16, enable_cache=cache, schedule="lpm",
                    max_prefill_tokens=PREFILL_BUDGET)

    def generate(prompts):
        return [r.tokens for r in engine.generate(prompts, SamplingParams(max_new_tokens=NEW_TOKENS))]
    return generate, engine


def _request_number(request_id: str) -> int:
    return int("".join(c for c in request_id if c.isdigit()))


def methods(quick: bool) -> list[Method]:
    """The methods, each over its own model, warmed up."""
    def method(name: str, make: Callable) -> Method:
        fresh = partial(make, seeded_model(CONFIG))
        fresh()[0](WARM_UP)
        return Method(name, fresh)
    budgets = [1024] if quick else [None, 1024]
    return [method(LOOP, lambda m: (hf_loop(m), None)),
            *[method(f"(b) generate_batch {b or 'default'}", lambda m, b=b: (hf_batch(m, b), None))
              for b in budgets],
            method("(c) engine, cache off", lambda m: radix_engine(m, cache=False)),
            method(CACHED_ENGINE, lambda m: radix_engine(m, cache=True))]


def run(method: Method, turns: list[Callable]) -> Run:
    """Run every turn (a function from earlier outputs to prompts) through a fresh ``method``."""
    generate, engine = method.fresh()
    outputs: list[list[list[int]]] = []

    def all_turns() -> None:
        for make_prompts in turns:
            outputs.append(generate(make_prompts(outputs)))
    seconds = timed(all_turns)[1]
    flat = [o for turn in outputs for o in turn]
    return Run(seconds, sum(map(len, flat)), flat, engine.stats.hit_rate if engine else None)


def workloads(quick: bool) -> dict[str, list[Callable]]:
    n = 8 if quick else 32
    shots = few_shot(num_requests=n, num_examples=8, example_len=96, question_len=32)
    chats = multi_turn_chat(num_conversations=4, turns=3, system_len=256, user_len=32)
    return {"few-shot": [lambda outs: shots], "multi-turn": [partial(chat_turn, chats, t) for t in range(3)]}


def ratios(rounds: list[dict[str, Run]], clock: str, method: str, versus: str) -> list[float]:
    """``method``'s rate over ``versus``'s, round by round; ``best (b)``: the best (b) of that round."""
    def rate(runs: dict[str, Run], name: str) -> float:
        if name == "best (b)":
            return max(run.rate(clock) for m, run in runs.items() if m.startswith("(b)"))
        return runs[name].rate(clock)
    return [rate(runs, method) / rate(runs, versus) for runs in rounds]


def report(name: str, rounds: list[dict[str, Run]], clock: str) -> dict[str, list[float]]:
    """Print the workload's table on ``clock``; return new tokens/s per method, one value per round."""
    names = list(rounds[0])
    print(f"\n{name}, {clock} time: {rounds[0][LOOP].new_tokens} new tokens per method, {len(rounds)} rounds, "
          f"median (lowest..highest)")
    print(f"{'method':<28}{'new tok/s':>22}{'vs (a)':>22}{'vs best (b)':>22}{'hit rate':>10}{'same tokens':>13}")
    for m in names:
        hit = rounds[0][m].hit_rate
        same = all(runs[m].outputs == runs[LOOP].outputs for runs in rounds)
        print(f"{m:<28}{Spread.of([runs[m].rate(clock) for runs in rounds]).format('.1f'):>22}"
              f"{Spread.of(ratios(rounds, clock, m, LOOP)).format():>22}"
              f"{Spread.of(ratios(rounds, clock, m, 'best (b)')).format():>22}"
              f"{'' if hit is None else f'{hit:.1%}':>10}{str(same):>13}")
    return {m: [runs[m].rate(clock) for runs in rounds] for m in names}


def main() -> None:
    parser = model_bench_parser(__doc__, rounds=3, record="figures/data/engine.json")
    parser.add_argument("--quick", action="store_true", help="8 few-shot requests, one (b) budget")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = sum(p.numel() for p in seeded_model(CONFIG).parameters()) / 1e6
    print(f"model: Llama {params:.1f}M params, float32, {args.threads} thread(s), torch {torch.__version__}")
    all_methods, loads = methods(args.quick), workloads(args.quick)
    rounds: dict[str, list[dict[str, Run]]] = {name: [] for name in loads}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: {load_average()}", flush=True)
        for name, turns in loads.items():
            runs = {m.name: run(m, turns) for m in rotated(all_methods, r)}
            rounds[name].append({m.name: runs[m.name] for m in all_methods})
    print(f"after: {load_average()}")
    rates = {clock: {name: report(name, runs, clock) for name, runs in rounds.items()} for clock in CLOCKS}
    print(f"\n{CLOCK_NOTE}")
    for clock in CLOCKS:
        for workload, versus, goal in TARGETS:
            label = f"{clock} time, {workload}: engine with cache / {versus if versus == 'best (b)' else '(a)'}"
            print(verdict(label, ratios(rounds[workload], clock, CACHED_ENGINE, versus), goal))
    if args.record:
        model_name = f"Llama {params:.1f}M, fp32, {args.threads} CPU thread{'s' * (args.threads > 1)}, CPU time"
        rates = rates["cpu"]
        medians = {w: {m: round(Spread.of(v).median, 1) for m, v in by.items()} for w, by in rates.items()}
        spreads = {w: {m: [round(min(v), 1), round(max(v), 1)] for m, v in by.items()} for w, by in rates.items()}
        RECORD.write_text(json.dumps({"model": model_name, "rounds": args.rounds, "rates": medians,
                                      "spread": spreads}, indent=2) + "\n")


if __name__ == "__main__":
    main()
