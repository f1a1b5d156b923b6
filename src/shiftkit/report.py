"""Markdown tables and matplotlib plots regenerated from JSON results (`shiftkit report RESULTS_DIR`).

Reads every `*.json` / `*.jsonl` under a folder and recognises three kinds of rows:
- transfer: `shiftkit run` / `sweep` results (kind: transfer) and `shiftkit bench transfer` rows
  -> final accuracy per method (mean ± std over seeds and orders) and accuracy after each absorbed source;
- prune: `run` / `sweep` results (kind: prune) and `shiftkit bench prune` rows
  -> accuracy vs sparsity, clean and shifted;
- memory: rows with K and a peak memory (`shiftkit bench memory`) -> memory vs K;
plus train runs (accuracy per domain). Writes `report.md` and PNGs next to it.
"""
from __future__ import annotations

import statistics
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Callable

from ._files import check_output, loads_bounded, read_json, read_regular
from .checkpoints import atomic_write
from .errors import ConfigError
from .render import draw_lines, figure, markdown_table, plt, set_title
from .stats import MeanStd, format_mean_std, mean_std

__all__ = ["collect", "write_report"]

_MEM_KEYS = ("peak_rss_mib", "rss_anon_mib", "uss_mib", "peak_rss_mb", "rss_mib", "memory_mib")


def _fmt(m: float, s: float, n: int) -> str:
    return format_mean_std(MeanStd(m, s, n), spec=".0f" if abs(m) >= 10 else ".3f")  # MiB as integers, accuracies to 0.1 point


# ---- reading -----------------------------------------------------------------------------------------
def _run_rows(r: dict, kinds: dict[str, list]) -> None:
    """One `shiftkit run` result.json."""
    base = {"dataset": r["dataset"], "model": r["model"], "seed": r["seed"], "method": r["method"]}
    if r["kind"] == "transfer":
        exp = r.get("experiment", {})
        curve = [c["test_accuracy"] for c in r.get("curve", []) if c.get("source") != "final"]
        kinds["transfer"].append({**base, "target": r.get("target_index", r["target"]), "shots": exp.get("data", {}).get("few_shot"),
                                  "order": exp.get("method", {}).get("order", "temporal"), "select": "best_val",
                                  "accuracy": r["test"]["accuracy"], "curve": curve})
    elif r["kind"] == "prune" and r.get("structured"):  # channels removed: a FLOP speedup, no weight sparsity
        kinds["structured"].append({**base, "speedup": r["speedup"], "params": r["params"], "clean": r["test"]["accuracy"],
                                    "shifted": r.get("shifted_mean")})
    elif r["kind"] == "prune":
        opts = r.get("experiment", {}).get("method", {}).get("options", {})
        label = r["method"] + "".join(f" {k}={v}" for k, v in sorted(opts.items()) if k in ("scope", "hybrid_split"))
        kinds["prune"].append({**base, "method": label, "sparsity": r["sparsity"], "clean": r["test"]["accuracy"],
                               "shifted": r.get("shifted_mean"), "corrupted": r.get("corruption_mean")})
    elif r["kind"] == "train":
        kinds["train"].append({**base, "domain": r["domain"], "domains": r.get("domains", {})})


