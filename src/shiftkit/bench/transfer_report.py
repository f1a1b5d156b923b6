"""Tables, paired statistics and plots for the transfer benchmarks -> benchmarks/RESULTS.md section."""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from ..render import line_plot, markdown_table
from ..stats import format_interval, format_mean_std, mean_std, paired_interval

__all__ = ["accuracy_section", "memory_section"]

REF = "grasp"


def _pm(values: list[float]) -> str:
    return format_mean_std(mean_std(values), scale=100, empty="–")


def _per_seed(rows: list[dict], key: str) -> list[float]:
    """Mean over targets and orders for each seed (the ± is the spread over seeds)."""
    by_seed = defaultdict(list)
    for r in rows:
        by_seed[r["seed"]].append(r[key])
    return [statistics.fmean(v) for _, v in sorted(by_seed.items())]


def _unit(r: dict) -> tuple:
    return (r["target"], r["order"], r["seed"])


def _main_table(rows: list[dict], methods: list[str]) -> str:
    ref = {_unit(r): r["accuracy"] for r in rows if r["method"] == REF}
    body = []
    order = sorted(methods, key=lambda m: -statistics.fmean(r["accuracy"] for r in rows if r["method"] == m))
    for m in order:
        mr = [r for r in rows if r["method"] == m]
        diffs = [r["accuracy"] - ref[_unit(r)] for r in mr if _unit(r) in ref]
        if m == REF or not diffs:
            delta, wins = "reference", ""
        else:
            delta = format_interval(paired_interval(diffs), scale=100)
            wins = f"{sum(x > 0 for x in diffs)}/{len(diffs)}"
        wall = statistics.fmean(r["wall_s"] for r in mr if "reused_from_order" not in r)
        epochs = statistics.fmean(r["target_epochs"] for r in mr)
        tag = "" if len({r["order"] for r in mr}) > 1 else " †"
        body.append([f"{m}{tag}", *[_pm(_per_seed(mr, k)) for k in ("accuracy", "macro_f1", "auroc")], delta, wins,
                     f"{wall:.1f}", f"{epochs:.0f}"])
    return markdown_table(["method", "accuracy %", "macro-F1 %", "AUROC %", "Δacc vs grasp (pts) [95% CI]", "wins/units",
                           "wall s", "target epochs"], body)


def _summary(rows: list[dict], methods: list[str]) -> str:
    """One generated sentence: the winner, GRASP's rank, GRASP vs copy-all, how much GRASP copied."""
    every_order = [m for m in methods if len({r["order"] for r in rows if r["method"] == m}) > 1]
    mean = {m: statistics.fmean(r["accuracy"] for r in rows if r["method"] == m) for m in every_order}
    ranked = sorted(mean, key=mean.get, reverse=True)
    if REF not in mean:
        return ""
    text = (f"**Summary (generated, methods run on every order):** top = {ranked[0]} ({100 * mean[ranked[0]]:.1f}%); "
            f"GRASP ranks {ranked.index(REF) + 1}/{len(ranked)} ({100 * mean[REF]:.1f}%)")
    if "sequential_all" in mean:
        text += f"; GRASP − sequential_all = {100 * (mean[REF] - mean['sequential_all']):+.1f} pts"
    fr = [f for r in rows if r["method"] == REF and "reused_from_order" not in r for f in r["fraction_transferred"][1:]]
    if fr:
        text += f"; GRASP copied {100 * statistics.fmean(fr):.1f}% of the parameters per later absorb"
    return text + "."


def _breakdown(rows: list[dict], methods: list[str], field: str, values: list) -> str:
    body = []
    for m in methods:
        accs = [[r["accuracy"] for r in rows if r["method"] == m and r[field] == v] for v in values]
        body.append([m, *[f"{100 * statistics.fmean(acc):.1f}" if acc else "–" for acc in accs]])
    return markdown_table(["method", *[f"{field}={v}" for v in values]], body)


def _select_table(rows: list[dict]) -> str:
    last = {(_unit(r), r["method"]): r["accuracy"] for r in rows if r["select"] == "last"}
    body = []
    for m in sorted({r["method"] for r in rows if r["select"] == "last"}):
        best = [r for r in rows if r["method"] == m and r["select"] == "best_val" and (_unit(r), m) in last]
        diffs = [last[(_unit(r), m)] - r["accuracy"] for r in best]
        body.append([m, f"{100 * statistics.fmean(r['accuracy'] for r in best):.1f}",
                     f"{100 * statistics.fmean(last[(_unit(r), m)] for r in best):.1f}",
                     format_interval(paired_interval(diffs), scale=100)])
    return markdown_table(["method", "best-within-stage %", "last-epoch %", "Δ last − best (pts) [95% CI]"], body)


