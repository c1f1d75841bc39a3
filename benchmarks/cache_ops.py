"""Replay the Mooncake synthetic trace through RadixCache at several capacities.

Each request is served through ``Router.serve``, one at a time and to its end before the next
(``radixlib.replay``; not SGLang's serving loop): match its prompt, lock the hit, allocate pages
for the rest (evicting the shortfall), insert the prompt, free the duplicate pages, unlock. 16
tokens stand for each 512-token block, page_size 16 (a page per block).

    python benchmarks/cache_ops.py [--limit N]
"""
from __future__ import annotations

import argparse
import time
from typing import NamedTuple

from radixlib import PageAllocator, RadixCache
from radixlib.router import Router
from radixlib.workloads import block_tokens, load_mooncake

TOKENS_PER_BLOCK = PAGE_SIZE = 16


class Row(NamedTuple):
    capacity: str
    pages: int
    ops: int
    seconds: float
    hit_rate: float
    evictions: int
    evicted_tokens: int


def replay(prompts: list[list[int]], capacity: str, num_pages: int) -> Row:
    """Serve every prompt through a fresh LRU cache (``Router.serve``), timed."""
    cache = RadixCache(PageAllocator(num_pages, PAGE_SIZE), eviction="lru")
    router = Router(cache)
    cached = total = evictions = 0
    start = time.perf_counter()
    for tokens in prompts:
        before = router.evicted_tokens
        cached, total = cached + router.serve(tokens).prefix_len, total + len(tokens)
        evictions += router.evicted_tokens > before                # this request had to make room
    seconds = time.perf_counter() - start
    cache.check_invariants(held=[])
    ops = 4 * len(prompts) + evictions          # match, lock, insert, unlock (+ evict)
    return Row(capacity, num_pages, ops, seconds, cached / total, evictions, router.evicted_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N requests")
    args = parser.parse_args()
    trace = load_mooncake(limit=args.limit)
    prompts = [block_tokens(r.hash_ids, TOKENS_PER_BLOCK) for r in trace]
    distinct = len({h for r in trace for h in r.hash_ids})
    longest = max(len(r.hash_ids) for r in trace)
    print(f"Mooncake synthetic trace: {len(trace)} requests, {distinct} distinct blocks, "
          f"{TOKENS_PER_BLOCK} tokens/block, page_size {PAGE_SIZE}, policy lru")
    rows = [replay(prompts, f"{pct}%", max(longest, distinct * pct // 100)) for pct in (10, 25, 50)]
    rows.append(replay(prompts, "inf", distinct + longest))
    print(f"{'capacity':>8} {'pages':>7} {'ops':>8} {'ops/s':>9} {'hit rate':>9} {'evictions':>9} {'evicted tok':>11}")
    for r in rows:
        print(f"{r.capacity:>8} {r.pages:>7} {r.ops:>8} {r.ops / r.seconds:>9,.0f} {r.hit_rate:>9.1%} "
              f"{r.evictions:>9} {r.evicted_tokens:>11}")


if __name__ == "__main__":
    main()
