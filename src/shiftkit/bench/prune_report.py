"""Tables, paired differences and plots for the pruning benchmarks; the `prune` section of RESULTS.md.

The section is rebuilt from every prune JSON under benchmarks/results/, so the under-shift and the
speed commands can run in any order and each leaves the other's tables in place.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..render import line_plot, markdown_table
from ..stats import Interval, MeanStd, format_interval, format_mean_std, mean_std, paired_interval
from . import _results

__all__ = ["summarize", "paired", "write_plots", "render_section", "update_results_md"]

REFERENCE = "magnitude"


def _metrics(r: dict) -> dict[str, float]:
    drift = [v for k, v in r["shift"].items() if k.startswith("drift_")]
    corr = [v for k, v in r["shift"].items() if not k.startswith("drift_")]
    shift = (sum(drift) + sum(corr)) / (len(drift) + len(corr))
    return {"clean": r["clean"], "shift": shift, "drift": sum(drift) / max(len(drift), 1),
            "corruption": sum(corr) / max(len(corr), 1), "rel": shift / r["clean"], "before_ft": r["clean_before_ft"]}


def paired(records: list[dict], arm: str, sparsity: float, metric: str, reference: str = REFERENCE) -> dict | None:
    """Mean paired difference (arm - reference) over seeds with a 95% t interval."""
    by = {(r["arm"], r["seed"]): _metrics(r)[metric] for r in records if abs(r["sparsity"] - sparsity) < 1e-9}
    diffs = [by[(arm, s)] - by[(reference, s)] for (a, s) in by if a == arm and (reference, s) in by]
    if len(diffs) < 2:
        return None
    return {**paired_interval(diffs)._asdict(), "n": len(diffs)}


def summarize(records: list[dict]) -> list[dict]:
    """One row per (arm, sparsity): mean ± std over seeds of every metric, paired diffs to the reference."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["arm"], r["sparsity"])].append(r)
    rows = []
    for (arm, s), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ms = [_metrics(r) for r in rs]
        row = {"arm": arm, "sparsity": s, "n": len(rs), "reached": sum(r["sparsity_reached"] for r in rs) / len(rs)}
        for k in ms[0]:
            row[k] = mean_std(m[k] for m in ms)[:2]  # (mean, std): the summary JSON's [mean, std] pairs
        for k in ("clean", "shift", "rel"):
            row[f"d_{k}"] = None if arm == REFERENCE else paired(records, arm, s, k)
        rows.append(row)
    return rows


def _pm(row: dict, metric: str) -> str:
    return format_mean_std(MeanStd(*row[metric], row["n"]), scale=100, single_std=True)


def _diff(d: dict | None) -> str:
    return format_interval(None if d is None else Interval(d["mean"], d["lo"], d["hi"]), scale=100, marks=True)


def table(rows: list[dict], arms: list[str] | None = None, sparsities: list[float] | None = None) -> str:
    body = [[f"{r['sparsity']:.2f}", r["arm"], r["n"], *[_pm(r, k) for k in ("clean", "shift", "rel", "before_ft")],
             *[_diff(r[k]) for k in ("d_clean", "d_shift", "d_rel")]] for r in rows
            if not (arms and r["arm"] not in arms)
            and not (sparsities and not any(abs(r["sparsity"] - s) < 1e-9 for s in sparsities))]
    return markdown_table(["sparsity", "arm", "n", "clean %", "shift %", "shift/clean %", "before FT %",
                           "Δclean vs magnitude", "Δshift vs magnitude", "Δ(shift/clean)"], body)


def severity_table(records: list[dict], sparsity: float, arms: list[str]) -> str:
    """Accuracy per drift bin and per corruption severity (mean over corruptions and seeds)."""
    rs = [r for r in records if abs(r["sparsity"] - sparsity) < 1e-9 and r["arm"] in arms]
    if not rs:
        return ""
    keys = sorted({k for r in rs for k in r["shift"] if k.startswith("drift_")})
    sevs = sorted({int(k.split("@")[1]) for r in rs for k in r["shift"] if "@" in k})
    body = []
    for arm in arms:
        a = [r for r in rs if r["arm"] == arm]
        if not a:
            continue
        vals = [sum(r["clean"] for r in a) / len(a)]
        vals += [sum(r["shift"][k] for r in a) / len(a) for k in keys]
        for s in sevs:
            v = [r["shift"][k] for r in a for k in r["shift"] if k.endswith(f"@{s}")]
            vals.append(sum(v) / len(v))
        body.append([arm, *[f"{v * 100:.1f}" for v in vals]])
    # the trailing newline leaves the blank line RESULTS.md has always had before the plots
    return markdown_table(["arm", "clean", *keys, *[f"corruption sev {s}" for s in sevs]], body) + "\n"


