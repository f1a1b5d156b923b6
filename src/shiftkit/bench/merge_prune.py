"""Merge -> prune under shift: one `pipeline:` experiment per config (step 0 merges the zoo's sources on the
target bin, step 1 removes channels of the merged model with Torch-Pruning and fine-tunes it), run as a seed
sweep; one row per (config, seed) -> benchmarks/results/merge_prune.json and the `merge_prune` section of
benchmarks/RESULTS.md.

The sweep itself (running, reusing finished points) is `shiftkit.sweep`'s, driven by `shiftkit bench
merge-prune`; this module only checks the configs, reads the points' results into rows and renders them, so
the section regenerates from the JSON alone (`--report-only`).

Target = each step's test accuracy (the target bin's test pool); other bins = mean accuracy on the other
drift bins. Δ = pruned - merged, paired by seed.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..errors import ConfigError, DataError
from ..render import markdown_table
from ..stats import format_interval, format_mean_std, mean_std, paired_interval
from . import _results

__all__ = ["SECTION", "config_paths", "check_config", "point_row", "markdown", "write", "report"]

SECTION = "merge_prune"
RESULT_FILE = "merge_prune.json"


def config_paths(spec: str) -> list[Path]:
    """`--configs`: comma-separated YAML files and/or folders (their *.yaml, sorted by name)."""
    paths: list[Path] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.yaml"))
            if not found:
                raise ConfigError(f"--configs: folder {p} holds no *.yaml")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise ConfigError(f"--configs: {p} is neither a YAML file nor a folder")
    if not paths:
        raise ConfigError("--configs: no config given")
    names = [p.stem for p in paths]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:  # rows are keyed by the config's file name
        raise ConfigError(f"--configs: two configs named {dup}; rename one")
    return paths


def check_config(path: Path, raw: dict) -> None:
    """A merge -> prune config (the dumped experiment): a transfer step then a structured prune step, and no
    grid but the seeds (each (config, seed) is one row)."""
    kinds = [s.get("kind") for s in raw.get("pipeline") or []]
    if kinds != ["transfer", "prune"]:
        raise ConfigError(f"{path}: pipeline: expected [transfer, prune] steps, got {kinds or 'no pipeline'}")
    if not raw["pipeline"][1].get("structured"):
        raise ConfigError(f"{path}: pipeline[1]: expected a structured prune step (structured: true)")
    other = sorted(k for k in raw.get("grid") or {} if k != "seed")
    if other:
        raise ConfigError(f"{path}: grid: {other}; merge-prune sweeps seeds only (one config per setting)")


def _other_bins(step: dict, target: str, where: str) -> float:
    others = [acc for name, acc in (step.get("domains") or {}).items() if name != target]
    if not others:
        raise DataError(f"{where}: no domain accuracies besides the target {target!r} (eval.domains off?)")
    return statistics.fmean(others)


def _budget(step: dict) -> dict:
    b = step["experiment"]["budget"]
    grid = {"lr_grid": b["lr_grid"]} if b.get("lr_grid") else {}  # lr chosen on validation from a grid
    return {"epochs": b["epochs"], "lr": b["lr"], "batch_size": b["batch_size"], **grid}


def point_row(config: str, result: dict) -> dict:
    """One (config, seed) row from a pipeline's result.json: the merged and the pruned step side by side."""
    where = f"{result.get('experiment', {}).get('out', '?')}/result.json"
    steps = result.get("steps") or []
    if [s.get("kind") for s in steps] != ["transfer", "prune"]:
        raise DataError(f"{where}: expected steps [transfer, prune], got {[s.get('kind') for s in steps]}")
    merged, pruned = steps
    method = pruned["experiment"]["method"]
    target = merged["target"]
    (params_before, params_after), (macs_before, macs_after) = pruned["params"], pruned["macs"]
    return {
        "config": config, "seed": result["seed"], "out": result["experiment"]["out"], "model": result["model"],
        "dataset": merged["dataset"], "target": target, "few_shot": result["experiment"]["data"]["few_shot"],
        "merge": merged["method"], "importance": method["name"], "scope": (method.get("options") or {}).get("scope", "global"),
        "speedup_target": method.get("speedup"), "speedup": pruned["speedup"],
        "params_kept": params_after / params_before, "macs_ratio": macs_after / macs_before,
        "bn_recalibrate": bool(method.get("bn_recalibrate")),
        "budget": _budget(pruned), "merge_budget": _budget(merged),
        "merged_target": merged["test"]["accuracy"], "pruned_target": pruned["test"]["accuracy"],
        "merged_other": _other_bins(merged, target, where), "pruned_other": _other_bins(pruned, target, where),
        **({"lr_chosen": pruned["lr_chosen"]} if "lr_chosen" in pruned else {}),
    }


def _lr(lr: float | None) -> str:
    if lr is None:
        return "lr default"
    mantissa, exponent = f"{lr:e}".split("e")
    return f"lr {float(mantissa):g}e{int(exponent)}"  # 5e-5, not 5e-05


def _setting(r: dict) -> str:
    """The prune step's budget: the transfer one (same as the merge) or a recovery budget of its own; BN recal."""
    b = r["budget"]
    kind = "transfer budget" if b == r["merge_budget"] else "recovery"
    lr = (f"lr on val from {'/'.join(_lr(x).removeprefix('lr ') for x in b['lr_grid'])}" if b.get("lr_grid")
          else _lr(b["lr"]))
    return f"{kind} ({b['epochs']} ep, {lr}), {'BN recal' if r['bn_recalibrate'] else 'no BN recal'}"


