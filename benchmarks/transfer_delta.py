"""Δ accuracy vs a reference method over independent units (target, seed): orders averaged within a unit
(the orders of a seed share one few-shot sample), paired 95% t-interval over units. Prints markdown.

    PYTHONPATH=src python benchmarks/transfer_delta.py benchmarks/results/transfer_accuracy_driftfmnist_100.json [ref] [order]
(order: only that source order, e.g. temporal, for methods run on one order only; FILE:tag renames that
file's methods to method@tag, to compare settings, e.g. k-fold best_single_source vs the reference one)
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

from shiftkit.bench._results import paired_interval


def table(rows: list[dict], ref: str) -> list[str]:
    unit = defaultdict(lambda: defaultdict(list))  # method -> (target, seed) -> accuracies over orders
    for r in rows:
        if r["select"] == "best_val":
            unit[r["method"]][(r["target"], r["seed"])].append(r["accuracy"])
    mean = {m: {u: statistics.fmean(v) for u, v in us.items()} for m, us in unit.items()}
    out = [f"| method | accuracy % (mean ± std over units) | Δ vs {ref} pts [95% CI] | wins/ties/losses | worst target Δ |",
           "|---|---|---|---|---|"]
    for m in sorted(mean, key=lambda m: -statistics.fmean(mean[m].values())):
        units = sorted(u for u in mean[m] if u in mean[ref])
        acc = [mean[m][u] for u in units]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        if m == ref:
            out.append(f"| {m} | {100 * statistics.fmean(acc):.1f} ± {100 * sd:.1f} | reference | | |")
            continue
        d = [mean[m][u] - mean[ref][u] for u in units]
        dm, lo, hi = paired_interval(d)
        by_t = defaultdict(list)
        for u, x in zip(units, d):
            by_t[u[0]].append(x)
        worst = min((statistics.fmean(v), t) for t, v in by_t.items())
        w, l = sum(x > 1e-9 for x in d), sum(x < -1e-9 for x in d)
        out.append(f"| {m} | {100 * statistics.fmean(acc):.1f} ± {100 * sd:.1f} | {100 * dm:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | "
                   f"{w}/{len(d) - w - l}/{l} | {100 * worst[0]:+.1f} (bin {worst[1]}) |")
    return out


if __name__ == "__main__":
    rows = []
    for spec in sys.argv[1].split(","):
        path, _, tag = spec.partition(":")
        rows += [{**r, "method": f"{r['method']}@{tag}" if tag else r["method"]} for r in json.loads(open(path).read())["rows"]]
    if len(sys.argv) > 3:
        rows = [r for r in rows if r["order"] == sys.argv[3]]
    print("\n".join(table(rows, sys.argv[2] if len(sys.argv) > 2 else "best_single_source")))
    print(f"\nunits (target, seed): {sorted({(r['target'], r['seed']) for r in rows})}")