def write_plots(rows: list[dict], prefix: Path, arms: list[str]) -> list[Path]:
    """Accuracy vs sparsity: clean, shifted, shifted relative to clean (mean ± std bands)."""
    paths = []
    for metric, label in (("clean", "clean accuracy"), ("shift", "shifted accuracy (drift + corruptions)"),
                          ("rel", "shifted / clean accuracy")):
        series = {}
        for arm in arms:
            pts = sorted((r["sparsity"], r[metric]) for r in rows if r["arm"] == arm)
            if len(pts) > 1:
                series[arm] = ([p[0] for p in pts], [p[1][0] for p in pts], [p[1][1] for p in pts])
        path = Path(f"{prefix}_{metric}.png")
        line_plot(series, path, title=f"{prefix.name.removeprefix('prune_')}: {label}, mean ± std over seeds",
                  xlabel="sparsity", ylabel=label)
        paths.append(path)
    return paths


def hybrid_plot(rows: list[dict], prefix: Path, sparsity: float) -> Path | None:
    split = {"gcnet": 0, **{f"gcnet_hybrid{k}": k for k in range(1, 10)}}
    pts = sorted((split[r["arm"]], r) for r in rows if r["arm"] in split and abs(r["sparsity"] - sparsity) < 1e-9)
    if len(pts) < 2:
        return None
    series = {m: ([p[0] for p in pts], [p[1][m][0] for p in pts], [p[1][m][1] for p in pts]) for m in ("clean", "shift")}
    mag = [r for r in rows if r["arm"] == REFERENCE and abs(r["sparsity"] - sparsity) < 1e-9]
    if mag:
        for m in ("clean", "shift"):
            series[f"magnitude {m}"] = ([pts[0][0], pts[-1][0]], [mag[0][m][0]] * 2, None)
    path = Path(f"{prefix}_hybrid_split.png")
    line_plot(series, path, title=f"{prefix.name.removeprefix('prune_')}: hybrid split at sparsity {sparsity}",
              xlabel="prunable layers pruned by magnitude (0 = pure GC-Net)", ylabel="accuracy")
    return path


def render_section(results_dir: Path) -> str:
    """The whole `prune` section from the JSON files present (shift summaries, speed, static notes)."""
    from .prune_speed import speed_markdown

    parts = ["## Pruning: GC-Net and baselines under shift"]
    for f in sorted(results_dir.glob("prune_shift_*.json")):
        parts.append(json.loads(f.read_text())["markdown"])
    for f in sorted(results_dir.glob("prune_bn_*.json")):
        parts.append(json.loads(f.read_text())["markdown"])
    notes = results_dir.parent / "prune_notes.md"  # hand-written reading of the tables above
    if notes.exists():
        parts.append(notes.read_text().strip())
    speed = results_dir / "prune_speed.json"
    if speed.exists():
        parts.append(speed_markdown(json.loads(speed.read_text())))
    parts.append(CIFAR_TINY_DOCS)
    return "\n\n".join(parts)


def update_results_md(results_dir: Path = Path("benchmarks/results")) -> None:
    _results.update_section("prune", render_section(results_dir))


FULL_ARMS = ["magnitude", "magnitude_layerwise", "gcnet", "gcnet_hybrid2", "gcnet_combined", "kernel_l1@gcnet"]
SEVERITY_ARMS = ["magnitude", "magnitude_layerwise", "gcnet", "gcnet_hybrid2", "gcnet_combined", "kernel_l1@gcnet",
                 "gcnet_shiftcalib"]


def findings(rows: list[dict]) -> str:
    """Plain statements from the paired intervals: where an arm beats or loses to global magnitude."""
    wins, losses, ties = [], [], []
    for r in rows:
        d = r.get("d_shift")
        if d is None:
            continue
        item = f"{r['arm']} @ {r['sparsity']:.2f} ({d['mean'] * 100:+.1f})"
        (wins if d["lo"] > 0 else losses if d["hi"] < 0 else ties).append(item)
    return ("Shifted accuracy vs global magnitude, paired by seed, 95% t interval over seeds:\n\n"
            f"- **better** (interval above 0): {', '.join(wins) or 'none'}\n"
            f"- **worse** (interval below 0): {', '.join(losses) or 'none'}\n"
            f"- **not distinguishable**: {', '.join(ties) or 'none'}")