def _decisions(rows: list[dict]) -> str:
    """How much each sequential method copied per absorb after the first (and how often val-gating undid it)."""
    body = []
    for m in dict.fromkeys(r["method"] for r in rows):
        fr = [f for r in rows if r["method"] == m for f in r.get("fraction_transferred", [])[1:] if f is not None]
        if not fr:
            continue
        gated = [g for r in rows if r["method"] == m for g in r.get("gated", [])]
        reverted = [g for r in rows if r["method"] == m for g in r.get("reverted", [])]
        body.append([m, f"{statistics.fmean(fr):.3f}", f"{sum(f >= 1 for f in fr)}/{len(fr)}",
                     f"{sum(f == 0 for f in fr)}/{len(fr)}", f"{sum(map(bool, gated))}/{len(gated)}",
                     f"{sum(map(bool, reverted))}/{len(reverted)}"])
    return markdown_table(["method", "mean fraction of parameters copied per later absorb", "absorbs copying everything",
                           "absorbs copying nothing", "gated absorbs", "reverted stages"], body)


def _curves(rows: list[dict], plot: Path, title: str) -> None:
    series = {}
    for m in sorted({r["method"] for r in rows if r["curve"]}):
        curves = [r["curve"] for r in rows if r["method"] == m and r["curve"]]
        n = min(len(c) for c in curves)
        ms = [mean_std(c[i] for c in curves) for i in range(n)]
        series[m] = (list(range(1, n + 1)), [x.mean for x in ms], [x.std for x in ms] if m == REF else None)
    n = max((len(x) for x, _, _ in series.values()), default=0)
    for m in ("best_single_source", "greedy_soup"):  # no per-source curve: their final accuracy as a level line
        finals = [r["accuracy"] for r in rows if r["method"] == m]
        if finals and n:
            level = mean_std(finals).mean
            series[f"{m} (final)"] = ([1, n], [level, level], None)
    if series:
        line_plot(series, plot, title=title, xlabel="sources absorbed", ylabel="target accuracy (500-image test subsample, seed 0)")


def accuracy_section(results: list[dict], plot_dir: Path) -> str:
    rows = [r for res in results for r in res["rows"]]
    out = ["### Accuracy (few-shot leave-one-out targets)", "", "Commands:", "",
           *[f"    {c}" for res in results for c in res.get("commands", [res.get("command")])], "",
           "Zoo (one per dataset and architecture, seed 0): a base trained 5 epochs on bin 0, one source per other bin "
           "fine-tuned 3 epochs from it; sources = every bin except bin 0 and the target, in temporal order. "
           "Variants marked † ran in temporal order only (paired on those units).", "",
           "Mean ± std over seeds (each seed averaged over targets and source orders); Δ = paired difference to "
           "GRASP over (target, order, seed) units with a 95% t-interval; *wins* = units where the method beats GRASP. "
           "Orders within a seed share the few-shot sample, so the units are not independent and the intervals are optimistic; "
           "read them with the per-order and per-target tables. Order-invariant methods run once per seed and are paired with every order. Best-validation epoch within "
           "each stage unless stated. Test pool = the rest of the target bin (see n_test in the JSON)."]
    for r in rows:
        r.setdefault("model", "small_cnn")  # rows written before the model was recorded
    for dataset, model in dict.fromkeys((r["dataset"], r["model"]) for r in rows):
        for shots in sorted({r["shots"] for r in rows if (r["dataset"], r["model"]) == (dataset, model)}):
            sub = [r for r in rows if (r["dataset"], r["model"], r["shots"]) == (dataset, model, shots)]
            best = [r for r in sub if r["select"] == "best_val"]
            methods = list(dict.fromkeys(r["method"] for r in best))
            targets = sorted({r["target"] for r in best})
            n_test = min(r["n_test"] for r in sub if "n_test" in r)
            seeds_of = {t: {r["seed"] for r in best if r["target"] == t} for t in targets}
            all_seeds = set().union(*seeds_of.values())
            out += ["", f"#### {dataset}, {model}, {shots} target images (val {sub[0]['n_val']}, test ≥ {n_test}), targets {targets}, "
                    f"seeds per target { {t: sorted(v) for t, v in seeds_of.items()} }"]
            balanced = [t for t in targets if seeds_of[t] == all_seeds]
            common = set.intersection(*seeds_of.values())
            tables = [(balanced, all_seeds)] if len(all_seeds) > 1 and balanced else []
            if len(targets) > len(balanced) or not tables:
                tables.append((targets, common))
            for tg, sd in tables:
                part = [r for r in best if r["target"] in tg and r["seed"] in sd]
                out += ["", f"Targets {tg}, seeds {sorted(sd)}:", ""] + [_main_table(part, methods)]
                out += ["", _summary(part, methods)]
            key = ["grasp", "grasp_taylor", "grasp_stagegate", "grasp_valgate", "sequential_all", "sequential_none", "best_single_source", "fusion"]
            key = [m for m in key if m in methods]
            out += ["", "Accuracy % by source order:", ""] + [_breakdown(best, key, "order", ["temporal", "reverse", "random"])]
            out += ["", "Accuracy % by target bin:", ""] + [_breakdown(best, key, "target", targets)]
            out += ["", "What the sequential methods copied:", ""] + [_decisions([r for r in best if "reused_from_order" not in r])]
            if any(r["select"] == "last" for r in sub):
                out += ["", "Best-within-stage vs last-epoch selection:", ""] + [_select_table(sub)]
            plot = plot_dir / f"transfer_curve_{dataset}_{shots}{'' if model == 'small_cnn' else '_' + model}.png"
            _curves([r for r in best if r["target"] == targets[-1] and r["order"] == "temporal"], plot,
                    f"{dataset}, {model}, target bin{targets[-1]}, {shots} shots, temporal order")
            if plot.is_file():
                out += ["", f"![accuracy after each source]({plot.relative_to(plot_dir.parent)})"]
    return "\n".join(out)


