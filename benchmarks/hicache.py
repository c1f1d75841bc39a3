"""A host-memory tier (HiCache) on the Mooncake synthetic trace: hit rate by (device, host) capacity and policy.

Loop: one request at a time, to its end before the next (``Router.serve``), not SGLang's serving loop.

The whole trace (3,993 requests, 16 tokens per 512-token block, page_size 16) is served in
order through ``Router.serve`` (a one-tier ``RadixCache``, LRU) and through ``HiRouter.serve``
(a ``HiRadixCache`` whose host pool is 1x, 2x or 4x the device pool), for each write policy.
The device pool is a fraction of the trace's distinct pages. Hit rates count prompt tokens
not computed, from either tier, over all prompt tokens (the router's len-1 cap applies to
both). Traffic is in real tokens (x32: one replayed token stands for 32 of the trace's).

Two tables: hit rate by device capacity and host ratio for every write policy, and, at 10%
device capacity, the host traffic of each policy (tokens written device -> host and loaded
back). The target line checks the issue's goal: at 10% of the distinct pages, a host pool 4x
the device lifts the hit rate from the one-tier ~26% to at least 55% (the bound is 63.8%).
Model-free and deterministic; the time each replay took is printed for reference only.

    python benchmarks/hicache.py [--quick]
"""
from __future__ import annotations

import argparse
from functools import partial

from timing import timed

from radixlib.hicache import WRITE_POLICIES, hi_replay
from radixlib.replay import distinct_pages, replay
from radixlib.workloads import mooncake_prompts

PAGE_SIZE = 16
SCALE = 512 // 16                      # real tokens per replayed token
FRACTIONS = (0.05, 0.10, 0.25, 0.50)   # device pool, as a share of the trace's distinct pages
RATIOS = (1, 2, 4)                     # host pool / device pool
TARGET = 0.55


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first 1,000 requests, 10%% only")
    args = parser.parse_args()
    prompts = mooncake_prompts(16, limit=1000 if args.quick else None)
    distinct = distinct_pages(prompts, PAGE_SIZE)
    fractions = (0.10,) if args.quick else FRACTIONS
    unlimited = replay(prompts, distinct, PAGE_SIZE).hit_rate
    print(f"{len(prompts)} requests, {distinct} distinct pages; room for everything: {unlimited:.1%}\n")
    short = {"write_through": "through", "write_through_selective": "selective", "write_back": "back"}
    print(f"{'device':>7} {'one tier':>9} " + " ".join(f"{short[p] + ' ' + str(r) + 'x':>18}"
                                                     for p in WRITE_POLICIES for r in RATIOS))
    at_10: dict[tuple[str, int], object] = {}
    for fraction in fractions:
        pages = int(fraction * distinct)
        cells = []
        for policy in WRITE_POLICIES:
            for ratio in RATIOS:
                run, seconds = timed(partial(hi_replay, prompts, pages, ratio * pages, PAGE_SIZE, policy))
                cells.append(f"{run.hit_rate:>11.1%} ({seconds.cpu:3.1f}s)")
                if fraction == 0.10:
                    at_10[policy, ratio] = run
        print(f"{fraction:>7.0%} {replay(prompts, pages, PAGE_SIZE).hit_rate:>9.1%} " + " ".join(cells))
    print("\nat 10% device capacity (real tokens, millions):")
    print(f"{'write policy':<24} {'host':>5} {'hit rate':>9} {'written':>9} {'loaded back':>12}")
    for (policy, ratio), run in at_10.items():
        print(f"{policy:<24} {ratio:>4}x {run.hit_rate:>9.1%} {SCALE * run.written_tokens / 1e6:>9.1f} "
              f"{SCALE * run.loaded_tokens / 1e6:>12.1f}")
    print(f"\ntarget: a 4x host pool at 10% device capacity reaches >= {TARGET:.0%}")
    for policy in WRITE_POLICIES:
        rate = at_10[policy, 4].hit_rate
        print(f"  {policy:<24} {rate:.1%}  {'met' if rate >= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
