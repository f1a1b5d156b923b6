"""Run one experiment (one config -> one result.json): the one run path of `shiftkit run / sweep / train /
prune / transfer / sources` and of `shiftkit.sweep`'s grids.

    exp = load_experiment("examples/train.yaml")
    run_experiment(exp)        # train | transfer | prune, through the library
    prepare(exp)               # transfer: build the source zoo it needs (what `shiftkit sources` does)

Every recipe calls the library (`train.fit`, `transfer.create` + `absorb`, `prune.prune_model`).
Same config and seed -> the same bytes in result.json and the model file; wall-clock time goes to
timing.json (never compared) so result.json stays reproducible.
"""
from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from ._compat import check_fits, check_runs
from ._files import check_folder, claim_outputs
from .checkpoints import (atomic_write_many, json_bytes, load_checkpoint, model_from_checkpoint, save_checkpoint,
                          staged_writes)
from .config import BudgetConfig, Experiment, PruneMethod, TransferMethod, method_options
from .data import domain_index
from .device import check_precision, make_deterministic, place, provenance, resolve_device
from .errors import ConfigError, DivergedError

__all__ = ["run_experiment", "prepare", "zoo_path", "claim_run_outputs"]


def _train_config(exp: Experiment, *, progress: bool, epochs: int | None = None):
    from .train import TrainConfig

    b = {k: v for k, v in exp.budget.model_dump().items() if v is not None and k != "lr_grid"}
    if epochs is not None:
        b["epochs"] = epochs
    return TrainConfig(**b, seed=exp.seed, progress=progress, precision=exp.precision, augment=exp.data.augment)


def _fit(exp: Experiment, net, d, *, progress: bool, epochs: int | None = None) -> tuple:
    """`train.fit` with the experiment's budget -> (FitResult, result keys). With budget.lr_grid: one fine-tune
    per lr from the same starting weights, the one with the best validation accuracy kept (ties: the smaller lr);
    the result records every lr's validation accuracy and the lr chosen."""
    from .train import fit

    cfg = _train_config(exp, progress=progress, epochs=epochs)
    grid = exp.budget.lr_grid
    if not grid:
        return fit(net, d.train, d.val, cfg), {}
    if d.val is None or not len(d.val):
        raise ConfigError("budget.lr_grid picks the lr on validation data: the domain has no validation split")
    start = {k: v.clone() for k, v in net.state_dict().items()}
    runs, diverged = {}, {}
    for lr in grid:
        net.load_state_dict(start)
        try:
            res = fit(net, d.train, d.val, dataclasses.replace(cfg, lr=lr))
        except DivergedError as e:  # one lr of the grid too high: it loses, the others still compete
            diverged[lr] = str(e)
            continue
        runs[lr] = (res, {k: v.clone() for k, v in net.state_dict().items()})
    if not runs:
        raise DivergedError(f"budget.lr_grid: every learning rate diverged ({next(iter(diverged.values()))})")
    for lr, why in diverged.items():
        warnings.warn(f"budget.lr_grid: lr {lr:g} left out: {why}", stacklevel=2)
    best = max(runs, key=lambda lr: (runs[lr][0].best_val_accuracy, -lr))
    net.load_state_dict(runs[best][1])
    info = {"lr_chosen": best, "val_accuracy_by_lr": {repr(lr): runs[lr][0].best_val_accuracy if lr in runs else None
                                                       for lr in grid}}
    return runs[best][0], {**info, "lr_diverged": [repr(lr) for lr in diverged]} if diverged else info


def _model(exp: Experiment, domain):
    from . import models

    try:
        net = place(models.create(exp.model.name, num_classes=len(domain.classes), in_chans=domain.train.shape[0],
                                  **exp.model.kwargs), exp.device)
    except TypeError as e:
        raise ConfigError(f"model.kwargs {exp.model.kwargs} rejected by {exp.model.name!r}: {e}") from None
    except ConfigError as e:  # an empty layer or a model over models.MAX_PARAMS: name the config keys
        raise ConfigError(f"model.kwargs / data: {e}") from None
    check_runs(net, domain.train.images, model_name=repr(exp.model.name), data_name=f"{exp.data.name} ({domain.name})")
    return net


