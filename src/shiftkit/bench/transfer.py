"""Transfer accuracy benchmark: every method, paired across methods by (target, shots, order, seed).

Protocol (DESIGN.md, "benchmark-protocol lessons"): a shared base pretrained on bin 0 and one source
per other bin (the zoo); leave-one-out targets with few labels (train n, val ≈ n/5, the rest of the
bin — thousands of images — is the test pool); source orders temporal / reverse / random (the random
permutation depends only on the seed, so it is the same for every method); best-validation epoch
within each stage, and a last-epoch run for the sequential methods; one target fine-tuning budget.
Order-invariant methods (their result cannot depend on the order) run once per seed and are paired
with every order.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import models, transfer
from ..checkpoints import atomic_write_json, read_metadata
from ..data import few_shot, load_domains
from ..device import check_precision, make_deterministic, place, resolve_device
from ..device import provenance as device_provenance
from ..errors import ConfigError
from ..metrics import classification_metrics
from ..train import evaluate, predict_logits
from ..transfer.ensemble import VoteEnsemble
from ..transfer.zoo import zoo_checksum

__all__ = ["AccuracyConfig", "run_accuracy", "result_name", "setting_suffix", "SEQUENTIAL", "ORDERS",
           "SETTINGS"]

ORDERS = ("temporal", "reverse", "random")
# the config fields that change a row's numbers: each combination is a setting with its own result file
SETTINGS = ("val_folds", "lr_grid", "zoo_seed")

SEQUENTIAL = ("grasp", "grasp_taylor", "grasp_channel", "grasp_multibatch", "grasp_valgate", "grasp_stagegate",
              "sequential_all", "sequential_none")


def _default_grid() -> dict:
    # {dataset: {shots: targets}}; bin 7 is the most drifted DriftFMNIST bin, bin 5 the combined complementary one
    return {"driftfmnist": {100: (7, 5, 3, 1), 500: (7,)}, "driftfmnist_complementary": {100: (5, 3), 500: (5,)}}


@dataclass(frozen=True)
class AccuracyConfig:
    grid: dict = field(default_factory=_default_grid)
    orders: tuple[str, ...] = ORDERS
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = ()                   # () = every registered method
    # order-dependent methods run on every order; the other GRASP variants (≈ grasp, or gated shut) temporal only
    all_order_methods: tuple[str, ...] = ("grasp", "grasp_taylor", "grasp_stagegate", "sequential_all", "sequential_none",
                                          "opcm")
    last_epoch_methods: tuple[str, ...] = ("grasp", "sequential_all", "sequential_none")
    model: str = "small_cnn"
    test_images: int = 3000                         # test pool per target (DESIGN: >= 3,000 so a point is not noise)
    curve_test_images: int = 500                    # subsample for the accuracy-after-each-source curves (first seed)
    zoo_root: str = "runs/bench_zoo"
    zoo_seed: int = 0                               # the zoo is a function of this seed (base init, data order)
    val_folds: int = 0                              # k >= 2: k-fold selection for every method that selects
    lr_grid: tuple[float, ...] = ()                 # tuned setting: each method picks its lr on target val only


def setting_suffix(config: dict) -> str:
    """File-name suffix of a result's setting, from its (JSON) config: "" for the reference setting, else
    _kfold<k> (val_folds = k), _lrgrid (a tuned lr), _zoo<s> (zoo seed s), in that order."""
    defaults = {k: AccuracyConfig.__dataclass_fields__[k].default for k in SETTINGS}
    val = {k: config.get(k, defaults[k]) for k in SETTINGS}
    parts = [f"kfold{val['val_folds']}" if val["val_folds"] else "", "lrgrid" if val["lr_grid"] else "",
             f"zoo{val['zoo_seed']}" if val["zoo_seed"] else ""]
    return "".join(f"_{p}" for p in parts if p)


def result_name(dataset: str, shots: int, cfg: AccuracyConfig, tag: str = "", device: str = "cpu",
                precision: str = "fp32") -> str:
    """transfer_accuracy_<dataset>_<shots>[_<model>][<setting suffix>][_<tag>].json: settings never share a file
    (run_accuracy also refuses a file made with other settings, e.g. another lr grid)."""
    model = "" if cfg.model == "small_cnn" else f"_{cfg.model}"
    where = "" if device == "cpu" else f"_{resolve_device(device).type}"  # GPU numbers never mix with CPU rows
    where += "" if precision == "fp32" else f"_{precision}"
    return (f"transfer_accuracy_{dataset}_{shots}{model}{setting_suffix(dataclasses.asdict(cfg))}{where}"
            f"{f'_{tag}' if tag else ''}.json")


def _order(paths: list[Path], order: str, seed: int) -> list[Path]:
    if order not in ORDERS:  # anything else would silently run as "random"
        raise ConfigError(f"source order {order!r}; valid: {', '.join(ORDERS)}")
    if order == "temporal":
        return list(paths)
    if order == "reverse":
        return list(reversed(paths))
    perm = torch.randperm(len(paths), generator=torch.Generator().manual_seed(1000 + seed))
    return [paths[i] for i in perm.tolist()]


def _metrics(m: dict) -> dict:
    return {k: m[k] for k in ("accuracy", "macro_f1", "auroc")}


def _ensemble_test(merger, test, cache: dict) -> dict:
    """Ensemble test metrics from each member's test logits, computed once per source and test pool."""
    logits = []
    for r, member in zip([r for r in merger.records if not r.get("skipped")], merger.model.members):
        key = (r["source"], id(test))
        if key not in cache:
            cache[key] = predict_logits(member, test)
        logits.append(cache[key])
    return classification_metrics(VoteEnsemble.combine(torch.stack(logits), merger.cfg.vote), test.labels)


