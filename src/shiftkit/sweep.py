"""Run experiments (one config -> one result.json) and grids of them, locally or on Ray.

    exp = load_experiment("examples/train.yaml")
    run_experiment(exp)                                    # train | transfer | prune, through the library
    run_grid(expand_grid(exp), executor="ray", workers=2)  # method x target x seed x model

Every recipe calls the library (`train.fit`, `transfer.create` + `absorb`, `prune.prune_model`), the
same calls the `shiftkit train / transfer / prune` commands make. Ray is optional (`pip install
shiftkit[ray]`); local, sequential and in-process, is the default. Both executors run each point with
the same thread count, so their results are equal.
"""
from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from .checkpoints import atomic_write_json, load_checkpoint, read_metadata, save_checkpoint
from .config import Experiment, PruneMethod, TransferMethod, apply_overrides, method_options, parse_experiment
from .errors import ConfigError, ShiftkitError

__all__ = ["run_experiment", "expand_grid", "run_grid", "prepare", "EXECUTORS"]

EXECUTORS = ("local", "ray")


# ---- one experiment ------------------------------------------------------------------------------
def _train_config(exp: Experiment, *, progress: bool, epochs: int | None = None):
    from .train import TrainConfig

    b = {k: v for k, v in exp.budget.model_dump().items() if v is not None}
    if epochs is not None:
        b["epochs"] = epochs
    return TrainConfig(**b, seed=exp.seed, progress=progress)


def _model(exp: Experiment, domain):
    from . import models

    try:
        return models.create(exp.model.name, num_classes=len(domain.classes), in_chans=domain.train.shape[0],
                             **exp.model.kwargs)
    except TypeError as e:
        raise ConfigError(f"model.kwargs {exp.model.kwargs} rejected by {exp.model.name!r}: {e}") from None


def _model_from(path: str | Path):
    """A fresh model of the arch and config stored in a shiftkit checkpoint's metadata."""
    from . import models

    meta = read_metadata(path)
    if "arch" not in meta:
        raise ConfigError(f"{path}: no shiftkit metadata (arch); import it first: shiftkit import {path} --arch NAME")
    return models.create(meta["arch"], **json.loads(meta.get("config") or "{}"))


def _evaluate(exp: Experiment, net, domains, clean) -> dict:
    """Test metrics on the clean (trained / target) domain, every other domain, and the corruption sets."""
    from .data import corruption_sets
    from .train import evaluate

    res = {"test": {k: v for k, v in evaluate(net, clean.test).items() if k != "loss"}}
    if exp.eval.domains:
        res["domains"] = {d.name: (res["test"]["accuracy"] if d is clean else evaluate(net, d.test)["accuracy"])
                          for d in domains}
        shifted = [a for n, a in res["domains"].items() if n != clean.name]
        res["shifted_mean"] = sum(shifted) / len(shifted) if shifted else None
    if exp.eval.corruptions:
        res["corruptions"] = {f"{n}@{s}": evaluate(net, ds)["accuracy"]
                              for (n, s), ds in corruption_sets(clean.test, seed=exp.seed).items()}
        res["corruption_mean"] = sum(res["corruptions"].values()) / len(res["corruptions"])
    return res


def _index(domains, idx: int, key: str) -> int:
    """A domain index checked against the dataset (negative counts from the end)."""
    if not -len(domains) <= idx < len(domains):
        raise ConfigError(f"{key}={idx}: the dataset has {len(domains)} domains ({domains[0].name} ... "
                          f"{domains[-1].name}); use 0..{len(domains) - 1} or -1 for the last")
    return idx % len(domains)


def _run_train(exp: Experiment, domains, out: Path, progress: bool) -> dict:
    from .train import fit

    d = domains[_index(domains, exp.data.domain, "data.domain")]
    net = _model(exp, d)
    fit_result = fit(net, d.train, d.val, _train_config(exp, progress=progress))
    save_checkpoint(exp.model_path, net, metadata={"domain": d.name, "dataset": exp.data.name})
    return {"domain": d.name, "history": fit_result.history, "best_epoch": fit_result.best_epoch,
            "checkpoint": str(exp.model_path), **_evaluate(exp, net, domains, d)}