def _bench_row(row: dict, kinds: dict[str, list]) -> None:
    """One benchmark row: transfer (bench transfer), prune (bench prune's JSONL records) or memory."""
    end = row.get("end") if isinstance(row.get("end"), dict) else {}
    mem = next((k for k in _MEM_KEYS if k in row), None)
    if ("K" in row or "k" in row) and (mem or "VmHWM" in end):
        label = row.get("method", "?") + (f" ({row['arch']})" if row.get("arch") else "")
        kinds["memory"].append({"method": label, "K": row.get("K", row.get("k")),
                                "memory_mib": row[mem] if mem else end["VmHWM"],
                                "metric": mem or "peak_rss_mib", "anon_mib": end.get("RssAnon", row.get("rss_anon_mib"))})
    elif "sparsity" in row and isinstance(row.get("clean"), list):  # bench prune summary: [mean, std]
        kinds["prune_summary"].append({"method": row.get("arm", row.get("method")), "sparsity": row["sparsity"],
                                       "clean": row["clean"], "shifted": row.get("shift"), "n": row.get("n", 1)})
    elif "sparsity" in row and ("method" in row or "arm" in row):
        shifted = row.get("shifted", row.get("shift_accuracy", row.get("shifted_mean")))
        if isinstance(row.get("shift"), dict) and row["shift"]:  # bench prune: accuracy per shifted set
            shifted = statistics.fmean(row["shift"].values())
        kinds["prune"].append({"method": row.get("arm", row.get("method")), "sparsity": row["sparsity"],
                               "seed": row.get("seed", 0), "clean": row.get("clean", row.get("accuracy")),
                               "shifted": shifted, "dataset": row.get("dataset", ""), "model": row.get("model", "")})
    elif "method" in row and "accuracy" in row and "target" in row:
        kinds["transfer"].append({k: row.get(k) for k in ("dataset", "target", "shots", "seed", "order", "method",
                                                          "select", "accuracy", "curve")})


MAX_RESULT_BYTES = 64 << 20  # a result or benchmark JSON is kilobytes; bench logs a few MiB


def _documents(path: Path) -> list:
    """A JSON file is one document; a JSONL file (bench prune's run log) is one row per line. Read through
    the one bounded reader (regular files only, size and depth limits): anything else is a ConfigError."""
    if path.suffix != ".jsonl":
        return [read_json(path, ConfigError, "result file", max_bytes=MAX_RESULT_BYTES)]
    text = read_regular(path, ConfigError, "result log", max_bytes=MAX_RESULT_BYTES).decode("utf-8", "replace")
    return [{"rows": [loads_bounded(line, f"{path}:{i}", ConfigError)
                      for i, line in enumerate(text.splitlines(), 1) if line.strip()]}]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# the fields every row of a kind must hold, and their types (the tables format them)
def _text(v) -> bool:
    return isinstance(v, str)


def _number_or_none(v) -> bool:
    return v is None or _number(v)


def _numbers(n: int | None = None) -> Callable:
    return lambda v: isinstance(v, list) and (n is None or len(v) == n) and all(map(_number, v))


_ROW_TYPES: dict[str, dict[str, Callable]] = {
    "transfer": {"accuracy": _number, "method": _text, "curve": lambda v: v is None or _numbers()(v)},
    "prune": {"sparsity": _number, "clean": _number, "shifted": _number_or_none, "method": _text},
    "prune_summary": {"sparsity": _number, "n": lambda v: type(v) is int, "clean": _numbers(2),
                      "shifted": lambda v: not v or _numbers(2)(v), "method": _text},
    "structured": {"speedup": _number, "seed": lambda v: type(v) is int, "method": _text, "clean": _number,
                   "shifted": _number_or_none, "params": lambda v: _numbers(2)(v) and v[0] != 0},
    "memory": {"K": _number, "memory_mib": _number, "metric": _text, "anon_mib": _number_or_none, "method": _text},
    "train": {"seed": lambda v: type(v) is int, "domain": _text,
              "domains": lambda v: isinstance(v, dict) and all(map(_number, v.values()))},
}


def _rows_of(doc) -> tuple[dict[str, list], list[str]]:
    """The rows one document holds, by kind, and what was wrong with the rows left out (a field of the
    wrong type); ValueError when the document itself has a shape the readers do not know."""
    kinds: dict[str, list] = defaultdict(list)
    try:
        if isinstance(doc, dict) and doc.get("kind") in ("train", "transfer", "prune") and "test" in doc:
            _run_rows(doc, kinds)
        elif isinstance(doc, dict) and isinstance(doc.get("rows"), list):
            for row in doc["rows"]:
                if isinstance(row, dict):
                    _bench_row(row, kinds)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"{type(e).__name__}: {str(e)[:80]}") from None
    problems = []
    for kind, rows in kinds.items():
        keep = []
        for row in rows:
            bad = [k for k, ok in _ROW_TYPES.get(kind, {}).items() if not ok(row.get(k))]
            if bad:
                problems.append(f"a {kind} row's {', '.join(bad)} of the wrong type")
                continue
            row.update({k: str(row[k]) for k in ("dataset", "model", "domain") if k in row})  # table cells, sort keys
            keep.append(row)
        rows[:] = keep
    return kinds, problems