def run_one(method: str, target, sources: list[Path], base: Path, *, seed: int, select: str, curve_ds,
            cache: dict | None = None, options: dict | None = None, device: str = "cpu") -> dict:
    """One transfer run; returns test metrics, wall time (merge + training, not the test pass), target
    epochs and the per-source curve."""
    meta = read_metadata(base)
    torch.manual_seed(seed)  # target_only's random init
    net = place(models.create(meta["arch"], **json.loads(meta["config"])), device)
    fields = {f.name for f in dataclasses.fields(transfer.config_class(method))}
    cfg = {"seed": seed, "select": select, **({"base": str(base)} if "base" in fields else {}),
           **{k: v for k, v in (options or {}).items() if k in fields}}
    t0 = time.perf_counter()
    merger = transfer.create(method, net, target, **cfg)
    curve = []
    for s in sources:
        merger.absorb(s)
        if method in SEQUENTIAL and curve_ds is not None:
            curve.append(evaluate(merger.model, curve_ds)["accuracy"])
    model = merger.finish()
    wall = time.perf_counter() - t0
    fl = merger.finish_log or {}
    stages = fl.get("stages", merger.records)  # ranked runs its GRASP stages in finish()
    epochs = (merger.finish_log or {}).get("epochs", sum(r.get("epochs", 0) for r in merger.records))
    is_vote = isinstance(model, VoteEnsemble)
    test = _ensemble_test(merger, target.test, cache) if cache is not None and is_vote else evaluate(model, target.test)
    val = None if is_vote else evaluate(model, target.val)  # what a tuned setting may choose on
    return {**_metrics(test), "val_accuracy": val and val["accuracy"], "val_loss": val and val["loss"], "wall_s": wall, "target_epochs": epochs, "curve": curve,
            "fraction_transferred": [r.get("fraction_transferred") for r in stages],
            "gated": [r.get("gated") for r in stages if "gated" in r],
            "reverted": [r["reverted"] for r in stages[1:] if "reverted" in r],
            **({"accepted": len(fl["accepted"])} if "accepted" in fl else {})}  # greedy soup: sources in the soup


def run_tuned(method: str, target, sources: list[Path], base: Path, *, lr_grid: tuple[float, ...], **kw) -> dict:
    """The tuned setting: one run per lr of the shared grid (same budget each), the one with the best
    target val accuracy (then loss) kept; test metrics never enter the choice."""
    options = kw.pop("options", None) or {}
    if not lr_grid or "lr" not in {f.name for f in dataclasses.fields(transfer.config_class(method))}:
        return run_one(method, target, sources, base, options=options, **kw)
    runs = {lr: run_one(method, target, sources, base, options={**options, "lr": lr}, **kw) for lr in lr_grid}
    if any(r["val_accuracy"] is None for r in runs.values()):  # nothing trained: the lr changes nothing
        return {**runs[lr_grid[0]], "lr": None}
    best = max(lr_grid, key=lambda lr: (runs[lr]["val_accuracy"], -runs[lr]["val_loss"], -lr))
    return {**runs[best], "lr": best, "wall_s": sum(r["wall_s"] for r in runs.values()),
            "lr_val_accuracy": {str(lr): r["val_accuracy"] for lr, r in runs.items()}}


def _zoo(dataset: str, domains, cfg: AccuracyConfig, device: str) -> Path:
    out = Path(cfg.zoo_root) / f"{dataset}_{cfg.model}{f'_seed{cfg.zoo_seed}' if cfg.zoo_seed else ''}"
    transfer.build_zoo(domains, out, cfg=transfer.ZooConfig(model=cfg.model, seed=cfg.zoo_seed), dataset=dataset,
                       device=device)
    return out


def provenance(cfg: AccuracyConfig, zoos: dict[str, str], device: str = "cpu") -> dict:
    """What decides a result file's numbers: seeds, threads, the zoo's bytes, package versions."""
    import importlib.metadata as md
    import platform

    versions = {p: md.version(p) for p in ("torch", "numpy", "safetensors", "shiftkit")}
    return {"seeds": list(cfg.seeds), "zoo_seed": cfg.zoo_seed, "torch_threads": torch.get_num_threads(),
            **({} if device == "cpu" else {"device": device_provenance(resolve_device(device))}),
            "zoo_sha256": zoos, "python": platform.python_version(), "versions": versions,
            "few_shot": "sample drawn per (target, seed); the source orders of a seed share it, so "
                        "independent units are (target, seed)"}


