"""Prefix reuse on a CPU: what caching part of a 1024-token prompt saves, measured next to ideal.

Two tables, each on two clocks (CPU time, the figure to quote, and wall time: ``timing.py``).
Every variant runs once per round, the variants interleaved, and each ratio is taken within a
round before its median and spread (lowest..highest) over the rounds:

1. Prefill of one 1024-token prompt: transformers' own full forward (SDPA), then the
   executor with 0, 256, 512, 900 and 1000 of its tokens already in the pool. "ideal" is
   the ratio of FLOPs computed from the config; it is below the token ratio because the
   new tokens still attend over the cached prefix. No forward costs less than a forward of
   one token (a decode step, table 2), whatever its FLOPs: each reads every weight matrix.
2. One decode step at 1024 tokens of context, next token included: through the pool vs
   transformers' DynamicCache. Its time through the pool is recorded too (``decode_ms``): a
   forward of one token, the floor under the prefills of a few tokens.

Model: a seeded 39.6M-parameter Llama (hidden 512, 8 layers, 8 heads, 4 KV heads), float32,
one intra-op thread (why: ``timing.py``). Run: ``python benchmarks/prefill_reuse.py
[--threads 1] [--rounds 15] [--record]`` (about two minutes on an idle machine; ``--record``
also stores the numbers for ``make figures``).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from timing import CLOCK_NOTE, CLOCKS, MODEL_SHAPE, Spread, interleaved, load_average, model_bench_parser, verdict
from transformers import DynamicCache, LlamaConfig

from radixlib.executor import AttentionExecutor, ForwardRequest, pool_for
from radixlib.models import prefill_flops, seeded_model

PROMPT_LEN, CACHED = 1024, (0, 256, 512, 900, 1000)
RECORD = Path(__file__).resolve().parent.parent / "figures" / "data" / "prefill_reuse.json"
DECODE_REPEAT = 5                     # decode steps per variant per round (their median is the round's)
REACHED_GOAL, DECODE_GOAL = 0.85, 1.05
CONFIG = LlamaConfig(**MODEL_SHAPE, tie_word_embeddings=True, max_position_embeddings=2048)


def prefill_table(reference, executor: AttentionExecutor, prompt: list[int], slots: torch.Tensor,
                  rounds: int) -> dict[str, tuple[dict, list[float]]]:
    """Time the prefills; per clock, print the table and return its numbers (as ``--record``
    stores them) with the share of the ideal speed-up reached at 900 cached, per round."""
    variants = {"full": lambda: reference(torch.tensor([prompt]), use_cache=False, logits_to_keep=1)}
    for k in CACHED:
        variants[k] = lambda k=k: executor.prefill([ForwardRequest(prompt[k:], k, slots)])
    interleaved(variants, 1)                                                  # warm-up, not counted
    seconds = interleaved(variants, rounds)
    return {clock: print_prefill(clock, {name: [getattr(t, clock) for t in ts] for name, ts in seconds.items()})
            for clock in CLOCKS}


def print_prefill(clock: str, seconds: dict) -> tuple[dict, list[float]]:
    full_flops = prefill_flops(CONFIG, 0, PROMPT_LEN)
    ideal = {k: full_flops / prefill_flops(CONFIG, k, PROMPT_LEN) for k in CACHED}
    speedup = {k: [f / t for f, t in zip(seconds["full"], seconds[k])] for k in CACHED}
    reached = {k: [x / ideal[k] for x in speedup[k]] for k in CACHED}
    ms = {name: Spread.of([1e3 * t for t in ts]) for name, ts in seconds.items()}
    print(f"{f'prefill of 1024 tokens, {clock}':<28}{'computed':>9}{'ms':>26}{'speedup':>24}{'ideal':>8}"
          f"{'of ideal':>20}")
    print(f"{'transformers, full forward':<28}{PROMPT_LEN:>9}{ms['full'].format('.1f'):>26}")
    for k in CACHED:
        print(f"{f'executor, {k} cached':<28}{PROMPT_LEN - k:>9}{ms[k].format('.1f'):>26}"
              f"{Spread.of(speedup[k]).format():>24}{ideal[k]:>7.2f}x{Spread.of(reached[k]).format():>20}")
    print()
    table = {"prompt_len": PROMPT_LEN, "full_ms": round(ms["full"].median, 1), "cached": list(CACHED),
             "ms": [round(ms[k].median, 1) for k in CACHED],
             "ideal_ms": [round(ms["full"].median / ideal[k], 1) for k in CACHED]}
    return table, reached[900]


def decode_table(reference, executor: AttentionExecutor, prompt: list[int], slots: torch.Tensor,
                 rounds: int) -> dict[str, tuple[float, list[float]]]:
    """Time one decode step at 1024 context both ways; per clock, print the table and return
    the median ms of a step through the pool, and pool time / DynamicCache time per round."""
    cache = reference(torch.tensor([prompt]), cache=DynamicCache(config=CONFIG)).cache
    token = prompt[-1]

    def dynamic_cache_step() -> int:
        logits = reference(torch.tensor([[token]]), cache=cache, logits_to_keep=1).logits
        cache.crop(-1)                                       # back to 1024 tokens (a view, no copy)
        return int(logits[0, -1].argmax())                   # the next token, as the executor picks it

    variants = {"dynamic": dynamic_cache_step,
                "pool": lambda: executor.decode([ForwardRequest([token], PROMPT_LEN, slots)])}
    interleaved(variants, 1)                                                  # warm-up, not counted
    seconds = interleaved(variants, rounds, repeat=DECODE_REPEAT)
    out = {}
    for clock in CLOCKS:
        pool, dynamic = ([getattr(t, clock) for t in seconds[name]] for name in ("pool", "dynamic"))
        ratios, pool_ms = [p / d for p, d in zip(pool, dynamic)], Spread.of([1e3 * t for t in pool])
        print(f"{f'decode step at 1024 context, {clock}':<37}{'ms':>26}{'vs DynamicCache':>24}")
        print(f"{'transformers, DynamicCache':<37}{Spread.of([1e3 * t for t in dynamic]).format():>26}")
        print(f"{'executor, through the pool':<37}{pool_ms.format():>26}{Spread.of(ratios).format():>24}\n")
        out[clock] = (pool_ms.median, ratios)
    return out


def main() -> None:
    parser = model_bench_parser(__doc__, rounds=15, record="figures/data/prefill_reuse.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = seeded_model(CONFIG, seed=0)
    reference = copy.deepcopy(model)                         # stays on transformers' SDPA
    pool = pool_for(model, num_pages=(PROMPT_LEN + 16) // 16, page_size=16)
    slots = pool.slot_tensor(list(range(pool.num_pages)))    # [0 .. 1024) prompt | 1024 decode
    executor = AttentionExecutor(model, pool)
    prompt = torch.randint(0, CONFIG.vocab_size, (PROMPT_LEN,),
                           generator=torch.Generator().manual_seed(0)).tolist()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"Llama {params:.1f}M params, float32, {args.threads} thread(s), torch {torch.__version__}; "
          f"{args.rounds} interleaved rounds, median (lowest..highest)")
    print(f"before: {load_average()}\n")
    executor.prefill([ForwardRequest(prompt, 0, slots[:PROMPT_LEN])])   # the pool holds the prompt
    with torch.inference_mode():
        tables = prefill_table(reference, executor, prompt, slots[:PROMPT_LEN], args.rounds)
        decode = decode_table(reference, executor, prompt, slots[:PROMPT_LEN + 1], args.rounds)
    for clock in CLOCKS:
        tables[clock][0]["decode_ms"] = round(decode[clock][0], 1)     # the record keeps the CPU clock's
    print(f"after: {load_average()}\n")
    print(CLOCK_NOTE)
    for clock in CLOCKS:
        print(verdict(f"{clock} time: share of the ideal speed-up at 900 of 1024 cached", tables[clock][1],
                      REACHED_GOAL, judge_worst=False))
        print(verdict(f"{clock} time: decode step, pool / DynamicCache", decode[clock][1], DECODE_GOAL,
                      at_least=False, judge_worst=False))
    if args.record:
        model_name = f"Llama {params:.1f}M, fp32, {args.threads} CPU thread{'s' * (args.threads > 1)}, CPU time"
        record = {"model": model_name, "config": MODEL_SHAPE,   # so a chapter can derive the ideal
                  **tables["cpu"][0]}
        RECORD.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
