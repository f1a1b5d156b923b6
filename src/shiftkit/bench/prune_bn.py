"""BatchNorm statistics after pruning and under shift: does re-estimating them change the ranking?

For each (seed, arm) at one sparsity, on the cached dense nets of `shiftkit bench prune`:
  pruned          the masks applied, BN statistics of the dense net (what `bench prune` calls before_ft)
  pruned+recal    BN statistics re-estimated on the clean calibration images (no labels, no gradient)
  ft              then fine-tuned with fixed masks, the same budget as `bench prune`
  ft+AdaBN        each shifted set evaluated after re-estimating BN on that set's own images (unlabeled,
                  transductive: the usual AdaBN reading; the clean column is not adapted)
Whole kernels pruned by GC-Net move a layer's output statistics far more than scattered weights do,
so stale BN statistics could explain part of GC-Net's post-prune collapse; this measures it.
"""
from __future__ import annotations

import statistics
import time

import torch

from .. import prune
from ..train import TrainConfig, adapt_bn, fit, recalibrate_bn
from ..render import markdown_table
from ..stats import format_interval, format_mean_std, mean_std, paired_interval
from . import _results
from .prune import ARMS, BenchConfig, _accuracy, _data, _masks, dense_model

__all__ = ["STAGES", "run_one", "run", "markdown"]

STAGES = ("pruned", "pruned+recal", "ft", "ft+AdaBN")


def _shift_mean(net: torch.nn.Module, sets: dict, *, adapt: bool) -> float:
    return statistics.fmean(_accuracy(adapt_bn(net, ds) if adapt else net, ds) for ds in sets.values())


def run_one(cfg: BenchConfig, seed: int, arm_name: str, sparsity: float, clean_n: int = 2000) -> dict:
    data, arm = _data(cfg), ARMS[arm_name]
    net = dense_model(cfg, seed)
    t0 = time.perf_counter()
    if sparsity > 0:
        prune.apply(net, _masks(cfg, arm, net, sparsity, seed, data))
    clean = data.subset(data.test, clean_n, 0)
    out = {"model": cfg.model, "seed": seed, "arm": arm_name, "sparsity": sparsity, "clean": {}, "shift": {}}

    def record(stage: str) -> None:
        out["clean"][stage] = _accuracy(net, clean)
        out["shift"][stage] = _shift_mean(net, data.shift, adapt=False)

    record("pruned")
    out["bn_layers"] = recalibrate_bn(net, data.calib["clean"])
    record("pruned+recal")
    fit(net, data.subset(data.train, cfg.ft_train, 100 + seed), None,
        TrainConfig(epochs=cfg.ft_epochs, seed=seed, select="last", progress=False))
    record("ft")
    out["shift"]["ft+AdaBN"] = _shift_mean(net, data.shift, adapt=True)
    out["clean"]["ft+AdaBN"] = out["clean"]["ft"]
    out["seconds"] = time.perf_counter() - t0
    return out


def run(cfg: BenchConfig, arms: list[str], sparsity: float, out_path, *, progress=print) -> list[dict]:
    """Every (seed, arm) not yet in `out_path` (JSONL, one line per run, resumable)."""
    rows = [r for r in _results.read_jsonl(out_path) if r.get("model") == cfg.model]
    done = {(r["seed"], r["arm"], r["sparsity"]) for r in rows}
    torch.set_num_threads(1)
    for seed in cfg.seeds:
        for arm in arms:
            s = 0.0 if ARMS[arm].method == "finetune_only" else sparsity
            if (seed, arm, s) in done:
                continue
            r = run_one(cfg, seed, arm, s)
            _results.append_jsonl(out_path, r)
            rows.append(r)
            progress(f"{arm} seed={seed}: " + ", ".join(f"{k} {r['clean'][k]:.3f}/{r['shift'][k]:.3f}" for k in STAGES))
    return rows


def _pm(values: list[float]) -> str:
    return format_mean_std(mean_std(values), scale=100, single_std=True)


def markdown(rows: list[dict], cfg: BenchConfig, command: str) -> str:
    body = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        rs = [r for r in rows if r["arm"] == arm]
        cells = [f"{_pm([r['clean'][st] for r in rs])} / {_pm([r['shift'][st] for r in rs])}" for st in STAGES]
        # paired over seeds: the same fine-tuned net evaluated with and without AdaBN
        ci = format_interval(paired_interval([100 * (r["shift"]["ft+AdaBN"] - r["shift"]["ft"]) for r in rs]))
        body.append([arm, rs[0]["sparsity"], len(rs), *cells, ci])
    return "\n".join([
        f"#### BatchNorm statistics after pruning and under shift: {cfg.tag}", "", f"Command: `{command}`", "",
        "Accuracy % clean / shifted (mean ± std over seeds; shifted = mean of the 16 shifted sets of `bench prune`). "
        "*pruned*: masks applied, the dense net's BN statistics; *+recal*: BN re-estimated on the clean calibration "
        "images; *ft*: then fine-tuned with fixed masks (same budget as `bench prune`); *ft+AdaBN*: BN re-estimated "
        "on each shifted set's own images before evaluating it. `dense_ft` is the unpruned net through the same steps.",
        "", markdown_table(["arm", "sparsity", "seeds", *STAGES, "Δshift AdaBN − ft (pts) [95% CI]"], body)])
