"""Tables, paired statistics and plots for the transfer benchmarks -> benchmarks/RESULTS.md section."""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from ..render import line_plot, markdown_table
from ..stats import format_interval, format_mean_std, mean_std, paired_interval
from .transfer import ORDERS, AccuracyConfig, setting_suffix

__all__ = ["accuracy_section", "memory_section", "paired_deltas", "reference_of", "setting_label"]

GRASP = "grasp"
REF = "best_single_source"   # the Δ reference; GRASP where a table has no best_single_source
TIE = 1e-9                   # |Δ| at or below this is a tie


def _pm(values: list[float]) -> str:
    return format_mean_std(mean_std(values), scale=100, empty="–")


def _row_key(r: dict) -> tuple:
    return (r["target"], r["order"], r["seed"])


def _units(rows: list[dict], method: str) -> dict[tuple, dict[str, dict]]:
    """(target, seed) -> order -> row of one method. A few-shot sample is drawn per (target, seed) and the
    source orders of a seed share it, so (target, seed) is the independent unit."""
    units: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        if r["method"] == method:
            units[(r["target"], r["seed"])][r["order"]] = r
    return dict(units)


def _unit_means(rows: list[dict], method: str, key: str) -> list[float]:
    """The method's `key` per independent unit, its orders averaged within the unit (sorted units)."""
    return [statistics.fmean(r[key] for r in by_order.values()) for _, by_order in sorted(_units(rows, method).items())]


def paired_deltas(rows: list[dict], method: str, ref: str) -> dict[tuple, float]:
    """Accuracy Δ = method − ref per independent unit (target, seed) both ran, each side averaged over the
    source orders both ran in that unit: a method run on the temporal order only meets the reference's
    temporal rows (an order-invariant reference has the same value on every order)."""
    theirs = _units(rows, ref)
    out = {}
    for unit, mine in sorted(_units(rows, method).items()):
        common = [o for o in mine if o in theirs.get(unit, {})]
        if common:
            out[unit] = (statistics.fmean(mine[o]["accuracy"] for o in common)
                         - statistics.fmean(theirs[unit][o]["accuracy"] for o in common))
    return out


def _delta_cells(deltas: dict[tuple, float]) -> list[str]:
    """Δ [95% CI] over units, wins/ties/losses, the worst target's mean Δ."""
    d = list(deltas.values())
    wins, losses = sum(x > TIE for x in d), sum(x < -TIE for x in d)
    by_target = defaultdict(list)
    for (target, _), x in deltas.items():
        by_target[target].append(x)
    worst, target = min((statistics.fmean(v), t) for t, v in by_target.items())
    return [format_interval(paired_interval(d), scale=100), f"{wins}/{len(d) - wins - losses}/{losses}",
            f"{100 * worst:+.1f} (bin {target})"]


def reference_of(methods: list[str]) -> str | None:
    """best_single_source, else GRASP, else none (no Δ column)."""
    return next((m for m in (REF, GRASP) if m in methods), None)


def _main_table(rows: list[dict], methods: list[str]) -> str:
    ref = reference_of(methods)
    all_orders = {r["order"] for r in rows}
    acc = {m: _unit_means(rows, m, "accuracy") for m in methods}
    body = []
    for m in sorted(methods, key=lambda m: -statistics.fmean(acc[m])):
        mr = [r for r in rows if r["method"] == m]
        deltas = paired_deltas(rows, m, ref) if ref and m != ref else {}
        cells = ["reference", "", ""] if m == ref else _delta_cells(deltas) if deltas else ["–", "", ""]
        wall = statistics.fmean(r["wall_s"] for r in mr if "reused_from_order" not in r)
        epochs = statistics.fmean(r["target_epochs"] for r in mr)
        tag = " †" if {r["order"] for r in mr} < all_orders else ""
        body.append([f"{m}{tag}", _pm(acc[m]), _pm(_unit_means(rows, m, "macro_f1")), *cells, f"{wall:.1f}",
                     f"{epochs:.0f}"])
    return markdown_table(["method", "accuracy %", "macro-F1 %", f"Δacc vs {ref or '–'} (pts) [95% CI]",
                           "wins/ties/losses", "worst target Δ", "wall s", "target epochs"], body)