def _model_from(exp: Experiment, path: str | Path, domain):
    """A fresh model of the arch and config stored in a shiftkit checkpoint's metadata: the checkpoint
    decides what runs (and the result records it); a model.name set in the config that disagrees is
    reported, not silently recorded. It must fit `domain`'s classes and channels."""
    net = model_from_checkpoint(path, default_arch=exp.model.name)
    names = {"model_name": str(path), "data_name": f"{exp.data.name} ({domain.name})"}
    check_fits(net, len(domain.classes), domain.train.shape[0], **names)
    check_runs(net, domain.train.images, **names)
    arch = getattr(net, "shiftkit_arch", exp.model.name)
    if "name" in exp.model.model_fields_set and arch != exp.model.name:
        warnings.warn(f"model.name={exp.model.name!r} but {path} holds a {arch!r}: running (and recording) {arch!r}",
                      stacklevel=2)
    return place(net, exp.device)


def _evaluate(exp: Experiment, net, domains, clean) -> dict:
    """Test metrics on the clean (trained / target) domain, every other domain, and the corruption sets."""
    from .data import corruption_sets
    from .train import evaluate, evaluate_sets, invalid_sets

    res = {"test": {k: v for k, v in evaluate(net, clean.test).items() if k != "loss"}}
    invalid = invalid_sets({clean.name: res["test"]})
    if exp.eval.domains:
        others = evaluate_sets(net, {d.name: d.test for d in domains if d is not clean})
        invalid += invalid_sets(others)
        res["domains"] = {d.name: res["test"]["accuracy"] if d is clean else others[d.name]["accuracy"] for d in domains}
        shifted = [a for n, a in res["domains"].items() if n != clean.name]
        res["shifted_mean"] = sum(shifted) / len(shifted) if shifted else None
    if exp.eval.corruptions:
        sets = {f"{n}@{s}": ds for (n, s), ds in corruption_sets(clean.test, seed=exp.seed).items()}
        scored = evaluate_sets(net, sets)
        invalid += invalid_sets(scored)
        res["corruptions"] = {k: m["accuracy"] for k, m in scored.items()}
        res["corruption_mean"] = sum(res["corruptions"].values()) / len(res["corruptions"])
    if invalid:  # only then: a normal result keeps its bytes
        res["invalid_scores"] = invalid
        warnings.warn(f"scores invalid on {', '.join(invalid)}: the model's logits are NaN/Inf there (weights too "
                      "large); do not use these numbers", stacklevel=2)
    return res


def _run_train(exp: Experiment, domains, out: Path, progress: bool) -> dict:
    d = domains[domain_index(domains, exp.data.domain, "data.domain")]
    net = _model(exp, d)
    if exp.method.init:  # pretrained weights: a new head where the class count differs
        from .transfer.zoo import init_from_file

        init_from_file(exp.method.init, net)
    fit_result, lr_info = _fit(exp, net, d, progress=progress)
    save_checkpoint(exp.model_path, net, metadata={"domain": d.name, "dataset": exp.data.name})
    return {"domain": d.name, "history": fit_result.history, "best_epoch": fit_result.best_epoch, **lr_info,
            "checkpoint": str(exp.model_path), **_evaluate(exp, net, domains, d)}


def _run_prune(exp: Experiment, domains, out: Path, progress: bool) -> dict:
    from . import prune
    from .train import recalibrate_bn

    from .data import few_shot

    m: PruneMethod = exp.method
    d = domains[domain_index(domains, exp.data.domain, "data.domain")]
    if exp.data.few_shot:  # few labels (e.g. pruning a merged target model): calibrate and fine-tune on those only
        d = few_shot(d, exp.data.few_shot, seed=exp.seed)
    calib = d.train if exp.data.calib_domain is None else \
        domains[domain_index(domains, exp.data.calib_domain, "data.calib_domain")].train
    if m.checkpoint:
        net = _model_from(exp, m.checkpoint, d)
        load_checkpoint(m.checkpoint, net)
    else:  # no dense model given: train one on the clean domain first
        net = _model(exp, d)
        _fit(exp, net, d, progress=progress, epochs=m.dense_epochs)
        save_checkpoint(out / "dense.safetensors", net, metadata={"domain": d.name, "dataset": exp.data.name})
    if m.structured:
        return _run_prune_structured(exp, net, d, calib, domains, progress)
    opts = method_options(m)
    if "seed" in {f.name for f in dataclasses.fields(prune.PRUNE.get(m.name).config_cls)}:
        opts.setdefault("seed", exp.seed)  # random / sampled criteria draw from the experiment's seed
    crit = prune.create(m.name, **opts)
    cfg = _train_config(exp, progress=progress)
    masks = prune.prune_model(net, crit, m.sparsity, data=calib, steps=m.steps, train=d.train, val=d.val, train_cfg=cfg)
    prune.apply(net, masks)
    if m.bn_recalibrate:
        recalibrate_bn(net, calib)
    lr_info = _fit(exp, net, d, progress=progress)[1]
    meta = {"method": m.name, "dataset": exp.data.name, "domain": d.name,
            "prune_config": json.dumps(dataclasses.asdict(crit.cfg), default=str)}
    if m.checkpoint:
        meta["pruned_from"] = str(m.checkpoint)
    report = prune.export(net, exp.model_path, metadata=meta)
    return {"domain": d.name, "model": getattr(net, "shiftkit_arch", exp.model.name), "sparsity": m.sparsity, "true_sparsity": report[-1]["sparsity"],
            "layers": [{k: v for k, v in r.items() if k != "shape"} for r in report[:-1]], **lr_info,
            "checkpoint": str(exp.model_path), **_evaluate(exp, net, domains, d)}