def collect(results_dir: str | Path) -> dict[str, list]:
    """All recognised rows under a folder (recursively), by kind. A file that cannot be read (not a regular
    file, too big or too deep) or holds a result of an unknown shape is skipped with a warning naming it."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ConfigError(f"{results_dir}: results folder {'is not a folder' if results_dir.exists() else 'not found'}")
    kinds: dict[str, list] = defaultdict(list)
    paths = sorted(p for p in results_dir.rglob("*") if p.suffix in (".json", ".jsonl"))
    for path in paths:
        try:
            found = [_rows_of(doc) for doc in _documents(path)]
        except ConfigError as e:
            warnings.warn(f"skipped {e}", stacklevel=2)
            continue
        except ValueError as e:
            warnings.warn(f"skipped {path}: not a result shiftkit knows ({e})", stacklevel=2)
            continue
        problems = [p for _, ps in found for p in ps]
        if problems:
            warnings.warn(f"{path}: skipped {len(problems)} row(s) of an unknown shape ({problems[0]})", stacklevel=2)
        for rows, _ in found:
            for kind, rs in rows.items():
                kinds[kind].extend(rs)
    return kinds


# ---- tables and plots ----------------------------------------------------------------------------------
def _method_label(r: dict) -> str:
    return r["method"] + (" (last epoch)" if r.get("select") == "last" else "")


def _transfer(rows: list[dict], out: Path) -> str:
    settings = defaultdict(list)
    for r in rows:
        settings[(r.get("dataset"), r.get("target"), r.get("shots"))].append(r)
    parts = ["## Transfer: target test accuracy\n", "Mean ± std over seeds and source orders; best first.\n"]
    for (ds, target, shots), rs in sorted(settings.items(), key=lambda kv: str(kv[0])):
        by = defaultdict(list)
        for r in rs:
            by[_method_label(r)].append(r)
        stats = sorted(((m, mean_std(x["accuracy"] for x in v)) for m, v in by.items()), key=lambda t: -t[1][0])
        parts.append(f"### {ds}, target {target}, {shots or 'all'} target labels\n")
        parts.append(markdown_table(["method", "accuracy", "runs"], [[m, _fmt(*s), s[2]] for m, s in stats]) + "\n")
        png = out / f"transfer_curve_{ds}_{target}_{shots or 'all'}.png".replace("/", "-")
        if _curve_plot(by, png, title=f"{ds} -> {target}, {shots or 'all'} labels: accuracy after each absorbed source"):
            parts.append(f"![accuracy after each source]({png.name})\n")
    return "\n".join(parts)


_STYLES = ("-", "--", "-.", ":")


def _curve_plot(by: dict[str, list[dict]], png: Path, *, title: str) -> bool:
    """Left: accuracy after each absorbed source (methods that have a per-source curve).
    Right: final accuracy of every method, mean ± std, sorted (the baselines with no curve too)."""
    curves = sorted(m for m, v in by.items() if any(r.get("curve") for r in v))
    if not curves:
        return False
    with figure(png, ncols=2, size=(12, 0.22 * len(by) + 3.6), gridspec_kw={"width_ratios": [3, 2]}) as (ax, bx):
        _curves_and_bars(by, curves, ax, bx, title)
    return True


def _curves_and_bars(by: dict[str, list[dict]], curves: list[str], ax, bx, title: str) -> None:
    colors = plt.get_cmap("tab10").colors
    color = {m: colors[i % 10] for i, m in enumerate(curves)}
    k_max = 1
    for i, m in enumerate(curves):
        rs = [r for r in by[m] if r.get("curve")]
        length = min(len(r["curve"]) for r in rs)
        ys = [mean_std(r["curve"][j] for r in rs)[0] for j in range(length)]
        k_max = max(k_max, length)
        ax.plot(range(1, length + 1), ys, marker="o", ms=3, color=color[m], ls=_STYLES[i // 10 % 4], label=m)
    set_title(ax, title)
    ax.set(xlabel="sources absorbed", ylabel="target test accuracy")
    ax.set_xticks(range(1, k_max + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    final = sorted(((m, mean_std(r["accuracy"] for r in v)) for m, v in by.items()), key=lambda t: t[1][0])
    bx.barh(range(len(final)), [t[1][0] for t in final], xerr=[t[1][1] for t in final], capsize=2,
            color=[color.get(m, "0.6") for m, _ in final])
    bx.set_yticks(range(len(final)), [m for m, _ in final], fontsize=7)
    lo = min(t[1][0] - t[1][1] for t in final)
    bx.set_xlim(max(0.0, lo - 0.05), min(1.0, max(t[1][0] + t[1][1] for t in final) + 0.03))
    set_title(bx, "final accuracy (mean ± std; grey: no per-source curve)")
    bx.set(xlabel="target test accuracy")
    bx.grid(alpha=0.3, axis="x")


def _prune_stats(rows: list[dict], summaries: list[dict]) -> dict[str, dict[float, dict]]:
    """{method: {sparsity: {"clean": (mean, std, n), "shifted": ...}}} from raw rows, else from summary rows."""
    stats: dict[str, dict[float, dict]] = defaultdict(dict)
    by = defaultdict(list)
    for r in rows:
        by[(r["method"], r["sparsity"])].append(r)
    for (m, sp), rs in by.items():
        stats[m][sp] = {k: mean_std(r[k] for r in rs) for k in ("clean", "shifted")}
    if not rows:  # only bench prune's summary JSON (rows of [mean, std] per arm and sparsity)
        for r in summaries:
            stats[r["method"]][r["sparsity"]] = {k: (*r[k], r["n"]) if r.get(k) else (float("nan"),) * 2 + (0,)
                                                 for k in ("clean", "shifted")}
    return stats


def _prune_plot(stats: dict[str, dict[float, dict]], png: Path) -> None:
    curves = sorted(m for m in stats if len(stats[m]) > 1)  # a single sparsity is a table entry, not a curve
    with figure(png, ncols=2, size=(11, 4.2), sharey=True) as axes:
        for ax, key, name in zip(axes, ("clean", "shifted"), ("clean test", "shifted (mean over shifted sets)")):
            for i, m in enumerate(curves):
                xs = [s for s in sorted(stats[m]) if stats[m][s][key][2]]
                dodge = 0.4 * (i - (len(curves) - 1) / 2)  # side by side, so error bars do not hide each other
                if xs:
                    ax.errorbar([100 * x + dodge for x in xs], [stats[m][s][key][0] for s in xs],
                                yerr=[stats[m][s][key][1] for s in xs], marker="o", ms=4, capsize=3, label=m)
            for m in (m for m in stats if set(stats[m]) == {0.0} and stats[m][0.0][key][2]):  # the dense reference
                ax.axhline(stats[m][0.0][key][0], color="0.4", ls="--", lw=1, label=f"{m} (0%)")
            set_title(ax, f"accuracy vs sparsity: {name}", fontsize=10)
            ax.set(xlabel="sparsity (% of prunable weights)", ylabel="accuracy")
            ax.grid(alpha=0.3)
        if axes[1].get_legend_handles_labels()[0]:
            axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))


def _prune(rows: list[dict], summaries: list[dict], out: Path) -> str:
    stats = _prune_stats(rows, summaries)
    sparsities = sorted({sp for per in stats.values() for sp in per})
    header = ["method"] + [f"{s:.0%} clean / shifted" for s in sparsities]
    table = [[m, *[f"{_fmt(*stats[m][s]['clean'])} / {_fmt(*stats[m][s]['shifted'])}" if s in stats[m] else "—"
                   for s in sparsities]] for m in sorted(stats)]
    _prune_plot(stats, out / "prune_accuracy_vs_sparsity.png")
    return ("## Pruning: accuracy vs sparsity\n\nMean ± std over seeds, clean test / mean over shifted sets "
            "(methods at one sparsity only are in the table, not the plot).\n\n"
            + markdown_table(header, table) + "\n\n![accuracy vs sparsity](prune_accuracy_vs_sparsity.png)\n")


def _memory(rows: list[dict], out: Path) -> str:
    """Peak RSS vs K per method (and anonymous memory beside it when measured: file pages are reclaimable)."""
    series = {"memory_mib": rows[0]["metric"].replace("_mib", "").replace("_", " ").replace("rss", "RSS")}
    if any(r.get("anon_mib") is not None for r in rows):
        series["anon_mib"] = "anonymous (RssAnon)"
    ks = sorted({r["K"] for r in rows})
    parts = ["## Memory vs K"]
    with figure(out / "memory_vs_k.png", ncols=len(series), size=(6.5 * len(series), 4.2)) as axes:
        for ax, (key, name) in zip(axes, series.items()):
            by = defaultdict(lambda: defaultdict(list))
            for r in rows:
                if r.get(key) is not None:
                    by[r["method"]][r["K"]].append(r[key])
            parts.append(f"{name} (MiB), one fresh process per point:\n\n" + markdown_table(
                ["method", *[f"K={k}" for k in ks]], [[m, *[_fmt(*mean_std(by[m].get(k, []))) for k in ks]] for m in sorted(by)]))
            lines = {m: (sorted(by[m]), [mean_std(by[m][k]).mean for k in sorted(by[m])], None) for m in sorted(by)}
            draw_lines(ax, lines, title=f"{name} vs number of sources K", xlabel="K (sources, log scale)",
                       ylabel=f"{name} (MiB)", logx=True, y_from_zero=True)
    return "\n\n".join(parts) + "\n\n![memory vs K](memory_vs_k.png)\n"


def _structured(rows: list[dict]) -> str:
    body = [[r["method"], r["model"], r["seed"], f"{r['speedup']:.2f}x", f"{r['params'][1] / r['params'][0]:.3f}",
             f"{r['clean']:.3f}", "—" if r["shifted"] is None else f"{r['shifted']:.3f}"]
            for r in sorted(rows, key=lambda r: (r["method"], r["model"], r["seed"]))]
    return ("## Structural pruning: channels removed\n\n"
            + markdown_table(["importance", "model", "seed", "MACs reduction", "params kept", "clean", "shifted"], body) + "\n")


def _train(rows: list[dict]) -> str:
    domains = sorted({d for r in rows for d in r["domains"]}, key=lambda d: (len(d), d))
    body = [[r["model"], r["domain"], r["seed"], *[f"{r['domains'].get(d, float('nan')):.3f}" for d in domains]]
            for r in sorted(rows, key=lambda r: (r["model"], r["seed"]))]
    return "## Trained models: test accuracy per domain\n\n" + markdown_table(["model", "trained on", "seed", *domains], body) + "\n"


def write_report(results_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write <out>/report.md (+ PNGs) from the JSON results under results_dir; returns the markdown path."""
    results_dir = Path(results_dir)
    out = Path(out) if out else results_dir
    kinds = collect(results_dir)  # a missing results folder is an error, not an empty report in a new folder
    check_output(out / "report.md", "report")
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"# Report: {results_dir}\n", "Regenerate with `shiftkit report " + str(results_dir) + "`.\n"]
    if kinds["transfer"]:
        parts.append(_transfer(kinds["transfer"], out))
    if kinds["prune"] or kinds["prune_summary"]:
        parts.append(_prune(kinds["prune"], kinds["prune_summary"], out))
    if kinds["structured"]:
        parts.append(_structured(kinds["structured"]))
    if kinds["memory"]:
        parts.append(_memory(kinds["memory"], out))
    if kinds["train"]:
        parts.append(_train(kinds["train"]))
    if len(parts) == 2:
        parts.append("No recognised JSON results found (run `shiftkit run` / `sweep` / `bench` first).\n")
    path = out / "report.md"
    atomic_write(path, "\n".join(parts).encode())
    return path