def _run_prune(exp: Experiment, domains, out: Path, progress: bool) -> dict:
    from . import prune
    from .train import fit, recalibrate_bn

    m: PruneMethod = exp.method
    d = domains[_index(domains, exp.data.domain, "data.domain")]
    calib_i = exp.data.domain if exp.data.calib_domain is None else exp.data.calib_domain
    calib = domains[_index(domains, calib_i, "data.calib_domain")].train
    if m.checkpoint:
        net = _model_from(m.checkpoint)
        load_checkpoint(m.checkpoint, net)
    else:  # no dense model given: train one on the clean domain first
        net = _model(exp, d)
        fit(net, d.train, d.val, _train_config(exp, progress=progress, epochs=m.dense_epochs))
        save_checkpoint(out / "dense.safetensors", net, metadata={"domain": d.name, "dataset": exp.data.name})
    crit = prune.create(m.name, **method_options(m))
    cfg = _train_config(exp, progress=progress)
    masks = prune.prune_model(net, crit, m.sparsity, data=calib, steps=m.steps, train=d.train, val=d.val, train_cfg=cfg)
    prune.apply(net, masks)
    if m.bn_recalibrate:
        recalibrate_bn(net, calib)
    fit(net, d.train, d.val, cfg)
    report = prune.export(net, exp.model_path, metadata={"method": m.name, "dataset": exp.data.name, "domain": d.name})
    return {"domain": d.name, "sparsity": m.sparsity, "true_sparsity": report[-1]["sparsity"],
            "layers": [{k: v for k, v in r.items() if k != "shape"} for r in report[:-1]],
            "checkpoint": str(exp.model_path), **_evaluate(exp, net, domains, d)}


def _zoo_path(exp: Experiment) -> Path:
    return Path(exp.method.zoo) if exp.method.zoo else Path(exp.out) / "zoo"


def prepare(exp: Experiment, domains=None, *, exclude: tuple[int, ...] | None = None) -> None:
    """Build the transfer zoo an experiment needs (source training), unless its manifest already has it."""
    if not isinstance(exp.method, TransferMethod) or exp.method.sources:
        return
    from .data import load_domains
    from .transfer.zoo import ZooConfig, build_zoo

    domains = domains or load_domains(exp.data.name, exp.data.root, seed=exp.data.seed)
    target = _index(domains, exp.data.target, "data.target")
    exclude = (target,) if exclude is None else exclude
    zoo, m = _zoo_path(exp), exp.method
    manifest = zoo / "zoo.json"
    if manifest.is_file():
        have = {e["index"] for e in json.loads(manifest.read_text())["sources"]}
        if all(i in have for i in range(len(domains)) if i not in exclude):
            return
    cfg = ZooConfig(model=exp.model.name, model_kwargs=dict(exp.model.kwargs), base_domain=m.base_domain,
                    base_epochs=m.base_epochs, source_epochs=m.source_epochs, seed=exp.seed)
    build_zoo(domains, zoo, cfg=cfg, dataset=exp.data.name, exclude=exclude)


def _sources(exp: Experiment, target: int, domain, out: Path) -> tuple[str | None, list[str]]:
    from .interop import as_source
    from .transfer.zoo import zoo_sources

    m: TransferMethod = exp.method
    if m.sources:
        template = _model(exp, domain)  # what foreign checkpoints are validated against
        paths = [str(as_source(p, template, out / "imported")) for p in m.sources]
        base = str(as_source(m.base, template, out / "imported")) if m.base else None
    else:
        if target == m.base_domain:
            raise ConfigError(f"data.target={target} is the zoo's base_domain: the base would have seen the target")
        base_p, src = zoo_sources(_zoo_path(exp), exclude=(target,))
        base, paths = (m.base or str(base_p)), [str(p) for p in src]
    if m.order == "reverse":
        paths = paths[::-1]
    elif m.order == "random":  # the permutation `shiftkit bench transfer` draws: same seed, same order
        perm = torch.randperm(len(paths), generator=torch.Generator().manual_seed(1000 + exp.seed))
        paths = [paths[i] for i in perm.tolist()]
    return base, paths


