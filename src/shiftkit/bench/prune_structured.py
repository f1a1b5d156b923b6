"""Structural pruning under shift: channels removed (Torch-Pruning) at a FLOP speedup, every importance
fine-tuned alike, accuracy clean / shifted (with and without AdaBN), parameters, MACs and file size.

Reuses `bench prune` for everything but the pruning: its dense nets (cached per seed), its data (clean
test set, DriftFMNIST drift bins and corruptions built from held-out test images, calibration images)
and its accuracy function. Per run: prune the dense net to `speedup` (importances re-estimated each step)
-> re-estimate BN on the calibration images (the finding of `bench prune-bn`) -> fine-tune
(`ft_train` images x `ft_epochs`, last epoch) -> evaluate. `dense_ft` = the unpruned net, fine-tuned alike.

Resumable: one JSON line per finished (seed, importance, speedup) in
`benchmarks/results/prune_structured_<tag>_runs.jsonl`. Latency is a separate function (`latency`), to be
run alone on a quiet machine; `run` never times anything.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import save_checkpoint
from ..data import ArrayDataset
from ..errors import ConfigError
from ..device import check_device_spec, model_device, provenance, resolve_device, to_device
from ..prune.base import SCOPES
from ..prune.structured import StructuredConfig, count_macs_params, prune_structured, save_structured
from ..train import TrainConfig, evaluate_sets, fit
from ..render import markdown_table
from ..stats import Interval, MeanStd, format_interval, format_mean_std, mean_std, paired_interval
from . import _results
from .prune import BenchConfig, _accuracy, _data, dense_model

__all__ = ["StructuredBenchConfig", "IMPORTANCE_ARMS", "run_one", "run", "summarize", "vs_every_baseline", "markdown", "latency",
           "DENSE", "main", "main_latency"]

IMPORTANCE_ARMS = ("gcnet", "gcnet_hybrid", "l1", "l2", "taylor", "lamp", "random")
DENSE = "dense_ft"  # the unpruned net through the same fine-tuning


@dataclass(frozen=True)
class StructuredBenchConfig:
    base: BenchConfig = field(default_factory=lambda: BenchConfig(model="resnet20"))  # model, data, seeds, budget
    importances: tuple[str, ...] = IMPORTANCE_ARMS
    speedups: tuple[float, ...] = (1.5, 2.0, 3.0)
    step: float = 0.01            # channel-ratio increment per pruning step (MACs overshoot of a few %)
    scope: str = "global"         # "global": one ranking over all layers; "layerwise": the same ratio in every layer

    @property
    def tag(self) -> str:
        return self.base.tag if self.scope == "global" else f"{self.base.tag}_{self.scope}"

    def tasks(self) -> list[tuple[int, str, float]]:
        """(seed, importance, speedup), whole seeds first so a cut-short run still has paired comparisons."""
        return [(seed, DENSE, 1.0) for seed in self.base.seeds] + [
            (seed, imp, s) for s in self.speedups for seed in self.base.seeds for imp in self.importances]


def _file_ratio(pruned: nn.Module, dense: nn.Module) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        save_structured(Path(tmp) / "p.safetensors", pruned)
        save_checkpoint(Path(tmp) / "d.safetensors", dense)
        return (Path(tmp) / "p.safetensors").stat().st_size, (Path(tmp) / "d.safetensors").stat().st_size


def run_one(cfg: StructuredBenchConfig, seed: int, importance: str, speedup: float, *, device: str = "cpu") -> dict:
    """Prune one dense net to `speedup` with one importance, recalibrate BN, fine-tune, evaluate (on `device`)."""
    base, data = cfg.base, _data(cfg.base)
    dense = dense_model(base, seed, device=device)
    t0 = time.perf_counter()
    out = {"model": base.model, "tag": cfg.tag, "seed": seed, "importance": importance, "speedup_target": speedup}
    if device != "cpu":
        out["device"] = provenance(model_device(dense))
    if importance == DENSE:
        net = dense
        macs = count_macs_params(net, to_device(ArrayDataset.to_float(data.test.images[:1]), model_device(net)))
        out.update(speedup=1.0, macs_ratio=1.0, params_ratio=1.0, file_ratio=1.0, steps=0, macs=macs[0], params=macs[1])
    else:
        res = prune_structured(dense, data.calib["clean"], StructuredConfig(
            importance=importance, speedup=speedup, step=cfg.step, scope=cfg.scope, seed=seed, bn_recalibrate=True))
        net = res.model
        size, dense_size = _file_ratio(net, dense)
        out.update(speedup=res.speedup, macs_ratio=res.macs_after / res.macs_before,
                   params_ratio=res.params_after / res.params_before, file_ratio=size / dense_size, steps=res.steps,
                   macs=res.macs_after, params=res.params_after, file_bytes=size, widths=res.layer_widths)
    out["prune_seconds"] = time.perf_counter() - t0
    out["clean_before_ft"] = _accuracy(net, data.subset(data.test, 1000, 0))
    fit(net, data.subset(data.train, base.ft_train, 100 + seed), None,
        TrainConfig(epochs=base.ft_epochs, seed=seed, select="last", progress=False))
    out["clean"] = _accuracy(net, data.test)
    out["shift"] = evaluate_sets(net, data.shift, score=_accuracy)
    out["shift_adabn"] = evaluate_sets(net, data.shift, adabn=True, score=_accuracy)  # BN re-estimated on each shifted set's own images
    out["seconds"] = time.perf_counter() - t0
    return out


def _key(r: dict) -> tuple:
    return r["seed"], r["importance"], round(r["speedup_target"], 4)


def run(cfg: StructuredBenchConfig, jsonl: str | Path, *, progress=print, device: str = "cpu") -> list[dict]:
    """Every missing (seed, importance, speedup) of `cfg`, appended to `jsonl` (resumable); returns all records."""
    jsonl = Path(jsonl)
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    records = [r for r in _results.read_jsonl(jsonl) if r.get("tag") == cfg.tag]
    done = {_key(r) for r in records}
    todo = [t for t in cfg.tasks() if (t[0], t[1], round(t[2], 4)) not in done]
    progress(f"{len(done)} runs cached, {len(todo)} to go")
    for n, (seed, imp, s) in enumerate(todo, 1):
        rec = run_one(cfg, seed, imp, s, device=device)
        _results.append_jsonl(jsonl, rec)
        records.append(rec)
        progress(f"[{n}/{len(todo)}] {imp} {rec['speedup']:.2f}x seed={seed}: clean {rec['clean']:.3f} "
                 f"shift {statistics.fmean(rec['shift'].values()):.3f} "
                 f"adabn {statistics.fmean(rec['shift_adabn'].values()):.3f} ({rec['seconds']:.0f}s)")
    return records


def _mean_shift(r: dict, adabn: bool) -> float:
    return statistics.fmean((r["shift_adabn"] if adabn else r["shift"]).values())


def _by_arm(records: list[dict], speedup: float) -> dict[str, dict[int, dict]]:
    """{importance: {seed: record}} at one speedup, importances in the order they first ran."""
    by: dict[str, dict[int, dict]] = {}
    for r in records:
        if r["speedup_target"] == speedup:
            by.setdefault(r["importance"], {})[r["seed"]] = r
    return by


def _baselines(arms) -> list[str]:
    """The non-GC-Net importances (the dense reference is no baseline)."""
    return [a for a in arms if not a.startswith("gcnet") and a != DENSE]


def summarize(records: list[dict]) -> list[dict]:
    """One row per (speedup, importance): mean ± std over seeds, and the paired difference of every arm
    to the best baseline (highest mean shifted accuracy among the non-GC-Net arms) at that speedup."""
    rows = []
    for s in sorted({r["speedup_target"] for r in records}):
        by = _by_arm(records, s)
        arms = list(by)
        means = {a: statistics.fmean(_mean_shift(r, False) for r in by[a].values()) for a in arms}
        baselines = _baselines(arms)
        best = max(baselines, key=means.get) if baselines else None
        for a in arms:
            rs = list(by[a].values())
            row = {"speedup_target": s, "importance": a, "seeds": len(rs), "best_baseline": best}
            for key, get in (("clean", lambda r: r["clean"]), ("shift", lambda r: _mean_shift(r, False)),
                             ("shift_adabn", lambda r: _mean_shift(r, True)), ("macs_ratio", lambda r: r["macs_ratio"]),
                             ("params_ratio", lambda r: r["params_ratio"]), ("file_ratio", lambda r: r["file_ratio"])):
                row[key] = mean_std(get(r) for r in rs)
            if best and a != best:
                for key, adabn in (("shift", False), ("shift_adabn", True)):
                    seeds = sorted(set(by[a]) & set(by[best]))
                    d = [100 * (_mean_shift(by[a][k], adabn) - _mean_shift(by[best][k], adabn)) for k in seeds]
                    row[f"d_{key}_vs_best"] = paired_interval(d) if d else None
            rows.append(row)
    return rows


def vs_every_baseline(records: list[dict]) -> list[dict]:
    """Each GC-Net arm against each baseline at each speedup: paired differences by seed (points, 95% CI) of
    clean and of shifted accuracy -- the comparison with every baseline, not only the best one."""
    out = []
    for s in sorted({r["speedup_target"] for r in records}):
        by = _by_arm(records, s)
        baselines = _baselines(by)
        for arm in (a for a in by if a.startswith("gcnet")):
            row = {"speedup_target": s, "importance": arm}
            for b in baselines:
                seeds = sorted(set(by[arm]) & set(by[b]))
                for key, get in (("clean", lambda r: r["clean"]), ("shift", lambda r: _mean_shift(r, False))):
                    d = [100 * (get(by[arm][k]) - get(by[b][k])) for k in seeds]
                    row[f"{key}_vs_{b}"] = paired_interval(d) if d else None
            out.append(row)
    return out


def _vs_every_markdown(records: list[dict]) -> str:
    pairs = vs_every_baseline(records)
    if not pairs:
        return ""
    baselines = list(dict.fromkeys(k.split("_vs_", 1)[1] for r in pairs for k in r if k.startswith("shift_vs_")))
    blocks = []
    for key, title in (("shift", "shifted"), ("clean", "clean")):
        cells = [(f"{r['speedup_target']}x", r["importance"],
                  *(format_interval(None if r.get(f"{key}_vs_{b}") is None else Interval(*r[f"{key}_vs_{b}"]),
                                    marks=True, empty="") for b in baselines)) for r in pairs]
        blocks.append(f"GC-Net vs every baseline, {title} accuracy: arm − baseline, points, paired by seed [95% CI] "
                      "(▲ / ▼: the interval excludes 0).\n\n" + markdown_table(["speedup", "GC-Net arm", *baselines], cells))
    return "\n\n" + "\n\n".join(blocks)


def markdown(rows: list[dict], cfg: StructuredBenchConfig, commands: list[str], records: list[dict] = ()) -> str:
    b = cfg.base
    scope = ("one global ranking over all layers" if cfg.scope == "global" else
             "the same channel ratio in every layer, so importances differ only in which channels of a layer go")
    lines = [f"### Structural (channel) pruning under shift: {cfg.tag}", "", "Commands:", "",
             *[f"    {c}" for c in commands], "",
             f"Dense {b.tag} from `bench prune` (clean Fashion-MNIST, {b.dense_train} images x {b.dense_epochs} epochs), "
             f"pruned by Torch-Pruning to each FLOP speedup (channels removed; {scope}; importance re-estimated every "
             f"{cfg.step} of channel ratio; first layer and classifier kept), BN re-estimated on calibration images, "
             f"fine-tuned {b.ft_epochs} epochs on {b.ft_train} images (last epoch). Clean = the 10k test set; "
             "shift = mean of the drift bins and corruptions of `bench prune`; +AdaBN = BN re-estimated on each shifted "
             "set's images. Δ = paired difference to the best non-GC-Net importance (by shift), points [95% CI].", "",
             ]
    pm = lambda v: format_mean_std(MeanStd(*v), scale=100, single_std=True)  # noqa: E731
    rows_md = []
    for r in rows:
        cells = ["best" if r["importance"] == r["best_baseline"] else
                 format_interval(None if d is None else Interval(*d), empty="")
                 for d in (r.get(f"d_{k}_vs_best") for k in ("shift", "shift_adabn"))]
        rows_md.append((f"{r['speedup_target']}x", r["importance"], r["seeds"], pm(r["clean"]), pm(r["shift"]),
                        pm(r["shift_adabn"]), f"{r['macs_ratio'][0]:.2f}", f"{r['params_ratio'][0]:.2f}",
                        f"{r['file_ratio'][0]:.2f}", *cells))
    header = ["speedup", "importance", "seeds", "clean %", "shift %", "shift+AdaBN %", "MACs", "params", "file",
              "Δshift", "ΔAdaBN"]
    return "\n".join(lines) + "\n" + markdown_table(header, rows_md) + _vs_every_markdown(list(records))


def config_dict(cfg: StructuredBenchConfig) -> dict:
    return asdict(cfg)


def latency(models: dict[str, nn.Module], example: torch.Tensor, *, batches: tuple[int, ...] = (1, 64),
            threads: tuple[int, ...] = (1, 2), repeats: int = 30, warmup: int = 3, reference: str = "dense") -> list[dict]:
    """CPU forward latency: per (threads, batch), every model timed in turn (interleaved, so drifts in machine
    load hit all alike), the median of `repeats`, and its ratio to `models[reference]` from the same run.

    Run it alone on a quiet machine; `example` is one input (1, C, H, W), repeated to each batch size.
    """
    saved = torch.get_num_threads()
    rows = []
    try:
        for th in threads:
            torch.set_num_threads(th)
            for bs in batches:
                x = example.expand(bs, *example.shape[1:]).contiguous()
                times: dict[str, list[float]] = {k: [] for k in models}
                with torch.inference_mode():
                    for m in models.values():
                        m.eval()
                        for _ in range(warmup):
                            m(x)
                    for _ in range(repeats):
                        for k, m in models.items():
                            times[k].append(_timed(m, x))
                med = {k: statistics.median(v) for k, v in times.items()}
                for k in models:
                    rows.append({"model": k, "threads": th, "batch": bs, "median_s": med[k],
                                 "ratio_to_reference": med[k] / med[reference]})
    finally:
        torch.set_num_threads(saved)
    return rows


def _timed(model: nn.Module, x: torch.Tensor) -> float:
    """Seconds of one forward pass: wall clock on the CPU, CUDA events on a GPU (the launch returns at once)."""
    if x.device.type != "cuda":
        t = time.perf_counter()
        model(x)
        return time.perf_counter() - t
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    model(x)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def main(*, model: str = "resnet20", width: float | None = None, seeds: tuple[int, ...] = (0, 1, 2),
         speedups: tuple[float, ...] = (1.5, 2.0, 3.0), importances: tuple[str, ...] = IMPORTANCE_ARMS,
         ft_train: int = 3000, ft_epochs: int = 2, step: float = 0.01, scope: str = "global", results: str | Path = "benchmarks/results",
         runs_dir: str = "runs/bench_prune", command: str | None = None, report_only: bool = False,
         base_options: dict | None = None, progress=print, device: str = "cpu") -> str:
    """`shiftkit bench prune-structured`: run (resumable), summarize, write
    `<results>/prune_structured_<tag>.json` and the RESULTS.md section; returns the markdown table.

    Dense nets are shared with `shiftkit bench prune` (same `runs_dir`, model, seeds and data defaults).
    `device`: where everything runs; a GPU's runs go to files and a section of their own (`_cuda`).
    """
    from ..prune.channel_importance import IMPORTANCES

    for imp in importances:
        IMPORTANCES.get(imp)  # unknown names -> ConfigError listing the valid ones, before any work
    base = BenchConfig(model=model, model_kwargs=(("width", width),) if width is not None else (), seeds=tuple(seeds),
                       ft_train=ft_train, ft_epochs=ft_epochs, runs_dir=runs_dir, **(base_options or {}))
    if scope not in SCOPES:
        raise ConfigError(f"--scope {scope!r}; valid: {', '.join(SCOPES)}")
    cfg = StructuredBenchConfig(base=base, importances=tuple(importances), speedups=tuple(speedups), step=step,
                                scope=scope)
    results = Path(results)
    where = "" if check_device_spec(device) == "cpu" else f"_{resolve_device(device).type}"  # never mixed with CPU runs
    jsonl = results / f"prune_structured_{cfg.tag}{where}_runs.jsonl"
    records = ([r for r in _results.read_jsonl(jsonl) if r.get("tag") == cfg.tag] if report_only
               else run(cfg, jsonl, progress=progress, device=device))
    rows = summarize(records)
    summary = results / f"prune_structured_{cfg.tag}{where}.json"
    stored = json.loads(summary.read_text()) if summary.exists() else {}
    earlier = stored.get("commands") or ([stored["command"]] if stored.get("command") else [])
    command = command or _results.command_line()
    # the table names every command whose runs it holds (a later run adds seeds or speedups to the same file)
    commands = earlier if report_only and earlier else [c for c in earlier if c != command] + [command]
    md = markdown(rows, cfg, commands, records)
    _results.write_result(summary, {"config": config_dict(cfg), "commands": commands, "rows": rows, "markdown": md})
    _results.update_section(f"prune_structured_{cfg.tag}{where}", md)
    return md


# the pruned nets timed against the dense one: the default cut and the two levers left for speed
LATENCY_VARIANTS: dict[str, dict] = {
    "pruned": {},
    "pruned, first layer cut too": {"keep_first": False},   # the first stage's channels (largest maps) may go
    "pruned, widths rounded to 8": {"round_to": 8},          # SIMD-friendly channel counts
}


def main_latency(*, model: str = "resnet20", width: float | None = None, seed: int = 0, speedup: float = 2.0,
                 importance: str = "l2", repeats: int = 30, results: str | Path = "benchmarks/results",
                 runs_dir: str = "runs/bench_prune", command: str | None = None, device: str = "cpu") -> list[dict]:
    """`shiftkit bench prune-structured --latency`: the cached dense net of `seed` vs its pruned copies at `speedup`
    (`LATENCY_VARIANTS`), batch 1 and 64, 1 and 2 threads, timed interleaved in one run; writes
    `<results>/prune_structured_latency_<tag>.json`. Run it alone. On a GPU (`device`): CUDA events, one thread
    setting, its own file and section (`_cuda`)."""
    base = BenchConfig(model=model, model_kwargs=(("width", width),) if width is not None else (), seeds=(seed,),
                       runs_dir=runs_dir)
    data = _data(base)
    dense = dense_model(base, seed, device=device).eval()
    dev = model_device(dense)
    where = "" if dev.type == "cpu" else f"_{dev.type}"
    nets, variants = {"dense": dense}, {}
    for name, options in LATENCY_VARIANTS.items():
        res = prune_structured(dense, data.calib["clean"],
                               StructuredConfig(importance=importance, speedup=speedup, seed=seed, **options))
        nets[name] = res.model
        variants[name] = {"options": options, "speedup": res.speedup, "macs_ratio": res.macs_after / res.macs_before,
                          "params_ratio": res.params_after / res.params_before}
    rows = latency(nets, to_device(ArrayDataset.to_float(data.test.images[:1]), dev), repeats=repeats,
                   **({} if dev.type == "cpu" else {"threads": (torch.get_num_threads(),)}))
    record = {"model": base.tag, "speedup": speedup, "importance": importance, "seed": seed, "variants": variants,
              "command": command or _results.command_line(), "threads_available": os.cpu_count(), "rows": rows,
              **({} if dev.type == "cpu" else {"device": provenance(dev)})}
    _results.write_result(Path(results) / f"prune_structured_latency_{base.tag}{where}.json", record)
    _results.update_section(f"prune_structured_latency_{base.tag}{where}", latency_markdown(record))
    return rows


def latency_markdown(record: dict) -> str:
    """The RESULTS.md latency section, from the stored JSON alone."""
    variants = record.get("variants") or {"pruned": {"speedup": record["speedup"], "macs_ratio": record["macs_ratio"],
                                                     "params_ratio": record["params_ratio"]}}  # one-variant records
    ms = {(r["model"], r["threads"], r["batch"]): r for r in record["rows"]}
    keys = sorted({(r["threads"], r["batch"]) for r in record["rows"]})
    table = markdown_table(["threads", "batch", "dense ms", *(f"{v}: ms (× dense)" for v in variants)],
                           [(th, bs, f"{1e3 * ms['dense', th, bs]['median_s']:.2f}",
                             *(f"{1e3 * ms[v, th, bs]['median_s']:.2f} ({ms[v, th, bs]['ratio_to_reference']:.3f})"
                               for v in variants)) for th, bs in keys])
    nets = "; ".join(f"{v}: {d['speedup']:.2f}x, MACs ×{d['macs_ratio']:.3f}, params ×{d['params_ratio']:.3f}"
                     for v, d in variants.items())
    dev = record.get("device")
    where = "CPU" if dev is None else f"GPU ({dev.get('device_name', dev['device'])}, CUDA events)"
    return (f"### Structural pruning: {where} latency, {record['model']}\n\nCommand: `{record['command']}`\n\n"
            f"Dense vs its {record['speedup']:g}x FLOP-reduced copies ({record['importance']} importance, seed "
            f"{record['seed']}; {nets}); forward pass in inference mode, median of interleaved runs, measured in one "
            f"process, one model at a time. Only speed is measured here, not the accuracy of the variants.\n\n{table}")
