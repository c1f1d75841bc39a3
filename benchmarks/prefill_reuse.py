"""Prefix reuse on a CPU: what caching part of a 1024-token prompt saves, measured next to ideal.

Two tables, medians over rounds that interleave the variants (so a noisy neighbour slows
all of them alike):

1. Prefill of one 1024-token prompt: transformers' own full forward (SDPA), then the
   executor with 0, 256, 512, 900 and 1000 of its tokens already in the pool. "ideal" is
   the ratio of FLOPs computed from the config; it is below the token ratio because the
   new tokens still attend over the cached prefix. A few new tokens cost about a decode
   step whatever their FLOPs: the forward is then bound by reading the weights.
2. One decode step at 1024 tokens of context: through the pool vs transformers' DynamicCache.

Model: a seeded 39.6M-parameter Llama (hidden 512, 8 layers, 8 heads, 4 KV heads), float32,
2 threads. Run: ``python benchmarks/prefill_reuse.py [--record]`` (about a minute on an idle
machine; ``--record`` also stores the numbers for ``make figures``).
"""
from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import DynamicCache, LlamaConfig

from radixlib.executor import AttentionExecutor, ForwardRequest, pool_for
from radixlib.models import prefill_flops, seeded_model

PROMPT_LEN, CACHED = 1024, (0, 256, 512, 900, 1000)
RECORD = Path(__file__).resolve().parent.parent / "figures" / "data" / "prefill_reuse.json"
PREFILL_ROUNDS, DECODE_ROUNDS = 15, 60
CONFIG = LlamaConfig(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                     intermediate_size=1376, vocab_size=32000, tie_word_embeddings=True,
                     max_position_embeddings=2048)


def median_ms(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median wall time of each variant; every round runs all variants once, in turn."""
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(1e3 * (time.perf_counter() - start))
    return {name: statistics.median(ts) for name, ts in times.items()}


def prefill_table(reference, executor: AttentionExecutor, prompt: list[int], slots: torch.Tensor) -> dict:
    """Print the prefill table; return its numbers (as ``--record`` stores them)."""
    variants = {"full": lambda: reference(torch.tensor([prompt]), use_cache=False, logits_to_keep=1)}
    for k in CACHED:
        variants[k] = lambda k=k: executor.prefill([ForwardRequest(prompt[k:], k, slots)])
    ms = median_ms(variants, PREFILL_ROUNDS)
    print(f"{'prefill of 1024 tokens':<30}{'computed':>9}{'ms':>9}{'speedup':>9}{'ideal':>8}{'of ideal':>10}")
    print(f"{'transformers, full forward':<30}{PROMPT_LEN:>9}{ms['full']:>9.1f}")
    full_flops, reached = prefill_flops(CONFIG, 0, PROMPT_LEN), {}
    for k in CACHED:
        speedup, ideal = ms["full"] / ms[k], full_flops / prefill_flops(CONFIG, k, PROMPT_LEN)
        reached[k] = speedup / ideal
        print(f"{f'executor, {k} cached':<30}{PROMPT_LEN - k:>9}{ms[k]:>9.1f}{speedup:>8.2f}x"
              f"{ideal:>7.2f}x{reached[k]:>10.2f}")
    return {"prompt_len": PROMPT_LEN, "full_ms": round(ms["full"], 1), "cached": list(CACHED),
            "ms": [round(ms[k], 1) for k in CACHED], "reached_900": reached[900],
            "ideal_ms": [round(ms["full"] * prefill_flops(CONFIG, k, PROMPT_LEN) / full_flops, 1) for k in CACHED]}


def decode_table(reference, executor: AttentionExecutor, prompt: list[int], slots: torch.Tensor) -> float:
    """Print one decode step at 1024 context both ways; return pool time / DynamicCache time."""
    with torch.inference_mode():
        cache = reference(torch.tensor([prompt]), cache=DynamicCache(config=CONFIG)).cache
    token = prompt[-1]

    def dynamic_cache_step():
        reference(torch.tensor([[token]]), cache=cache, logits_to_keep=1)
        cache.crop(-1)                                       # back to 1024 tokens (a view, no copy)

    ms = median_ms({"pool": lambda: executor.decode([ForwardRequest([token], PROMPT_LEN, slots)]),
                    "dynamic": dynamic_cache_step}, DECODE_ROUNDS)
    print(f"\n{'decode step at 1024 context':<30}{'ms':>9}")
    print(f"{'transformers, DynamicCache':<30}{ms['dynamic']:>9.2f}")
    print(f"{'executor, through the pool':<30}{ms['pool']:>9.2f}{ms['pool'] / ms['dynamic']:>8.2f}x")
    return ms["pool"] / ms["dynamic"]


def main() -> None:
    record = "--record" in sys.argv[1:]          # also write figures/data/prefill_reuse.json
    torch.set_num_threads(2)
    model = seeded_model(CONFIG, seed=0)
    reference = copy.deepcopy(model)                         # stays on transformers' SDPA
    pool = pool_for(model, num_pages=(PROMPT_LEN + 16) // 16, page_size=16)
    slots = pool.slot_tensor(list(range(pool.num_pages)))    # [0 .. 1024) prompt | 1024 decode
    executor = AttentionExecutor(model, pool)
    prompt = torch.randint(0, CONFIG.vocab_size, (PROMPT_LEN,),
                           generator=torch.Generator().manual_seed(0)).tolist()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"Llama {params:.1f}M params, float32, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs before the run "
          f"(other work slows the small forwards most)\n")
    executor.prefill([ForwardRequest(prompt, 0, slots[:PROMPT_LEN])])   # the pool holds the prompt
    with torch.inference_mode():
        table = prefill_table(reference, executor, prompt, slots[:PROMPT_LEN])
        ratio = decode_table(reference, executor, prompt, slots[:PROMPT_LEN + 1])
    reached = table.pop("reached_900")
    print(f"\ntarget: >= 0.80 of ideal at 900 cached: {reached:.2f} {'met' if reached >= 0.8 else 'MISSED'}")
    print(f"target: decode within 1.15x of DynamicCache: {ratio:.2f}x {'met' if ratio <= 1.15 else 'MISSED'}")
    if record:
        model_name = f"Llama {params:.1f}M, fp32, {torch.get_num_threads()} CPU threads"
        RECORD.write_text(json.dumps({"model": model_name, **table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