def _summary(rows: list[dict], methods: list[str]) -> str:
    """One generated sentence: the winner, GRASP's rank, GRASP vs copy-all, how much GRASP copied."""
    every_order = [m for m in methods if len({r["order"] for r in rows if r["method"] == m}) > 1]
    mean = {m: statistics.fmean(r["accuracy"] for r in rows if r["method"] == m) for m in every_order}
    ranked = sorted(mean, key=mean.get, reverse=True)
    if GRASP not in mean:
        return ""
    text = (f"**Summary (generated, methods run on every order):** top = {ranked[0]} ({100 * mean[ranked[0]]:.1f}%); "
            f"GRASP ranks {ranked.index(GRASP) + 1}/{len(ranked)} ({100 * mean[GRASP]:.1f}%)")
    if "sequential_all" in mean:
        text += f"; GRASP − sequential_all = {100 * (mean[GRASP] - mean['sequential_all']):+.1f} pts"
    fr = [f for r in rows if r["method"] == GRASP and "reused_from_order" not in r for f in r["fraction_transferred"][1:]]
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
    last = {(_row_key(r), r["method"]): r["accuracy"] for r in rows if r["select"] == "last"}
    body = []
    for m in sorted({r["method"] for r in rows if r["select"] == "last"}):
        best = [r for r in rows if r["method"] == m and r["select"] == "best_val" and (_row_key(r), m) in last]
        diffs = [last[(_row_key(r), m)] - r["accuracy"] for r in best]
        body.append([m, f"{100 * statistics.fmean(r['accuracy'] for r in best):.1f}",
                     f"{100 * statistics.fmean(last[(_row_key(r), m)] for r in best):.1f}",
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
        series[m] = (list(range(1, n + 1)), [x.mean for x in ms], [x.std for x in ms] if m == GRASP else None)
    n = max((len(x) for x, _, _ in series.values()), default=0)
    for m in ("best_single_source", "greedy_soup"):  # no per-source curve: their final accuracy as a level line
        finals = [r["accuracy"] for r in rows if r["method"] == m]
        if finals and n:
            level = mean_std(finals).mean
            series[f"{m} (final)"] = ([1, n], [level, level], None)
    if series:
        line_plot(series, plot, title=title, xlabel="sources absorbed", ylabel="target accuracy (500-image test subsample, seed 0)")


def _runtime(prov: dict) -> str:
    """"cuda", "bf16", "cuda_bf16" for rows not made on the CPU in fp32 ("" for those: the published runs)."""
    dev = prov.get("device") or {}
    parts = [dev.get("device", "cpu") if isinstance(dev, dict) else str(dev), prov.get("precision", "fp32")]
    return "_".join(p for p in parts if p not in ("cpu", "fp32"))


def setting_label(config: dict) -> str:
    """What a result file's setting is, in words (its config's SETTINGS fields; absent = the default)."""
    suffix = setting_suffix(config)
    folds, grid, zoo = (config.get(k, AccuracyConfig.__dataclass_fields__[k].default) for k in ("val_folds", "lr_grid", "zoo_seed"))
    words = [f"{folds}-fold selection over train ∪ val" if folds else "selection on the val split",
             f"lr picked on target val from {{{', '.join(f'{lr:g}' for lr in grid)}}}" if grid else "each method's default lr",
             f"zoo seed {zoo}"] + ([f"run as {config['_runtime']} (not the CPU fp32 runs)"] if config.get("_runtime") else [])
    return f"{'setting ' + suffix.lstrip('_') if suffix else 'reference setting'} ({', '.join(words)})"


def _group(results: list[dict]) -> dict[tuple, tuple[list[dict], list[str], dict]]:
    """(dataset, model, shots, setting suffix) -> (rows, commands of the files they come from, a config of the
    setting), in the order the section shows them: datasets and models as they come, shots ascending, the
    reference setting first."""
    groups: dict[tuple, tuple[list[dict], list[str], dict]] = {}
    for res in results:
        where = _runtime(res.get("provenance") or {})
        config = {**res.get("config", {}), **({"_runtime": where} if where else {})}
        suffix = setting_suffix(config) + (f"_{where}" if where else "")  # a GPU's or bf16's rows: their own table
        for r in res["rows"]:
            r.setdefault("model", "small_cnn")  # rows written before the model was recorded
            rows, commands, _ = groups.setdefault((r["dataset"], r["model"], r["shots"], suffix), ([], [], config))
            rows.append(r)
            for c in res.get("commands", [res.get("command")]):
                if c not in commands:
                    commands.append(c)
    first = {k[:2]: i for i, k in reversed(list(enumerate(groups)))}
    settings = {k[3]: i for i, k in reversed(list(enumerate(groups)))}
    order = sorted(groups, key=lambda k: (first[k[:2]], k[2], k[3] != "", settings[k[3]]))
    return {k: groups[k] for k in order}


def accuracy_section(results: list[dict], plot_dir: Path) -> str:
    out = ["### Accuracy (few-shot leave-one-out targets)", "",
           "Zoo (one per dataset, architecture and zoo seed): a base trained 5 epochs on bin 0, one source per other "
           "bin fine-tuned 3 epochs from it; sources = every bin except bin 0 and the target, in temporal order. "
           "One table per setting (selection on the val split or k-fold, a tuned lr, the zoo seed): each setting is "
           "its own result file and is never pooled with another; the commands that made a table are listed above it.", "",
           "Independent units: the few-shot sample is drawn per (target, seed) and the source orders of a seed share "
           "it, so a unit is (target, seed), its orders averaged within it. Accuracy and macro-F1 = mean ± std over "
           "units. Δ = paired difference to best_single_source over the units both ran, each side averaged over the "
           "source orders both ran in that unit, with a 95% t-interval over those units: a method marked † ran on "
           "fewer orders than its table (temporal only) and meets the reference's rows of the same orders "
           "(best_single_source is order-invariant: one value per unit). wins/ties/losses count units (|Δ| ≤ 1e-9 is "
           "a tie); worst target Δ = the mean Δ of the target where it is lowest. A table without best_single_source "
           "is paired with GRASP instead, and says so. Order-invariant methods run once per seed and are reused for "
           "every order. Best-validation epoch within each stage unless stated. Test pool = the rest of the target "
           "bin (see n_test in the JSON)."]
    for (dataset, model, shots, suffix), (sub, commands, config) in _group(results).items():
        best = [r for r in sub if r["select"] == "best_val"]
        methods = list(dict.fromkeys(r["method"] for r in best))
        targets = sorted({r["target"] for r in best})
        orders = [o for o in ORDERS if any(r["order"] == o for r in best)]
        n_test = min(r["n_test"] for r in sub if "n_test" in r)
        seeds_of = {t: {r["seed"] for r in best if r["target"] == t} for t in targets}
        all_seeds = set().union(*seeds_of.values())
        ref = reference_of(methods)
        out += ["", f"#### {dataset}, {model}, {shots} target images, {setting_label(config)}", "", "Commands:", "",
                *[f"    {c}" for c in commands], "",
                f"Val {sub[0]['n_val']}, test ≥ {n_test}, orders {', '.join(orders)}, targets {targets}, seeds per "
                f"target { {t: sorted(v) for t, v in seeds_of.items()} }. "
                + (f"Δ vs {ref}." if ref == REF else f"No best_single_source in this setting: Δ vs {ref}."
                   if ref else "No best_single_source or grasp in this setting: no Δ.")]
        balanced = [t for t in targets if seeds_of[t] == all_seeds]
        common = set.intersection(*seeds_of.values())
        tables = [(balanced, all_seeds)] if len(all_seeds) > 1 and balanced else []
        if len(targets) > len(balanced) or not tables:
            tables.append((targets, common))
        for tg, sd in tables:
            part = [r for r in best if r["target"] in tg and r["seed"] in sd]
            out += ["", f"Targets {tg}, seeds {sorted(sd)}:", ""] + [_main_table(part, methods)]
            summary = _summary(part, methods)
            out += ["", summary] if summary else []
        key = ["grasp", "grasp_taylor", "grasp_stagegate", "grasp_valgate", "sequential_all", "sequential_none", "best_single_source", "fusion"]
        key = [m for m in key if m in methods]
        out += ["", "Accuracy % by source order:", ""] + [_breakdown(best, key, "order", orders)]
        out += ["", "Accuracy % by target bin:", ""] + [_breakdown(best, key, "target", targets)]
        out += ["", "What the sequential methods copied:", ""] + [_decisions([r for r in best if "reused_from_order" not in r])]
        if any(r["select"] == "last" for r in sub):
            out += ["", "Best-within-stage vs last-epoch selection:", ""] + [_select_table(sub)]
        plot = plot_dir / f"transfer_curve_{dataset}_{shots}{'' if model == 'small_cnn' else '_' + model}{suffix}.png"
        _curves([r for r in best if r["target"] == targets[-1] and r["order"] == orders[0]], plot,
                f"{dataset}, {model}, target bin{targets[-1]}, {shots} shots, {orders[0]} order")
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