def shift_markdown(records: list[dict], cfg: dict, command: str, tag: str, plots: list[Path]) -> str:
    rows = summarize(records)
    seeds = sorted({r["seed"] for r in records})
    core = cfg["core_sparsities"]
    protocol = (
        f"Dense {tag} trained on clean Fashion-MNIST ({cfg['dense_train']} images, {cfg['dense_epochs']} epochs, AdamW), "
        f"one per seed ({len(seeds)} seeds: {seeds}); pruned by each arm; fine-tuned with the masks fixed "
        f"(torch.nn.utils.prune) for the same budget in every arm ({cfg['ft_epochs']} epochs on {cfg['ft_train']} images, "
        "last epoch kept). Every arm keeps the first and last prunable layers dense and caps layers at 99% "
        "(the other layers carry their share, so the network-wide sparsity is the one asked). "
        "Clean = the full 10k test set. Shift = mean over "
        f"{len(cfg['drift_bins'])} DriftFMNIST drift levels (bins {list(cfg['drift_bins'])} of 8, applied to held-out test "
        f"images) and {len(cfg['corruptions'])} corruptions × severities {list(cfg['severities'])} "
        f"({', '.join(cfg['corruptions'])}), {cfg['n_shift']} test images per set, the same images for every arm. "
        "`x@gcnet` = criterion x with GC-Net's per-layer allocation (same seed, same sparsity): a control at matched "
        "allocation. `gcnet_hybridk` = magnitude on the first k prunable layers. `gcnet_shiftcalib` = connectivity "
        "from drift-bin-5 images. Δ = paired difference to global magnitude, mean [95% CI] in points; ▲/▼ = interval "
        "excludes 0. Before FT = clean accuracy right after pruning (1k test images).")
    imgs = " ".join(f"![{p.stem}](results/{p.name})" for p in plots)
    return "\n\n".join([
        f"### Under shift: {tag}", f"`{command}`", protocol,
        "#### Dense references (unpruned; `dense_ft` fine-tuned with the same budget as every pruned arm)",
        table(rows, arms=["dense", "dense_ft"]),
        "#### All sparsities (main arms)", table(rows, arms=FULL_ARMS),
        f"#### Every arm and control at sparsity {', '.join(map(str, core))}", table(rows, sparsities=list(core)),
        "With keep_first, `gcnet_hybrid1` is pure GC-Net (its magnitude part is the dense first layer)"
        + (" and, with keep_last, `gcnet_hybrid4` on small_cnn's 5 layers is global magnitude: the sweep's "
           "informative points are 2 and 3." if tag.startswith("small_cnn") else "."),
        findings(rows),
        f"#### Severity sweep at sparsity {core[-1]} (accuracy %, mean over seeds; corruption columns average the "
        "corruption kinds)", severity_table(records, core[-1], SEVERITY_ARMS), imgs])


CIFAR_TINY_DOCS = """### The same benchmarks on CIFAR-10 and Tiny ImageNet

With the files on disk (CIFAR-10 python pickle batches `cifar-10-batches-py/`; Tiny ImageNet `tiny-imagenet-200/`),
once their catalog entries are registered by the data readers (`shiftkit data --list` shows the names), the same
commands run unchanged except for the dataset (input channels and classes come from the data; DriftFMNIST's drift
specs and the corruptions apply to any image size):

```
shiftkit train --model resnet20 --dataset cifar10 --root /data/cifar-10-batches-py --epochs 30 --out runs/r20.safetensors
shiftkit prune runs/r20.safetensors --method gcnet --sparsity 0.9 --hybrid-split 2 --keep-first --keep-last \\
    --dataset cifar10 --root /data/cifar-10-batches-py --finetune-epochs 5 --out runs/r20_gcnet90.safetensors
shiftkit eval runs/r20_gcnet90.safetensors --dataset cifar10 --root /data/cifar-10-batches-py --corruptions
shiftkit bench prune --dataset cifar10 --root /data/cifar-10-batches-py --model resnet20 --workers 2
shiftkit bench prune --dataset tiny_imagenet --root /data/tiny-imagenet-200 --model resnet50 --calib-per-class 10 \\
    --n-shift 1000 --workers 2
```

The pruning library itself is tested on resnet20 / vgg11_bn (3-channel 16×16 fixtures) and timm mobilevit_xxs
(grouped convs, attention Linears); resnet50 runs through GC-Net too (54 layers, ~10 s per scoring pass on CPU).
Tiny ImageNet connectivity at 200 classes keeps C × O × I float64 sums per layer (resnet50: several GiB), so
calibrate on a class subset or use fewer classes per pass there."""