def _delta(group: list[dict], key: str) -> str:
    diffs = [100 * (r[f"pruned_{key}"] - r[f"merged_{key}"]) for r in group]  # one row per seed: paired by seed
    return format_interval(paired_interval(diffs))


def _control_of(group: list[dict], groups: list[list[dict]]) -> list[dict] | None:
    """The no-cut control of a config: another config of the same model, merge and prune budget whose prune step
    removes < 1% of the parameters, so Δ against it isolates the cut from the recovery fine-tuning itself."""
    r0 = group[0]
    same = lambda r: all(r[k] == r0[k] for k in ("model", "merge", "budget", "merge_budget", "bn_recalibrate"))  # noqa: E731
    for g in groups:
        if g is not group and same(g[0]) and min(r["params_kept"] for r in g) >= 0.99:
            return g
    return None


def _vs_control(group: list[dict], control: list[dict] | None) -> str:
    if control is None or group is control:
        return "control" if group is control else "–"
    by_seed = {r["seed"]: r["pruned_target"] for r in control}
    diffs = [100 * (r["pruned_target"] - by_seed[r["seed"]]) for r in group if r["seed"] in by_seed]
    return format_interval(paired_interval(diffs)) if diffs else "–"


def _table_row(group: list[dict], control: list[dict] | None = None) -> list[str]:
    r0 = group[0]
    pct = lambda key: format_mean_std(mean_std(r[key] for r in group), scale=100)  # noqa: E731
    achieved = statistics.fmean(r["speedup"] for r in group)
    target = f"{r0['speedup_target']:g}x → " if r0["speedup_target"] is not None else ""
    return [r0["config"], r0["model"], _setting(r0), r0["importance"], r0["scope"], f"{target}{achieved:.2f}x",
            f"{statistics.fmean(r['params_kept'] for r in group):.2f}", pct("merged_target"), pct("pruned_target"),
            _delta(group, "target"), _delta(group, "other"), _vs_control(group, control), str(len(group))]


def _uniform(rows: list[dict], key: str) -> str:
    return ", ".join(str(v) for v in dict.fromkeys(r[key] for r in rows))


def markdown(rows: list[dict], command: str) -> str:
    """The RESULTS.md section: one line per config (in the order of the rows), mean ± std over its seeds."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["config"], []).append(r)
    for name, group in groups.items():
        seeds = [r["seed"] for r in group]
        if len(set(seeds)) != len(seeds):
            raise DataError(f"{RESULT_FILE}: config {name!r} has seeds {seeds}: a seed twice")
    header = ["config", "model", "setting", "importance", "scope", "speedup (target → MACs)", "params kept",
              "merged: target %", "pruned: target %", "Δ target (pts) [95% CI]", "Δ other bins (pts) [95% CI]",
              "Δ target vs no-cut control (pts) [95% CI]", "seeds"]
    ordered = [sorted(g, key=lambda r: r["seed"]) for g in groups.values()]
    controls = {id(g): _control_of(g, ordered) for g in ordered}
    controls.update({id(c): c for c in controls.values() if c is not None})  # a control is its own
    table = markdown_table(header, [_table_row(g, controls[id(g)]) for g in ordered])
    text = (f"{_uniform(rows, 'model')} on {_uniform(rows, 'dataset')}, target {_uniform(rows, 'target')}, "
            f"{_uniform(rows, 'few_shot')} target labels. Each config under `--configs` is one `pipeline:` experiment: "
            f"`{_uniform(rows, 'merge')}` merges the zoo's sources on the target, then Torch-Pruning removes channels "
            "of the merged model to the FLOP speedup (importance; scope global = one ranking over all layers, "
            "layerwise = the same ratio in every layer; BN recal = BatchNorm re-estimated after the cut) and the "
            "pruned net is fine-tuned on the same target labels, with the transfer budget of the merge or a "
            "recovery budget of its own. Target = test accuracy on the target bin; other bins = mean over the other "
            "drift bins. Mean ± std over seeds; Δ = pruned − merged, paired by seed, points [95% CI]. A no-cut control "
            "(same merge, same prune-step budget, < 1% of the parameters removed) separates the cut from the "
            "recovery fine-tuning: Δ vs control = pruned − control, paired by seed.")
    return "\n".join(["### Merge then prune on DriftFMNIST", "", f"Command: `{command}`", "", text, "", table])


def write(results: str | Path, rows: list[dict], command: str) -> str:
    """Store the rows and their command in <results>/merge_prune.json (atomically), update RESULTS.md;
    returns the section."""
    md = markdown(rows, command)
    _results.write_result(Path(results) / RESULT_FILE, {"command": command, "rows": rows})
    _results.update_section(SECTION, md)
    return md


def report(results: str | Path) -> str:
    """`--report-only`: the section again from <results>/merge_prune.json alone (its rows, its command)."""
    path = Path(results) / RESULT_FILE
    if not path.is_file():
        raise DataError(f"{path}: no stored merge-prune results; run `shiftkit bench merge-prune` first")
    stored = json.loads(path.read_text())
    md = markdown(stored["rows"], stored["command"])
    _results.update_section(SECTION, md)
    return md
