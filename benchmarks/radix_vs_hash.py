"""The radix tree beside vLLM-style hashed blocks, on the same traffic (chapter 09).

Loop: both replays serve one request at a time, to its end before the next; no serving loop is modelled.

Four tables, printed side by side:

1. Hit rate against capacity on the Mooncake synthetic trace (16 tokens per 512-token block):
   the tree at page sizes 1 and 16 (``radixlib.replay.replay``, LRU) and blocks of 16
   (``radixlib.block_hash.replay_blocks``), same pools in tokens.
2. Lookups per second on the same stream: every Mooncake prompt looked up in a cache that
   served the whole trace. The tree's ``match_prefix``; the blocks' hash chain (sha256, as
   vLLM) plus probes, the same with Python's ``hash`` ("blocks (hash)": radixlib's own cheaper
   variant, not a vLLM option), and the probes alone (hashes kept).
3. How one lookup's cost grows with the prompt length and with the number of cached
   sequences (random prompts; each lookup hits one cached sequence whole).
4. Metadata bytes per cached token (``radixlib.block_hash.metadata_bytes``) after the trace.

Timings are the fastest of interleaved rounds (``timeit``'s advice: noise only adds).
``--record`` also writes the numbers to ``figures/data/radix_vs_hash.json``, which chapter 09 plots.

    python benchmarks/radix_vs_hash.py [--quick] [--record]
"""
from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from radixlib.block_hash import BlockCache, metadata_bytes, replay_blocks
from radixlib.pages import PageAllocator
from radixlib.radix_cache import RadixCache
from radixlib.replay import distinct_pages, replay
from radixlib.router import Router
from radixlib.workloads import mooncake_prompts

RECORD = Path(__file__).resolve().parent.parent / "figures" / "data" / "radix_vs_hash.json"
BLOCK = 16
CAPACITIES = (0.05, 0.1, 0.2, 0.4, 1.0)          # fractions of the trace's distinct blocks
LENGTHS = (64, 256, 1024, 4096)                   # prompt tokens (scaling with length; 64 cached sequences)
SEQUENCES = (16, 128, 1024, 4096)                 # cached sequences (scaling with count; 256 tokens each)