def _transfer_options(exp: Experiment, base: str | None, progress: bool) -> dict:
    import dataclasses

    from .transfer import config_class

    m: TransferMethod = exp.method
    fields = {f.name for f in dataclasses.fields(config_class(m.name))}
    b = exp.budget
    budget = {"initial_epochs": b.epochs, "finetune_epochs": b.epochs, "lr": b.lr, "batch_size": b.batch_size}
    opts = {k: v for k, v in budget.items() if v is not None and k in fields}
    opts.update(seed=exp.seed, progress=progress)
    if "base" in fields and base:
        opts["base"] = base
    return {**opts, **method_options(m)}


def _run_transfer(exp: Experiment, domains, out: Path, progress: bool) -> dict:
    from . import transfer
    from .data import few_shot
    from .train import evaluate

    m: TransferMethod = exp.method
    t = _index(domains, exp.data.target, "data.target")
    target = domains[t]
    target = few_shot(target, exp.data.few_shot, seed=exp.seed) if exp.data.few_shot else target
    prepare(exp, domains)
    base, paths = _sources(exp, t, target, out)
    net = _model_from(base or paths[0])
    opts = _transfer_options(exp, base, progress)
    merger = transfer.create(m.name, net, target, run_dir=out / "transfer", **opts)
    done = merger.resume() if m.resume else []
    if done != paths[:len(done)]:
        raise ConfigError(f"method.resume: {out / 'transfer'} holds sources {done}, not a prefix of {paths}")
    curve = []
    for p in tqdm(paths[len(done):], desc=f"absorb ({m.name})", disable=not progress or None):
        rec = merger.absorb(p)
        if not merger.deferred_training:
            curve.append({"source": Path(p).stem, "k": len(merger.records), "skipped": bool(rec.get("skipped")),
                          "test_accuracy": evaluate(merger.model, target.test)["accuracy"]})
    model = merger.finish()
    saved = hasattr(model, "shiftkit_arch")  # an ensemble or a peft composition is no plain model
    if saved:
        save_checkpoint(exp.model_path, model, metadata={"domain": target.name, "method": m.name})
    res = _evaluate(exp, model, domains, target)
    curve.append({"source": "final", "k": len(merger.records), "test_accuracy": res["test"]["accuracy"]})
    return {"target": target.name, "target_index": t, "checkpoint": str(exp.model_path) if saved else None,
            "sources": [Path(p).stem for p in paths], "curve": curve,
            "records": merger.records, "finish": merger.finish_log, **res}


_RECIPES: dict[str, Callable] = {"train": _run_train, "transfer": _run_transfer, "prune": _run_prune}


def run_experiment(exp: Experiment, *, progress: bool = True) -> dict:
    """Run one experiment; writes <out>/result.json (config, metrics, seconds) and returns it."""
    from .data import load_domains

    out = Path(exp.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "experiment.json", exp.dump())
    torch.manual_seed(exp.seed)
    t0 = time.perf_counter()
    domains = load_domains(exp.data.name, exp.data.root, seed=exp.data.seed)
    kind = exp.method.kind
    body = _RECIPES[kind](exp, domains, out, progress)
    result = {"kind": kind, "method": getattr(exp.method, "name", "train"), "model": exp.model.name,
              "dataset": exp.data.name, "seed": exp.seed, **body, "seconds": time.perf_counter() - t0,
              "experiment": exp.dump()}
    atomic_write_json(out / "result.json", result)
    return result