def _units(cfg: AccuracyConfig):
    """(dataset, shots, target) in grid order."""
    for dataset, by_shots in cfg.grid.items():
        for shots, targets in by_shots.items():
            for target in targets:
                yield dataset, int(shots), target


def run_accuracy(cfg: AccuracyConfig, out: Path, *, command: str, log=print, device: str = "cpu",
                 precision: str = "fp32") -> dict:
    """Run the grid, writing `out` (JSON) after every (target, shots, seed); finished units are not re-run.
    `device`: where zoo, merges and fine-tuning run; `precision`: of the methods' target fine-tuning (the zoo
    stays fp32, so the two precisions merge the same sources). Both recorded in the provenance."""
    torch.set_num_threads(1)
    make_deterministic(resolve_device(device))
    old = json.loads(out.read_text()) if out.is_file() else {}
    rows = old.get("rows", [])
    earlier = old.get("commands") or ([old["command"]] if "command" in old else [])  # older files: one "command"
    commands = [c for c in earlier if c != command] + [command]
    fields = ("dataset", "model", "target", "shots", "seed", "order", "method", "select")
    if old and any(json.loads(json.dumps(getattr(cfg, k))) != old["config"].get(k, AccuracyConfig.__dataclass_fields__[k].default)
                   for k in SETTINGS):
        raise ConfigError(f"{out}: made with other settings ({ {k: old['config'].get(k) for k in SETTINGS} }); use another --tag")
    options = {"val_folds": cfg.val_folds} if cfg.val_folds else {}
    if precision != "fp32":
        options["precision"] = check_precision(precision, resolve_device(device))
    zoos: dict[str, str] = {}
    for r in rows:
        r.setdefault("model", "small_cnn")  # rows written before the model was recorded
    done = {tuple(r[f] for f in fields): r for r in rows}
    methods = cfg.methods or tuple(transfer.names())
    t_start, domains = time.perf_counter(), {}
    for dataset, shots, target_idx in _units(cfg):
        if dataset not in domains:
            domains = {dataset: load_domains(dataset)}
            base, _ = transfer.zoo_sources(_zoo(dataset, domains[dataset], cfg, device))
            zoos[dataset] = zoo_checksum(base.parent)
            was = old.get("provenance", {}).get("zoo_sha256", {}).get(dataset)
            if rows and was != zoos[dataset]:  # rows of another zoo (or of an unrecorded one) must not mix
                raise ConfigError(f"{out}: its rows come from zoo {was}, not {zoos[dataset]} ({base.parent}); use another --tag")
        # the prototype's setting: base on bin 0, sources = the other bins except the target (K = bins - 2)
        _, paths = transfer.zoo_sources(base.parent, exclude=(target_idx, 0))
        for seed in cfg.seeds:
            target = few_shot(domains[dataset][target_idx], shots, seed=seed)
            target.test = target.test.subset(torch.arange(min(cfg.test_images, len(target.test))))
            curve_ds = target.test.subset(torch.arange(min(cfg.curve_test_images, len(target.test))))
            cache: dict = {}
            for order in cfg.orders:
                srcs = _order(paths, order, seed)
                for method in methods:
                    last = method in cfg.last_epoch_methods and order == cfg.orders[0]  # last-epoch runs: first order
                    for select in ("best_val", "last") if last else ("best_val",):
                        key = (dataset, cfg.model, target_idx, shots, seed, order, method, select)
                        invariant = transfer.merger_class(method).order_invariant  # one order is enough
                        if key in done or (order != cfg.orders[0] and not invariant and method not in cfg.all_order_methods):
                            continue
                        if invariant and order != cfg.orders[0]:
                            twin = done[(*key[:5], cfg.orders[0], *key[6:])]
                            row = {**twin, "order": order, "reused_from_order": cfg.orders[0]}
                        else:
                            res = run_tuned(method, target, srcs, base, seed=seed, select=select, lr_grid=cfg.lr_grid,
                                            options=options, device=device,
                                            curve_ds=curve_ds if (order, seed, select) == (cfg.orders[0], cfg.seeds[0], "best_val") else None,
                                            cache=cache)
                            row = {**dict(zip(fields, key)), **res, "n_sources": len(srcs), "n_test": len(target.test),
                                   "n_train": len(target.train), "n_val": len(target.val)}
                        rows.append(row)
                        done[key] = row
            log(f"{dataset} target={target_idx} shots={shots} seed={seed}: {len(rows)} rows, "
                f"{time.perf_counter() - t_start:.0f}s")
            result = {"commands": commands, "config": dataclasses.asdict(cfg), "rows": rows,
                      "threads": torch.get_num_threads(), "provenance": {**provenance(cfg, zoos, device),
                                                 **({"precision": precision} if precision != "fp32" else {})}}
            atomic_write_json(out, result)
    return {"commands": commands, "config": dataclasses.asdict(cfg), "rows": rows}