def best_seconds(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Fastest wall time of each variant over ``rounds`` rounds that run every variant once, in turn.

    The minimum, as ``timeit`` advises: on a shared machine the noise only ever adds time. GC is off.
    """
    times = {name: [] for name in variants}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, run in variants.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    finally:
        gc.enable()
    return {name: min(ts) for name, ts in times.items()}


def warm(prompts: list[list[int]]) -> dict[str, object]:
    """A cache of each kind that served every prompt with room for all of them."""
    pages = sum(len(p) for p in prompts) // BLOCK + len(prompts) + 1
    caches = {"tree, page 1": Router(RadixCache(PageAllocator(pages * BLOCK, 1))),
              "tree, page 16": Router(RadixCache(PageAllocator(pages, BLOCK))),
              "blocks (sha256)": BlockCache(PageAllocator(pages, BLOCK)),
              "blocks (hash)": BlockCache(PageAllocator(pages, BLOCK), hash_fn=hash)}
    for cache in caches.values():
        for tokens in prompts:
            cache.serve(tokens)
    return caches


def lookups(caches: dict[str, object], prompts: list[list[int]]) -> dict[str, Callable[[], object]]:
    """One callable per method that looks every prompt up once."""
    blocks, keyed = caches["blocks (sha256)"], [caches["blocks (sha256)"].request(p).hashes for p in prompts]
    out = {name: (lambda c=c.cache: [c.match_prefix(p) for p in prompts])
           for name, c in caches.items() if name.startswith("tree")}
    for name in ("blocks (sha256)", "blocks (hash)"):
        out[f"{name}: hash + probe"] = lambda c=caches[name]: [c.lookup(c.request(p).hashes, len(p)) for p in prompts]
    out["blocks: probe only"] = lambda: [blocks.lookup(h, len(h) * BLOCK) for h in keyed]
    return out


def hit_rate_table(prompts: list[list[int]]) -> dict[str, list[float]]:
    distinct, longest = distinct_pages(prompts, BLOCK), max(len(p) for p in prompts) // BLOCK
    sizes = [max(longest, int(distinct * f)) for f in CAPACITIES]
    rates = {"tree, page 1": [replay(prompts, n * BLOCK, 1).hit_rate for n in sizes],
             "tree, page 16": [replay(prompts, n, BLOCK).hit_rate for n in sizes],
             "blocks of 16": [replay_blocks(prompts, n, BLOCK).hit_rate for n in sizes]}
    print(f"\n1. hit rate (% of prompt tokens), Mooncake, {len(prompts)} requests, LRU")
    print(f"{'capacity (% of distinct blocks)':<34}" + "".join(f"{100 * f:>8.0f}" for f in CAPACITIES))
    for name, row in rates.items():
        print(f"{name:<34}" + "".join(f"{100 * r:>8.2f}" for r in row))
    return rates


def ops_table(prompts: list[list[int]], caches: dict[str, object], rounds: int) -> dict[str, float]:
    seconds = best_seconds(lookups(caches, prompts), rounds)
    rates = {name: len(prompts) / s for name, s in seconds.items()}
    base = rates["tree, page 16"]
    print(f"\n2. lookups per second, the {len(prompts)} Mooncake prompts against a cache holding all of them")
    for name, rate in rates.items():
        print(f"{name:<34}{rate:>12,.0f}/s{rate / base:>8.2f}x the tree at page 16")
    return rates


def random_cache_lookups(num_sequences: int, length: int, rounds: int) -> dict[str, float]:
    """Microseconds per lookup of a cached sequence, ``num_sequences`` of ``length`` tokens cached."""
    rng = random.Random(num_sequences * 7919 + length)
    prompts = [[rng.randrange(32_000) for _ in range(length)] for _ in range(num_sequences)]
    caches = warm(prompts)
    probe = prompts[:: max(1, num_sequences // 64)]
    seconds = best_seconds(lookups(caches, probe), rounds)
    return {name: 1e6 * s / len(probe) for name, s in seconds.items()}


def scaling_table(rounds: int, lengths=LENGTHS, sequences=SEQUENCES) -> dict[str, dict]:
    by_length = {n: random_cache_lookups(64, n, rounds) for n in lengths}
    by_count = {s: random_cache_lookups(s, 256, rounds) for s in sequences}
    for title, table in (("prompt length (64 cached sequences)", by_length),
                         ("cached sequences (256 tokens each)", by_count)):
        print(f"\n3. microseconds per lookup against {title}")
        print(f"{'':<34}" + "".join(f"{k:>10}" for k in table))
        for name in next(iter(table.values())):
            print(f"{name:<34}" + "".join(f"{table[k][name]:>10.1f}" for k in table))
    return {"by_length": by_length, "by_count": by_count}


def memory_table(caches: dict[str, object]) -> dict[str, float]:
    per_token = {}
    for name, cache in caches.items():
        inner = cache.cache if isinstance(cache, Router) else cache
        tokens = inner.total_size if isinstance(inner, RadixCache) else len(inner.snapshot()[1]) * BLOCK
        per_token[name] = metadata_bytes(inner, exclude=[inner.allocator]) / tokens
    print("\n4. metadata bytes per cached token, after the whole trace (room for all of it)")
    for name, b in per_token.items():
        print(f"{name:<34}{b:>10.1f}")
    return per_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first 1,000 requests, fewer rounds")
    parser.add_argument("--record", action="store_true", help="also write figures/data/radix_vs_hash.json")
    args = parser.parse_args()
    prompts = mooncake_prompts(BLOCK, limit=1000 if args.quick else None)
    rounds = 3 if args.quick else 15
    recorded = {"capacities": CAPACITIES, "hit_rate": hit_rate_table(prompts)}
    caches = warm(prompts)
    recorded["lookups_per_second"] = ops_table(prompts, caches, rounds)
    recorded["scaling_us"] = scaling_table(rounds)
    recorded["bytes_per_token"] = memory_table(caches)
    if args.record:
        RECORD.write_text(json.dumps(recorded, indent=1) + "\n")
        print(f"\nwrote {RECORD}")


if __name__ == "__main__":
    main()