def _run_prune_structured(exp: Experiment, net, d, calib, domains, progress: bool) -> dict:
    """Channels physically removed through torch-pruning (smaller, faster), then the shared fine-tuning."""
    from .prune.structured import StructuredConfig, prune_structured, save_structured

    m: PruneMethod = exp.method
    opts = method_options(m)  # StructuredConfig's fields (the classifier's outputs are never removed)
    cfg = StructuredConfig(**{"importance": m.name, "speedup": m.speedup, "channel_sparsity": m.channel_sparsity,
                              "bn_recalibrate": m.bn_recalibrate, "seed": exp.seed, **opts})
    res = prune_structured(net, calib, cfg)
    lr_info = _fit(exp, res.model, d, progress=progress)[1]
    meta = {"method": m.name, "dataset": exp.data.name, "domain": d.name, "speedup": f"{res.speedup:.4f}",
            "structured_config": json.dumps(dataclasses.asdict(cfg), default=str)}
    if m.checkpoint:
        meta["pruned_from"] = str(m.checkpoint)
    save_structured(exp.model_path, res.model, metadata=meta)
    return {"domain": d.name, "model": getattr(res.model, "shiftkit_arch", exp.model.name), "structured": True,
            "speedup": res.speedup, "macs": [res.macs_before, res.macs_after], "params": [res.params_before, res.params_after],
            "widths": res.layer_widths, **lr_info, "checkpoint": str(exp.model_path), **_evaluate(exp, res.model, domains, d)}


def zoo_path(exp: Experiment) -> Path:
    """The folder of a transfer experiment's source zoo."""
    return Path(exp.method.zoo) if exp.method.zoo else Path(exp.out) / "zoo"


def prepare(exp: Experiment, domains=None, *, exclude: tuple[int, ...] | None = None, strict: bool = False) -> None:
    """Build the transfer zoo an experiment needs (source training), unless its manifest already has it.

    `exclude` (domain indices, default: the target) are left out; seeded by exp.seed, so the same
    config builds the same bytes whether a run, a sweep or `shiftkit sources` asks for it.
    An existing zoo built with other settings is never silently taken for the one asked for: with `strict`
    (`shiftkit sources`, which asks for exactly these settings) it is refused; a run uses a finished zoo as
    built and warns about the settings its config sets explicitly (the seed excepted: several runs, one zoo)."""
    if not isinstance(exp.method, TransferMethod) or exp.method.sources:
        return
    from .transfer.zoo import ZooConfig, build_zoo, read_manifest

    domains = domains or exp.data.load()
    target = domain_index(domains, exp.data.target, "data.target")
    exclude = (target,) if exclude is None else tuple(domain_index(domains, i, "exclude") for i in exclude)
    zoo, m = zoo_path(exp), exp.method
    check_folder(zoo, "zoo folder (method.zoo)")  # a file or an unwritable place: before any source is trained
    cfg = ZooConfig(model=exp.model.name, model_kwargs=dict(exp.model.kwargs), base_domain=m.base_domain,
                    base_epochs=m.base_epochs, source_epochs=m.source_epochs, base_lr=m.base_lr, source_lr=m.source_lr,
                    batch_size=m.zoo_batch_size, seed=exp.seed, augment=exp.data.augment, base_file=m.base)
    manifest = zoo / "zoo.json"
    if manifest.is_file():
        built = read_manifest(zoo)
        differ = _zoo_differences(built, cfg, exp.data.name)
        have = {e["index"] for e in built["sources"]}
        complete = all(i in have for i in range(len(domains)) if i not in exclude)
        if differ and not complete:  # adding sources would mix two settings in one zoo
            raise ConfigError(f"zoo {zoo} was built with other settings ({'; '.join(differ.values())}) and lacks "
                              "sources this run needs: point method.zoo (--zoo) to a new folder or remove this one")
        if differ and strict:
            raise ConfigError(f"zoo {zoo} exists, built with other settings ({'; '.join(differ.values())}): not "
                              "rebuilt over it; choose another --out or remove that folder")
        if complete:  # a finished zoo (shiftkit sources, --sources) is used as built; its zoo.json says how
            explicit = _explicit_zoo_keys(exp) & set(differ)
            if explicit:
                warnings.warn(f"zoo {zoo} was built with other settings ({'; '.join(differ[k] for k in sorted(explicit))}) "
                              "than this config asks for: using the zoo as built (its zoo.json records how)", stacklevel=2)
            return
    torch.manual_seed(exp.seed)  # model initialisation draws from the global generator
    build_zoo(domains, zoo, cfg=cfg, dataset=exp.data.name, exclude=exclude, device=exp.device, precision=exp.precision)