def memory_section(memory: dict, overhead: dict | None, plot_dir: Path) -> str:
    rows = sorted(memory["rows"], key=lambda r: (r["arch"], r["method"], r["k"]))
    points = [[r["arch"], r["method"], r["k"], f"{r['end']['VmHWM']:.0f}", f"{r['end']['RssAnon']:.0f}",
               f"{r['end']['RssAnon'] - r['start']['RssAnon']:.0f}", f"{r['seconds']:.1f}"] for r in rows]
    out = ["### Memory vs number of sources K (fresh process per point)", "", f"Command: `{memory['command']}`", "",
           "Synthetic sources (base + small random task vector), no fine-tuning. Peak RSS = VmHWM, anon = RssAnon "
           "after the last absorb (file pages of mapped checkpoints are reclaimable and count only in RSS). Fusion on "
           "resnet50 stops at K = 16 (it holds ~98 MiB per source; 64 would take ~6 GiB of a shared machine). The seconds "
           "column reflects a loaded shared 2-core machine, not speed.", "",
           markdown_table(["arch", "method", "K", "peak RSS MiB", "RssAnon MiB", "anon − anon at start MiB", "seconds"],
                          points)]
    ratios, images = [], []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        series = {}
        for m in dict.fromkeys(r["method"] for r in rows if r["arch"] == arch):
            pts = sorted((r["k"], r["end"]["VmHWM"], r["end"]["RssAnon"]) for r in rows if r["arch"] == arch and r["method"] == m)
            ratios.append([arch, m, f"{pts[0][0]}–{pts[-1][0]}", f"{pts[-1][1] / pts[0][1]:.3f}",
                           f"{pts[-1][2] / pts[0][2]:.3f}", "≤ 1.05" if m.startswith("grasp") else "grows"])
            series[m] = ([k for k, _, _ in pts], [v for _, v, _ in pts], None)
        plot = plot_dir / f"transfer_memory_{arch}.png"
        line_plot(series, plot, title=f"{arch}: peak RSS vs K", xlabel="K sources", ylabel="peak RSS (MiB)", logx=True,
                  y_from_zero=True)
        images.append(f"![memory {arch}]({plot.relative_to(plot_dir.parent)})")
    out += ["", markdown_table(["arch", "method", "K range", "peak RSS ratio K_max/K_min", "RssAnon ratio", "target"],
                               ratios), "", *images, ""]
    if overhead:
        out += ["### Absorb overhead", "", f"Command: `{overhead['command']}`", "",
                "Median of 3 repeats, all terms measured in one process, interleaved (ratios, not absolute seconds). "
                "Absorb = validate + load the source + 2 gradient passes on one alignment batch of 32 + 3 tiny val evaluations; "
                "taylor reads the source tensor by tensor and needs one gradient pass.", "",
                markdown_table(["arch", "absorb s", "taylor absorb s", "read s", "2 gradient passes s",
                                "ratio (target ≤ 1.5)", "taylor ratio"],
                               [[o["arch"], *[f"{o['median_s'][k]:.3f}" for k in ("absorb", "absorb_taylor", "read", "grad")],
                                 f"{o['ratio']:.2f}", f"{o['ratio_taylor']:.2f}"] for o in overhead["rows"]])]
    return "\n".join(out)
