"""The three shortfalls side by side: radixlib's Engine and the v2-shaped BaselineEngine.

Loop: every radixlib engine here runs SGLang's non-overlap loop (``event_loop_normal``, as under
``--disable-overlap-schedule``; see ``radixlib/engine.py``), not its default overlap loop.

Both run the same seeded model (each on its own copy), the same workloads and the same
scheduler settings (``radixlib.shortfalls.SETTINGS``: page size 16, lpm, a 1,024-token
prefill budget), so they make the same decisions and the same greedy tokens. Per workload:

    computed prompt tokens   what the model really ran (a hook on the input embeddings),
                             beside what the control plane claims (prompt - cached)
    prefill                  CPU seconds of all prefill forwards
    peak KV held             radixlib: pool pages in use; baseline: its DynamicCaches
    decode step              CPU milliseconds, median step
    pages leaked / twice     ``shortfalls.audit`` after the run

Then the leak over a long run, model-free (``shortfalls.leak_study``): 300 requests sharing a
256-token system prompt through a 128-page pool, one at a time.

Rounds: every round builds fresh engines over the two warm models and runs both on every
workload, in an order that rotates; the first round only warms up. Timings are medians over
the other rounds, with the range; counts are the same in every round (checked). One
intra-op thread and CPU time, as ``timing.py`` explains.

    python benchmarks/shortfalls.py [--threads 1] [--rounds 3] [--record]
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from timing import CLOCK_NOTE, MODEL_SHAPE, Spread, load_average, model_bench_parser, rotated
from transformers import LlamaConfig

from radixlib.models import seeded_model
from radixlib.shortfalls import leak_study, side_by_side, workloads
from radixlib.workloads import shared_prefix

CONFIG = LlamaConfig(**MODEL_SHAPE, tie_word_embeddings=True, max_position_embeddings=4096, bos_token_id=None,
                     eos_token_id=None, pad_token_id=None)
RECORD = Path(__file__).resolve().parent.parent / "figures" / "data" / "shortfalls.json"
LEAK_POOL, LEAK_REQUESTS = 128, 300


def measure(models, rounds: int) -> dict[str, list]:
    """Every round's (radixlib, baseline) ``Side``s per workload; round 0 (warm-up) dropped."""
    loads = workloads(CONFIG.vocab_size)
    runs = {name: [] for name in loads}
    for r in range(rounds + 1):
        for name in rotated(list(runs), r):
            pair = side_by_side(models, loads[name])
            if r:
                runs[name].append(pair)
    return runs


def summary(pairs) -> dict:
    """The workload's numbers: counts from the first round (all rounds agree), timings as spreads."""
    ours, base = pairs[0]
    for o, b in pairs:
        assert (o.computed, b.computed, o.peak_kv_bytes, b.peak_kv_bytes, o.audit, b.audit) == \
               (ours.computed, base.computed, ours.peak_kv_bytes, base.peak_kv_bytes, ours.audit, base.audit)
    row = {"requests": len(ours.outputs), "prompt_tokens": ours.prompt_tokens, "cached": sum(ours.cached),
           "same_tokens": all(o.outputs == b.outputs and o.cached == b.cached for o, b in pairs)}
    for side, index in (("radixlib", 0), ("baseline", 1)):
        s = pairs[0][index]
        row[side] = {"claimed": s.claimed, "computed": s.computed["prefill"], "peak_kv_mib": s.peak_kv_bytes / 2**20,
                     "leaked": len(s.audit.leaked), "owned_twice": len(s.audit.owned_twice),
                     "prefill_s": Spread.of([p[index].prefill_seconds for p in pairs])._asdict(),
                     "decode_ms": Spread.of([1e3 * p[index].decode_step_seconds for p in pairs])._asdict()}
    row["prefill_ratio"] = Spread.of([b.prefill_seconds / o.prefill_seconds for o, b in pairs])._asdict()
    row["decode_ratio"] = Spread.of([b.decode_step_seconds / o.decode_step_seconds for o, b in pairs])._asdict()
    return row


def print_workload(name: str, row: dict) -> None:
    o, b = row["radixlib"], row["baseline"]
    print(f"\n{name}: {row['requests']} requests, {row['prompt_tokens']:,} prompt tokens, "
          f"{row['cached']:,} cached by the router; same tokens: {row['same_tokens']}")
    print(f"{'':34}{'radixlib':>16}{'baseline':>16}{'baseline/radixlib':>22}")
    lines = [("prompt tokens claimed (control)", f"{o['claimed']:,}", f"{b['claimed']:,}", ""),
             ("prompt tokens computed (hook)", f"{o['computed']:,}", f"{b['computed']:,}",
              f"{b['computed'] / o['computed']:.1f}x"),
             ("prefill, CPU s", f"{o['prefill_s']['median']:.2f}", f"{b['prefill_s']['median']:.2f}",
              Spread(**row["prefill_ratio"]).format(".1f") + "x"),
             ("peak KV held, MiB", f"{o['peak_kv_mib']:.1f}", f"{b['peak_kv_mib']:.1f}",
              f"{b['peak_kv_mib'] / o['peak_kv_mib']:.1f}x"),
             ("decode step, CPU ms (median)", f"{o['decode_ms']['median']:.1f}", f"{b['decode_ms']['median']:.1f}",
              Spread(**row["decode_ratio"]).format(".1f") + "x"),
             ("pages leaked / owned twice", f"{o['leaked']} / {o['owned_twice']}",
              f"{b['leaked']} / {b['owned_twice']}", "")]
    for label, mine, theirs, ratio in lines:
        print(f"{label:<34}{mine:>16}{theirs:>16}{ratio:>22}")


def leak_summary() -> dict:
    prompts = shared_prefix(LEAK_REQUESTS, 256, 40, seed=2)
    runs = leak_study(prompts, num_pages=LEAK_POOL, page_size=16)
    out = {name: {"served": len(run.leaked), "leaked": run.leaked, "usable": run.usable, "error": run.error}
           for name, run in runs.items()}
    print(f"\nthe leak over a long run (model-free): {LEAK_REQUESTS} requests, 256 shared + 40 own tokens, "
          f"8 new, one at a time, a {LEAK_POOL}-page pool of 16 tokens")
    for name, run in out.items():
        ending = f"stops: {run['error']}" if run["error"] else "serves them all (check_invariants after each)"
        print(f"  {name:<9} served {run['served']:>3}, {run['leaked'][-1]:>3} pages leaked, "
              f"{run['usable'][-1]:>3} usable at the end; {ending}")
    return out


def main() -> None:
    parser = model_bench_parser(__doc__, rounds=3, record="figures/data/shortfalls.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = (seeded_model(CONFIG), seeded_model(CONFIG))
    params = sum(p.numel() for p in models[0].parameters()) / 1e6
    model_name = f"Llama {params:.1f}M, fp32, {args.threads} CPU thread(s), torch {torch.__version__}"
    print(f"model: {model_name}; {load_average()}\n{CLOCK_NOTE}")
    rows = {name: summary(pairs) for name, pairs in measure(models, args.rounds).items()}
    for name, row in rows.items():
        print_workload(name, row)
    leaks = leak_summary()
    if args.record:
        RECORD.write_text(json.dumps({"model": model_name, "rounds": args.rounds, "workloads": rows,
                                      "leak_study": leaks}, indent=1) + "\n")


if __name__ == "__main__":
    main()