def _zoo_differences(built: dict, cfg, dataset: str) -> dict[str, str]:
    """{key: "key: built X, asked Y"} for every zoo setting (and the dataset) an existing manifest differs in."""
    wanted = json.loads(json.dumps(dataclasses.asdict(cfg)))
    differ = {k: f"{k}: built {built['config'].get(k)!r}, asked {wanted[k]!r}" for k in sorted(wanted)
              if built["config"].get(k) != wanted[k]}
    if isinstance(built.get("dataset"), str) and built["dataset"] and built["dataset"] != dataset:
        differ["dataset"] = f"dataset: built {built['dataset']!r}, asked {dataset!r}"
    return differ


def _explicit_zoo_keys(exp: Experiment) -> set[str]:
    """The zoo settings this experiment's config sets explicitly (not defaults), by ZooConfig name."""
    m = exp.method
    keys = {"base_domain", "base_epochs", "source_epochs", "base_lr", "source_lr", "base"} & m.model_fields_set
    keys = {{"base": "base_file"}.get(k, k) for k in keys}
    keys |= {"batch_size"} if "zoo_batch_size" in m.model_fields_set else set()
    keys |= {"model"} if "name" in exp.model.model_fields_set else set()
    keys |= {"model_kwargs"} if "kwargs" in exp.model.model_fields_set else set()
    keys |= {"dataset"} if "name" in exp.data.model_fields_set else set()
    return keys


def _sources(exp: Experiment, target: int, domain, out: Path) -> tuple[str | None, list[str]]:
    from .interop import as_source
    from .transfer.zoo import zoo_sources

    m: TransferMethod = exp.method
    if m.sources:
        template = _model(exp, domain)  # what foreign checkpoints are validated against
        paths = [str(as_source(p, template, out / "imported")) for p in m.sources]
        base = str(as_source(m.base, template, out / "imported")) if m.base else None
    else:
        base_p, src = zoo_sources(zoo_path(exp), exclude=(target,))
        if target == _zoo_base_domain(exp):  # None (not recorded) never equals a domain index
            raise ConfigError(f"data.target={target} is the zoo's base domain: the base would have seen the target")
        pretrained = _zoo_config(exp).get("base_file")  # the zoo's base is m.base imported: merge from that copy
        base, paths = (str(base_p) if pretrained or not m.base else m.base), [str(p) for p in src]
    if m.order == "reverse":
        paths = paths[::-1]
    elif m.order == "random":  # the permutation `shiftkit bench transfer` draws: same seed, same order
        perm = torch.randperm(len(paths), generator=torch.Generator().manual_seed(1000 + exp.seed))
        paths = [paths[i] for i in perm.tolist()]
    return base, paths


def _zoo_base_domain(exp: Experiment) -> int | None:
    """The domain the zoo's base was trained on, as its manifest records it (`build_zoo` writes it);
    None for a manifest made by hand without it."""
    cfg = _zoo_config(exp)
    base = cfg.get("base_domain") if not cfg.get("base_file") else None  # a pretrained base saw no domain
    return base if type(base) is int else None


