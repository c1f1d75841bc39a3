"""Data-parallel routing on the Mooncake synthetic trace: sglang-router 0.3.2's policies side by side.

Loop: every radixlib engine here runs SGLang's non-overlap loop (``event_loop_normal``, as under
``--disable-overlap-schedule``; see ``radixlib/engine.py``), not its default overlap loop.

The whole trace (3,993 requests at their arrival times, 16 tokens per 512-token block,
page_size 16) runs on N model-free workers (``radixlib.cluster``) that share a fraction of
the trace's distinct pages evenly. Per policy it prints the hit rate (all workers), the
load imbalance (max/mean of each worker's requests in flight, sampled at arrivals), the
time to first token from the cost model, and the hit rate a global index would have found
(the longest prefix on *any* worker at arrival); the last row is the bound, one worker
with all the memory and speed.

    python benchmarks/cluster.py                 the table for 4 workers at 50% capacity
    python benchmarks/cluster.py --all           2, 4 and 8 workers, 10% capacity, the trade-off sweep
    python benchmarks/cluster.py --router        also the real router beside ours (needs the [cluster] extra)
    python benchmarks/cluster.py --all --router --record
                                                 write figures/data/cluster.json and router_decisions.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from timing import timed

from radixlib.cluster import POLICIES, CacheAwareConfig, ClusterRun, run_cluster, run_ideal, trace_arrivals
from radixlib.replay import distinct_pages

DATA = Path(__file__).resolve().parent.parent / "figures" / "data"
PAGE_SIZE = 16
THRESHOLDS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9)           # cache_threshold, balance at its defaults
ABS_THRESHOLDS = (0, 1, 2, 4, 8, 16, 32)              # balance_abs_threshold, rel 1.5, cache_threshold 0.3


def row(run: ClusterRun, seconds: float, capacity: float) -> dict:
    return {"workers": run.num_workers, "capacity": capacity, "policy": run.policy,
            "hit_rate": round(run.hit_rate, 6), "imbalance": round(run.imbalance, 4),
            "mean_ttft": round(run.mean_ttft, 4), "p90_ttft": round(run.ttft_quantile(0.9), 4),
            "global_hit_rate": round(run.global_hit_rate, 6), "rules": run.rules, "seconds": round(seconds, 1)}


def wall_timed(fn, *args, **kwargs) -> tuple[ClusterRun, float]:
    """``fn(*args, **kwargs)`` and the wall seconds it took."""
    run, seconds = timed(lambda: fn(*args, **kwargs))
    return run, seconds.wall


def policy_rows(arrivals, num_workers: int, capacity: float, total_pages: int) -> list[dict]:
    """Every policy, cache_aware with the older smallest-tree rule, and the one big worker."""
    rows = []
    for policy in POLICIES:
        rows.append(row(*wall_timed(run_cluster, arrivals, num_workers, total_pages, policy), capacity))
    older = CacheAwareConfig(low_match="smallest_tree")
    run, seconds = wall_timed(run_cluster, arrivals, num_workers, total_pages, "cache_aware", config=older)
    rows.append(row(run._replace(policy="cache_aware (smallest tree)"), seconds, capacity))
    rows.append(row(*wall_timed(run_ideal, arrivals, num_workers, total_pages), capacity))
    return rows


def sweep(arrivals, total_pages: int) -> list[dict]:
    """cache_aware on 4 workers as its knobs move: the affinity-versus-balance trade-off."""
    configs = ([CacheAwareConfig(cache_threshold=t) for t in THRESHOLDS]
               + [CacheAwareConfig(low_match="smallest_tree", cache_threshold=t) for t in THRESHOLDS]
               + [CacheAwareConfig(balance_abs_threshold=a) for a in ABS_THRESHOLDS])
    out = []
    for config in configs:
        run = run_cluster(arrivals, 4, total_pages, "cache_aware", config=config)
        out.append({"cache_threshold": config.cache_threshold, "balance_abs_threshold": config.balance_abs_threshold,
                    "balance_rel_threshold": config.balance_rel_threshold, "low_match": config.low_match,
                    "hit_rate": round(run.hit_rate, 6), "imbalance": round(run.imbalance, 4),
                    "mean_ttft": round(run.mean_ttft, 3)})
    return out


def print_rows(rows: list[dict]) -> None:
    print(f"{'workers':>7} {'capacity':>8}  {'policy':<28} {'hit rate':>8} {'imbalance':>9} "
          f"{'TTFT mean':>9} {'p90':>7} {'global idx':>10} {'run s':>6}")
    for r in rows:
        print(f"{r['workers']:>7} {r['capacity']:>8.0%}  {r['policy']:<28} {r['hit_rate']:>8.1%} "
              f"{r['imbalance']:>9.2f} {r['mean_ttft']:>8.2f}s {r['p90_ttft']:>6.2f}s "
              f"{r['global_hit_rate']:>10.1%} {r['seconds']:>6.1f}")


def print_sweep(points: list[dict]) -> None:
    print("\ncache_aware on 4 workers, 50% capacity, as its knobs move")
    print(f"{'low match rule':<15} {'threshold':>9} {'abs':>4} {'rel':>4} {'hit rate':>8} {'imbalance':>9} {'TTFT':>7}")
    for p in points:
        print(f"{p['low_match']:<15} {p['cache_threshold']:>9.1f} {p['balance_abs_threshold']:>4} "
              f"{p['balance_rel_threshold']:>4.1f} {p['hit_rate']:>8.1%} {p['imbalance']:>9.2f} "
              f"{p['mean_ttft']:>6.2f}s")


def real_router(record: bool) -> None:
    """Each scenario through sglang-router 0.3.2 and through ours, worker by worker."""
    from radixlib.reference.gateway import SCENARIOS, compare, record_decisions, router_unavailable
    reason = router_unavailable()
    if reason:
        print(f"\nreal router skipped: {reason}")
        return
    comparisons = [compare(s) for s in SCENARIOS]
    for c in comparisons:
        print(f"\n{c.name}: {'agree' if c.agree else 'DIFFER'} on {len(c.real)} requests")
        print("  sglang-router:", c.real)
        print("  radixlib     :", [d.worker for d in c.ours])
    if record:
        record_decisions(comparisons, DATA / "router_decisions.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--all", action="store_true", help="2, 4 and 8 workers, 10%% capacity, and the sweep")
    parser.add_argument("--router", action="store_true", help="also run the real router's scenarios")
    parser.add_argument("--record", action="store_true", help="write figures/data/ (with --all)")
    args = parser.parse_args()
    arrivals = trace_arrivals()
    distinct = distinct_pages([a.tokens for a in arrivals], PAGE_SIZE)
    print(f"Mooncake synthetic trace: {len(arrivals)} requests over {arrivals[-1].time:.0f} s, "
          f"{distinct} distinct pages of {PAGE_SIZE} tokens")
    setups = [(n, 0.5) for n in (2, 4, 8)] + [(4, 0.1)] if args.all else [(args.workers, 0.5)]
    rows = [r for n, capacity in setups for r in policy_rows(arrivals, n, capacity, int(distinct * capacity))]
    print_rows(rows)
    points = sweep(arrivals, int(distinct * 0.5)) if args.all else []
    if points:
        print_sweep(points)
    if args.record and args.all:
        data = {"trace": "Mooncake synthetic trace (FAST'25), 16 tokens per block, page_size 16",
                "distinct_pages": distinct, "rows": rows, "sweep": points}
        (DATA / "cluster.json").write_text(json.dumps(data, indent=1) + "\n")
    if args.router:
        real_router(args.record)


if __name__ == "__main__":
    main()
