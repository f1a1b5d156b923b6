"""Pruning under shift: dense net on clean Fashion-MNIST -> prune (every criterion and control) ->
fine-tune with fixed masks (equal budget) -> accuracy on clean test, drift bins and corruptions.

Resumable: every finished run is one line of `benchmarks/results/prune_<model>_runs.jsonl`; a rerun
skips what is there. Runs go to a process pool (`workers`, one torch thread each).
Shifted test sets are built from the held-out test set (drift specs of DriftFMNIST bins, corruptions),
so no shifted image was ever seen in training.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import models, prune
from ..checkpoints import load_checkpoint, save_checkpoint
from ..data import ArrayDataset, apply_drift, corruption_sets, load_domains, temporal_specs
from ..device import place
from ..train import TrainConfig, fit, predict_logits
from . import _results

__all__ = ["Arm", "ARMS", "BenchConfig", "run", "run_one"]

DENSE_ENDS = {"keep_first": True, "keep_last": True, "max_layer_sparsity": 0.99}  # common practice, every arm


@dataclass(frozen=True)
class Arm:
    """One pruning setting: a criterion + options, optional matched allocation, calibration set, grid."""

    name: str
    method: str
    options: tuple = ()           # (key, value) pairs for prune.create
    match: str | None = None      # allocation matched per layer to this arm's masks (same seed, sparsity)
    calib: str = "clean"          # "clean" | "shifted" (DriftFMNIST bin-5 drift on training images)
    full_grid: bool = True        # False: only at the `core_sparsities`


def _arm(name, method, full=True, match=None, calib="clean", **options) -> Arm:
    return Arm(name, method, tuple(sorted(options.items())), match, calib, full)


ARMS: dict[str, Arm] = {a.name: a for a in [  # in priority order (a cut-short run has the first ones)
    _arm("magnitude", "magnitude"),                                   # the reference for paired differences
    _arm("magnitude_layerwise", "magnitude", scope="layerwise"),
    _arm("gcnet", "gcnet"),
    _arm("gcnet_hybrid2", "gcnet", hybrid_split=2),
    _arm("gcnet_combined", "gcnet", combine=True),
    _arm("kernel_l1@gcnet", "kernel_l1", match="gcnet"),
    *[_arm(f"gcnet_hybrid{k}", "gcnet", full=False, hybrid_split=k) for k in (1, 3, 4)],
    _arm("magnitude@gcnet", "magnitude", full=False, match="gcnet"),
    _arm("random_kernel@gcnet", "random", full=False, match="gcnet", granularity="connection"),
    _arm("gcnet_inverse@gcnet", "gcnet", full=False, match="gcnet", inverse=True),
    _arm("gcnet_shiftcalib", "gcnet", full=False, calib="shifted"),
    _arm("random", "random", full=False),
    _arm("snip", "snip", full=False),
    _arm("synflow", "synflow", full=False),
    _arm("kernel_l1", "kernel_l1", full=False),
    _arm("gcnet_layerwise", "gcnet", full=False, scope="layerwise"),
    _arm("gcnet_parent", "gcnet", full=False, reading="parent"),
    _arm("dense", "none", full=False),                                # the unpruned net, no fine-tuning
    _arm("dense_ft", "finetune_only", full=False),                    # unpruned, fine-tuned like the arms
]}
_UNPRUNED = ("none", "finetune_only")


@dataclass(frozen=True)
class BenchConfig:
    model: str = "small_cnn"
    model_kwargs: tuple = ()                   # e.g. (("width", 0.25),) for vgg11
    seeds: tuple[int, ...] = (0, 1, 2)         # >= 3 seeds: dense init, pruning and fine-tuning all vary
    sparsities: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95)
    core_sparsities: tuple[float, ...] = (0.9,)  # the reduced grid of the secondary arms
    arms: tuple[str, ...] = tuple(ARMS)
    dense_train: int = 24000                   # images; 2 epochs give ~89% clean on small_cnn
    dense_epochs: int = 2
    ft_train: int = 3000                       # equal fine-tuning budget for every arm (sized for 2 shared cores)
    ft_epochs: int = 2
    n_shift: int = 300                         # images per shifted set (paired across arms; 16 sets)
    drift_bins: tuple[int, ...] = (2, 4, 6, 7)  # of DriftFMNIST's 8 temporal bins
    corruptions: tuple[str, ...] = ("gaussian_noise", "gaussian_blur", "contrast", "rotate")
    severities: tuple[int, ...] = (1, 3, 5)
    calib_per_class: int = 100
    dataset: str = "fashion_mnist"
    root: str | None = None
    runs_dir: str = "runs/bench_prune"

    @property
    def tag(self) -> str:
        """File-name tag: the model and its options (small_cnn, vgg11_width0.25, ...)."""
        return self.model + "".join(f"_{k}{v}" for k, v in self.model_kwargs)

    def tasks(self) -> list[tuple[int, str, float]]:
        """(seed, arm, sparsity) runs in priority order, so a run cut short still has whole comparisons:
        every arm at the core sparsities first, then the main arms from the highest sparsity down
        (all seeds of one sparsity together: the paired differences need them)."""
        levels = list(self.core_sparsities) + sorted(set(self.sparsities) - set(self.core_sparsities), reverse=True)
        unpruned = [a for a in self.arms if ARMS[a].method in _UNPRUNED]
        runs = [(seed, a, s) for s in levels for seed in self.seeds for a in self.arms if a not in unpruned
                and (s in self.core_sparsities or ARMS[a].full_grid)]
        return runs + [(seed, a, 0.0) for a in unpruned for seed in self.seeds]


class _Data:
    """Everything a run reads, built once per process (deterministic)."""

    def __init__(self, cfg: BenchConfig) -> None:
        d = load_domains(cfg.dataset, cfg.root)[0]
        self.train, self.val, self.test = d.train, d.val, d.test
        g = torch.Generator().manual_seed(1234)
        sub = self.test.subset(torch.randperm(len(self.test), generator=g)[:cfg.n_shift])
        x = ArrayDataset.to_float(sub.images)
        specs = temporal_specs(8)
        self.shift = {f"drift_bin{t}": ArrayDataset(apply_drift(x.clone(), specs[t], torch.Generator().manual_seed(t)),
                                                    sub.labels, sub.classes) for t in cfg.drift_bins}
        for (name, sev), ds in corruption_sets(sub, names=cfg.corruptions, severities=cfg.severities).items():
            self.shift[f"{name}@{sev}"] = ds
        cal = self.train.subset(torch.randperm(len(self.train), generator=g)[:3 * cfg.calib_per_class * self.train.num_classes])
        self.calib = {"clean": cal, "shifted": ArrayDataset(
            apply_drift(ArrayDataset.to_float(cal.images), specs[5], torch.Generator().manual_seed(5)), cal.labels, cal.classes)}

    def subset(self, ds: ArrayDataset, n: int, seed: int) -> ArrayDataset:
        return ds.subset(torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n])


_DATA: dict[BenchConfig, _Data] = {}


def _data(cfg: BenchConfig) -> _Data:
    if cfg not in _DATA:
        _DATA.clear()
        _DATA[cfg] = _Data(cfg)
    return _DATA[cfg]


def _accuracy(model: torch.nn.Module, ds: ArrayDataset) -> float:
    return (predict_logits(model, ds).argmax(1) == ds.labels).float().mean().item()


def _dense_path(cfg: BenchConfig, seed: int) -> Path:
    return Path(cfg.runs_dir) / f"dense_{cfg.tag}_s{seed}.safetensors"


def dense_model(cfg: BenchConfig, seed: int, *, device: str | torch.device | None = None) -> torch.nn.Module:
    """The dense net of one seed (trained once on clean data, cached as safetensors), on `device`."""
    data = _data(cfg)
    torch.manual_seed(seed)
    net = place(models.create(cfg.model, num_classes=data.train.num_classes, in_chans=data.train.shape[0],
                              **dict(cfg.model_kwargs)), device)
    path = _dense_path(cfg, seed)
    with _results.locked(path):  # two workers never train the same seed
        if not path.exists():
            tc = TrainConfig(epochs=cfg.dense_epochs, seed=seed, progress=False)
            fit(net, data.subset(data.train, cfg.dense_train, seed), data.subset(data.val, 2000, seed), tc)
            save_checkpoint(path, net, metadata={"dataset": cfg.dataset, "bench": "prune"})
            return net
    load_checkpoint(path, net)
    return net


def _criterion(cfg: BenchConfig, arm: Arm, seed: int) -> prune.Criterion:
    extra = {"calib_per_class": cfg.calib_per_class} if arm.method == "gcnet" else {}
    return prune.create(arm.method, **{**DENSE_ENDS, "seed": seed, **extra, **dict(arm.options)})


def _masks(cfg: BenchConfig, arm: Arm, net: torch.nn.Module, sparsity: float, seed: int, data: _Data):
    allocation = None
    if arm.match:  # the control gets exactly the reference arm's per-layer sparsities
        ref = ARMS[arm.match]
        ref_masks = prune.compute_masks(net, _criterion(cfg, ref, seed), sparsity, data=data.calib[ref.calib])
        allocation = prune.layer_sparsity(ref_masks)
    return prune.compute_masks(net, _criterion(cfg, arm, seed), sparsity, data=data.calib[arm.calib], allocation=allocation)


def run_one(cfg: BenchConfig, seed: int, arm_name: str, sparsity: float) -> dict:
    """Prune one dense net with one arm, fine-tune with fixed masks, evaluate clean and shifted."""
    data, arm = _data(cfg), ARMS[arm_name]
    net = dense_model(cfg, seed)
    t0 = time.perf_counter()
    if arm.method not in _UNPRUNED:
        prune.apply(net, _masks(cfg, arm, net, sparsity, seed, data))
    t_prune = time.perf_counter() - t0
    before = _accuracy(net, data.subset(data.test, 1000, 0))
    if arm.method != "none":
        fit(net, data.subset(data.train, cfg.ft_train, 100 + seed), None,
            TrainConfig(epochs=cfg.ft_epochs, seed=seed, select="last", progress=False))
    report = prune.sparsity_report(net)
    shift = {k: _accuracy(net, ds) for k, ds in data.shift.items()}
    return {"model": cfg.model, "seed": seed, "arm": arm_name, "sparsity": sparsity,
            "sparsity_reached": report[-1]["sparsity"], "layer_sparsity": {r["layer"]: r["sparsity"] for r in report[:-1]},
            "clean_before_ft": before, "clean": _accuracy(net, data.test), "shift": shift,
            "prune_seconds": t_prune, "seconds": time.perf_counter() - t0}


def _key(r: dict) -> tuple:
    return r["seed"], r["arm"], round(r["sparsity"], 4)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _job(job: tuple) -> dict | None:
    if job[0] == "dense":
        dense_model(job[1], job[2])
        return None
    return run_one(*job[1:])


def run(cfg: BenchConfig, jsonl: Path, *, workers: int = 1, threads: int = 1, progress=print) -> list[dict]:
    """Run every missing (seed, arm, sparsity) of `cfg`, appending to `jsonl`; returns all records."""
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    records = _results.read_jsonl(jsonl)  # a torn last line (killed mid-append) is dropped
    done = {_key(r) for r in records if r.get("model") == cfg.model}
    todo = [t for t in cfg.tasks() if (t[0], t[1], round(t[2], 4)) not in done]
    progress(f"{len(done)} runs cached, {len(todo)} to go ({workers} workers x {threads} threads)")
    jobs = [("dense", cfg, s) for s in cfg.seeds if not _dense_path(cfg, s).exists()] + [("run", cfg, *t) for t in todo]
    pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(threads,)) if workers > 1 else None
    with pool or nullcontext():
        n = 0  # dense nets are queued first; a run that finds its dense net missing waits on its lock
        for rec in (pool.imap_unordered(_job, jobs) if pool else map(_job, jobs)):
            if rec is None:
                continue
            _results.append_jsonl(jsonl, rec)
            records.append(rec)
            n += 1
            progress(f"[{n}/{len(todo)}] {rec['arm']} s={rec['sparsity']} seed={rec['seed']}: clean {rec['clean']:.3f} "
                     f"shift {sum(rec['shift'].values()) / len(rec['shift']):.3f} ({rec['seconds']:.0f}s)")
    return [r for r in records if r.get("model") == cfg.model]


def config_dict(cfg: BenchConfig) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k != "extra"}