def _zoo_config(exp: Experiment) -> dict:
    from .transfer.zoo import read_manifest

    return read_manifest(zoo_path(exp))["config"]  # bounded, type-checked: config is an object


def _transfer_options(exp: Experiment, base: str | None, progress: bool) -> dict:
    import dataclasses

    from .transfer import config_class

    m: TransferMethod = exp.method
    fields = {f.name for f in dataclasses.fields(config_class(m.name))}
    b = exp.budget
    if b.on_diverge != "error":
        raise ConfigError("budget.on_diverge=keep_best is for train / prune fine-tuning; a transfer stops on divergence")
    if b.lr_grid:
        raise ConfigError("budget.lr_grid: a transfer method takes one lr (budget.lr); "
                          "`shiftkit bench transfer --lr-grid` tunes it on target validation")
    budget = {"initial_epochs": b.epochs, "finetune_epochs": b.epochs, "lr": b.lr, "batch_size": b.batch_size}
    opts = {k: v for k, v in budget.items() if v is not None and k in fields}
    opts.update(seed=exp.seed, progress=progress, precision=exp.precision, augment=exp.data.augment)
    if "base" in fields and base:
        opts["base"] = base
    return {**opts, **method_options(m)}


def _run_transfer(exp: Experiment, domains, out: Path, progress: bool) -> dict:
    from . import transfer
    from .data import few_shot
    from .train import evaluate

    m: TransferMethod = exp.method
    t = domain_index(domains, exp.data.target, "data.target")
    target = domains[t]
    target = few_shot(target, exp.data.few_shot, seed=exp.seed) if exp.data.few_shot else target
    prepare(exp, domains)
    base, paths = _sources(exp, t, target, out)
    net = _model_from(exp, base or paths[0], target)
    opts = _transfer_options(exp, base, progress)
    merger = transfer.create(m.name, net, target, run_dir=out / "transfer", **opts)
    curve = []

    def point(source: str, rec: dict) -> None:  # test accuracy after each absorb (not for merge-then-train methods)
        if not merger.deferred_training:
            curve.append({"source": Path(source).stem, "k": len(merger.records), "skipped": bool(rec.get("skipped")),
                          "test_accuracy": evaluate(merger.model, target.test)["accuracy"]})

    model = transfer.run_sources(merger, paths, resume=m.resume, on_absorb=point)
    saved = hasattr(model, "shiftkit_arch")  # an ensemble or a peft composition is no plain model
    if saved:
        save_checkpoint(exp.model_path, model, metadata={"domain": target.name, "method": m.name})
    res = _evaluate(exp, model, domains, target)
    curve.append({"source": "final", "k": len(merger.records), "test_accuracy": res["test"]["accuracy"]})
    return {"target": target.name, "target_index": t, "model": getattr(net, "shiftkit_arch", exp.model.name), "checkpoint": str(exp.model_path) if saved else None,
            "sources": [Path(p).stem for p in paths], "curve": curve,
            "records": merger.records, "finish": merger.finish_log, **res}


_RECIPES: dict[str, Callable] = {"train": _run_train, "transfer": _run_transfer, "prune": _run_prune}


def run_experiment(exp: Experiment, *, progress: bool = True) -> dict:
    """Run one experiment; writes <out>/result.json (config, metrics: the same bytes for the same config)
    and <out>/timing.json (wall-clock seconds); returns the result with its seconds."""
    if exp.pipeline:
        return _run_pipeline(exp, progress=progress)
    device = resolve_device(exp.device)  # a GPU that is not there fails here, before any work
    check_precision(exp.precision, device)
    determinism = make_deterministic(device)
    out = claim_run_outputs(exp)
    torch.manual_seed(exp.seed)
    t0 = time.perf_counter()
    if isinstance(exp.method, PruneMethod) and exp.method.checkpoint:  # a bad file fails before the data loads
        model_from_checkpoint(exp.method.checkpoint, default_arch=exp.model.name)
    pretrained = getattr(exp.method, "init", None) or getattr(exp.method, "base", None)
    if pretrained:  # train --init / a zoo's base: a missing file fails before the data loads
        from .transfer.zoo import check_pretrained_file

        check_pretrained_file(pretrained)
    domains = exp.data.load()
    kind = exp.method.kind
    with staged_writes([exp.model_path]):  # the model file is renamed into place with the records, at the end
        body = _RECIPES[kind](exp, domains, out, progress)
        result = {"kind": kind, "method": getattr(exp.method, "name", "train"), "model": exp.model.name,
                  "dataset": exp.data.name, "seed": exp.seed, **body, "experiment": exp.dump(),
                  "provenance": {**provenance(device, exp.precision), "deterministic": determinism["deterministic"]}}
        seconds = time.perf_counter() - t0
        _commit(out, exp, result, seconds)
    return {**result, "seconds": seconds}


