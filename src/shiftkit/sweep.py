"""Grids of experiments (method x target x seed x model ...), run locally or on Ray.

    exp = load_experiment("examples/train.yaml")
    run_grid(expand_grid(exp), executor="ray", workers=2)  # each point: experiment.run_experiment

One experiment runs in `shiftkit.experiment` (the path every command takes); this module expands
grids, builds the zoos they share once, skips finished points and dispatches. Ray is optional (`pip install
shiftkit[ray]`); local, sequential and in-process, is the default. Both executors run each point with
the same thread count, so their results are equal.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .config import Experiment, TransferMethod, apply_overrides, parse_experiment
from ._files import read_json
from .device import resolve_device
from .errors import ConfigError, ShiftkitError
from .experiment import claim_run_outputs, prepare, run_experiment, zoo_path
from .progress import Progress

__all__ = ["expand_grid", "count_points", "run_grid", "EXECUTORS", "MAX_POINTS"]

EXECUTORS = ("local", "ray")


# ---- grids ---------------------------------------------------------------------------------------------
def _leaves(key: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(k, v)]
    return [(key.split(".")[-1], value)]


MAX_POINTS = 10_000  # a grid is run point by point; beyond this it is a typo (or an attack), not a sweep
_SLUG_CHARS = 96  # the readable part of a point folder's name; the hash keeps it unique


def _slug(point: dict[str, Any]) -> str:
    """A point's folder: the readable `key-value_...` slug (cut to a bounded length) and a short hash of
    the point itself, so two points never share a folder (`X/a-b` and `X/a/b` read alike)."""
    parts = [f"{k}-{v}" for key, value in point.items() for k, v in _leaves(key, value) if v is not None]
    readable = "_".join(parts).replace("/", "-").replace(" ", "").replace("\0", "")[:_SLUG_CHARS] or "point"
    digest = hashlib.sha256(json.dumps(point, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def count_points(grid: dict[str, list]) -> int:
    """The number of points a grid expands to, counted before anything is built; ConfigError above MAX_POINTS."""
    n = 1
    for key, values in grid.items():
        if not isinstance(values, list):
            raise ConfigError(f"grid.{key}: expected a list of values, got {type(values).__name__}")
        n *= len(values)
        if n > MAX_POINTS:
            sizes = " x ".join(str(len(v)) if isinstance(v, list) else "?" for v in grid.values())
            raise ConfigError(f"the grid has {sizes} values: more than the {MAX_POINTS} points a sweep may run")
    return n


def expand_grid(exp: Experiment, grid: dict[str, list] | None = None) -> list[Experiment]:
    """One experiment per point of the grid ({dotted key: values}, e.g. method.name x data.target x seed),
    each writing to <out>/<point>; transfer points share one zoo per (dataset, model, seed).
    The points are counted first (at most MAX_POINTS)."""
    grid = {**exp.grid, **(grid or {})}
    count_points(grid)
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
            by_zoo.setdefault(str(zoo_path(e)), []).append(e)
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
    """The result a finished point left (same experiment config), so a rerun sweep skips it. A stored config
    that differs is read through the schema first: a key added since (at its default, which keeps the old
    behaviour) does not make a finished point look like a new one."""
    path = Path(raw["out"]) / "result.json"
    if not os.path.lexists(path):
        return None
    try:
        result = read_json(path, ConfigError, "point result", max_bytes=64 << 20)
    except ConfigError as e:  # unreadable: the point runs again (its write will say if the path is unusable)
        warnings.warn(f"{e}; running the point again", stacklevel=2)
        return None
    stored = result.get("experiment") if isinstance(result, dict) else None
    if not isinstance(stored, dict):
        return None
    if stored != raw:
        try:
            stored = parse_experiment(stored, where=str(path)).dump()
        except ConfigError:  # a config this version refuses is not this point's: the point runs again
            return None
    if stored != raw:
        return None
    test, provenance = result.get("test"), result.get("provenance")
    if not (isinstance(test, dict) and isinstance(test.get("accuracy"), (int, float))
            and isinstance(provenance, (dict, type(None)))):
        warnings.warn(f"{path}: not a finished point's result (test.accuracy / provenance of the wrong shape); "
                      "running the point again", stacklevel=2)
        return None
    ran_on = (provenance or {}).get("device", "cpu")  # results from before devices ran on the CPU
    if isinstance(raw.get("device"), str) and ran_on != resolve_device(raw["device"]).type:
        return None  # device "auto" on another machine: the same config would run somewhere else, so it runs again
    return result


def run_grid(exps: list[Experiment], *, executor: str = "local", workers: int = 2, threads: int = 1,
             rerun: bool = False, gpus_per_point: float = 0.0) -> list[dict]:
    """Run every experiment; returns results in grid order. Executor "local" (sequential) or "ray".

    Points whose <out>/result.json holds the same config are not run again unless rerun=True
    (a killed sweep continues where it stopped). gpus_per_point (ray): the GPU share each point asks Ray
    for; a fraction packs several small points on one GPU (Ray sets each task's CUDA_VISIBLE_DEVICES).
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if not (0 <= gpus_per_point <= 1 or float(gpus_per_point).is_integer()) or gpus_per_point != gpus_per_point:
        raise ConfigError(f"gpus_per_point={gpus_per_point}: a fraction in [0, 1] or a whole number of GPUs")
    if gpus_per_point and executor != "ray":
        raise ConfigError("gpus_per_point needs executor 'ray' (the local executor runs one point at a time on "
                          "the experiment's device)")
    if gpus_per_point and any(e.device == "cpu" for e in exps):
        raise ConfigError("gpus_per_point > 0 with device: cpu; set device: auto or cuda")
    raws = [e.dump() for e in exps]
    for e in exps:  # every point's outputs, before any point runs (each point claims its own when it starts)
        claim_run_outputs(e, claim=False)
    results = [None if rerun else _done(r) for r in raws]
    todo = [i for i, r in enumerate(results) if r is None]
    _prepare_all([exps[i] for i in todo])
    if executor == "local":
        old = torch.get_num_threads()
        try:
            with Progress(total=len(todo), desc="sweep") as bar:
                for n, i in enumerate(todo, 1):
                    results[i] = _point(raws[i], threads)
                    bar.update()
                    bar.milestone(f"point {n}/{len(todo)} done: {raws[i]['out']}")
        finally:
            torch.set_num_threads(old)
    elif todo:
        for i, r in zip(todo, _run_ray([raws[i] for i in todo], workers=workers, threads=threads,
                                       gpus_per_point=gpus_per_point)):
            results[i] = r
    return results


def _run_ray(raws: list[dict], *, workers: int, threads: int, gpus_per_point: float = 0.0) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs Ray: pip install 'shiftkit[ray]'") from None
    started = not ray.is_initialized()
    if started:  # a local cluster: `workers` CPUs, the GPUs Ray detects
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        if gpus_per_point and ray.cluster_resources().get("GPU", 0) < min(gpus_per_point, 1):
            raise ConfigError(f"gpus_per_point={gpus_per_point}: the Ray cluster has no GPU "
                              f"({ray.cluster_resources().get('GPU', 0)} GPUs); the points would wait forever")
        task = ray.remote(num_cpus=1, num_gpus=gpus_per_point, max_retries=0)(_point)
        refs = [task.remote(r, threads, os.getcwd()) for r in raws]
        pending = list(refs)
        with Progress(total=len(refs), desc="sweep (ray)") as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(len(done))
                bar.milestone(f"{len(refs) - len(pending)}/{len(refs)} points done")
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:  # a user error in a point reads like one, not a remote traceback
        if isinstance(e.cause, ShiftkitError):
            raise e.cause from None
        raise
    finally:
        if started:
            ray.shutdown()