# ---- grids ---------------------------------------------------------------------------------------------
def _leaves(key: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(k, v)]
    return [(key.split(".")[-1], value)]


def _slug(point: dict[str, Any]) -> str:
    parts = [f"{k}-{v}" for key, value in point.items() for k, v in _leaves(key, value) if v is not None]
    return "_".join(parts).replace("/", "-").replace(" ", "") or "point"


def expand_grid(exp: Experiment, grid: dict[str, list] | None = None) -> list[Experiment]:
    """One experiment per point of the grid ({dotted key: values}, e.g. method.name x data.target x seed),
    each writing to <out>/<point>; transfer points share one zoo per (dataset, model, seed)."""
    grid = {**exp.grid, **(grid or {})}
    base = {k: v for k, v in exp.dump().items() if k != "grid"}
    keys = list(grid)
    exps = []
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values))
        raw = apply_overrides(base, point)
        raw["out"] = str(Path(exp.out) / _slug(point))
        raw["save"] = None  # one model file per point, inside its folder
        if raw["method"].get("kind") == "transfer" and not raw["method"].get("zoo"):
            raw["method"]["zoo"] = str(Path(exp.out) / "zoo" / f"{raw['data']['name']}-{raw['model']['name']}-s{raw['seed']}")
        exps.append(parse_experiment(raw, where=f"grid point {point}"))
    return exps


def _prepare_all(exps: list[Experiment]) -> None:
    """Source training in the driver, once per zoo, for every target the grid needs."""
    by_zoo: dict[str, list[Experiment]] = {}
    for e in exps:
        if isinstance(e.method, TransferMethod) and not e.method.sources:
            by_zoo.setdefault(str(_zoo_path(e)), []).append(e)
    for group in by_zoo.values():
        one_target = len({e.data.target for e in group}) == 1
        prepare(group[0], exclude=None if one_target else ())


def _point(raw: dict, threads: int, cwd: str | None = None) -> dict:
    """One grid point in a worker: fixed thread count, no bars (a worker has no terminal), the driver's
    working directory (relative paths in the config mean the same thing everywhere)."""
    if cwd:
        os.chdir(cwd)
    torch.set_num_threads(threads)
    return run_experiment(parse_experiment(raw), progress=False)


def _done(raw: dict) -> dict | None:
    """The result a finished point left (same experiment config), so a rerun sweep skips it."""
    path = Path(raw["out"]) / "result.json"
    try:
        result = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
    return result if result and result.get("experiment") == raw else None


def run_grid(exps: list[Experiment], *, executor: str = "local", workers: int = 2, threads: int = 1,
             rerun: bool = False) -> list[dict]:
    """Run every experiment; returns results in grid order. Executor "local" (sequential) or "ray".

    Points whose <out>/result.json holds the same config are not run again unless rerun=True
    (a killed sweep continues where it stopped).
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    raws = [e.dump() for e in exps]
    results = [None if rerun else _done(r) for r in raws]
    todo = [i for i, r in enumerate(results) if r is None]
    _prepare_all([exps[i] for i in todo])
    if executor == "local":
        old = torch.get_num_threads()
        try:
            for i in tqdm(todo, desc="sweep", disable=None):
                results[i] = _point(raws[i], threads)
        finally:
            torch.set_num_threads(old)
    elif todo:
        for i, r in zip(todo, _run_ray([raws[i] for i in todo], workers=workers, threads=threads)):
            results[i] = r
    return results


def _run_ray(raws: list[dict], *, workers: int, threads: int) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs Ray: pip install 'shiftkit[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_point)
        refs = [task.remote(r, threads, os.getcwd()) for r in raws]
        bar = tqdm(total=len(refs), desc="sweep (ray)", disable=None)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
        bar.close()
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:  # a user error in a point reads like one, not a remote traceback
        if isinstance(e.cause, ShiftkitError):
            raise e.cause from None
        raise
    finally:
        if started:
            ray.shutdown()