def claim_run_outputs(exp: Experiment, *, claim: bool = True) -> Path:
    """Check and claim the whole output set of a run before any work (`_files.claim_outputs`): the results
    folder, its JSON files, the model file (and a prune's dense model): each writable, none a device or
    a folder, none the same path as another. Returns the results folder, made when claimed (`claim=False`:
    only checked, for a sweep whose points run in other processes)."""
    out = Path(exp.out)
    files = {f"results file {n}": out / n for n in ("experiment.json", "result.json", "timing.json")}
    if not exp.pipeline:
        files["model file"] = exp.model_path
    elif exp.save:
        files["model file"] = Path(exp.save)
    if isinstance(exp.method, PruneMethod) and not exp.method.checkpoint and not exp.pipeline:
        files["dense model file"] = out / "dense.safetensors"
    folders = {"results folder (out)": out}
    if isinstance(exp.method, TransferMethod) and not exp.pipeline:
        folders["transfer state folder"] = out / "transfer"
    claim_outputs(files, folders, claim=claim)
    if claim:
        out.mkdir(parents=True, exist_ok=True)
    return out


def _commit(out: Path, exp: Experiment, result: dict, seconds: float) -> None:
    """experiment.json, result.json and timing.json (and a staged model file) as one commit, at the end: a run
    that fails (a full disk included) leaves the earlier files as they were, never a config describing a
    result, or a result describing a model, that is not there."""
    atomic_write_many({out / "experiment.json": json_bytes(exp.dump()), out / "result.json": json_bytes(result),
                       out / "timing.json": json_bytes({"seconds": seconds})}, commit_staged=True)


def _step_budget(shared: BudgetConfig, own: BudgetConfig | None) -> BudgetConfig:
    """A pipeline step's budget: its own keys over the experiment's (a prune step may recover longer)."""
    if own is None:
        return shared
    update = {k: v for k, v in own.model_dump().items() if v is not None}
    if "lr" in update or "lr_grid" in update:  # the step's own learning rate(s) replace the shared ones
        update = {"lr": None, "lr_grid": None, **update}
    return shared.model_copy(update=update)


def _run_pipeline(exp: Experiment, *, progress: bool) -> dict:
    """Each step is an experiment of its own in <out>/<i>_<kind>, the later ones pruning the previous step's
    model; <out>/result.json holds every step's result (the last one is the pipeline's model)."""
    out = claim_run_outputs(exp)
    steps, model_path, t0 = [], None, time.perf_counter()
    for i, method in enumerate(exp.pipeline):
        if model_path is not None:
            method = method.model_copy(update={"checkpoint": str(model_path)})
        data = exp.data if i == 0 else exp.data.model_copy(update={"domain": exp.data.target})  # the target again
        last = i == len(exp.pipeline) - 1
        step = exp.model_copy(update={"method": method.model_copy(update={"budget": None}), "pipeline": [], "data": data,
                                      "budget": _step_budget(exp.budget, method.budget),
                                      "save": exp.save if last else None, "out": str(out / f"{i}_{method.kind}")})
        r = run_experiment(step, progress=progress)
        if not r.get("checkpoint"):
            raise ConfigError(f"pipeline[{i}] ({getattr(method, 'name', method.kind)}) leaves no model to pass on")
        model_path = Path(r["checkpoint"])
        steps.append({k: v for k, v in r.items() if k != "seconds"})
    result = {"kind": "pipeline", "method": " -> ".join(getattr(m, "name", m.kind) for m in exp.pipeline),
              "model": steps[-1].get("model", exp.model.name), "dataset": exp.data.name, "seed": exp.seed,
              "steps": steps, "checkpoint": str(model_path), "experiment": exp.dump(),
              **{k: steps[-1][k] for k in ("test", "domains", "shifted_mean", "corruptions", "corruption_mean",
                                           "invalid_scores") if k in steps[-1]}}
    seconds = time.perf_counter() - t0
    _commit(out, exp, result, seconds)
    return {**result, "seconds": seconds}
