"""Kill-anywhere resume of the pruning sweep (`bench.prune.run`, resumable through its JSON-lines
file and cached dense checkpoints): SIGKILL it inside a run, inside fine-tuning and mid-append,
resume, and compare every record with an uninterrupted sweep (timings aside) bit for bit."""
from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np

from ._crash import _durations
from ._zygote import PHASES, Zygote

__all__ = ["prune_child", "prune_campaign", "TINY_SWEEP"]

# a sweep of a few seconds with every phase: 2 dense seeds, 3 arms, 2 sparsities
TINY_SWEEP = {"model": "small_cnn", "model_kwargs": [["width", 4]], "seeds": [0, 1], "sparsities": [0.5, 0.9],
              "core_sparsities": [0.9], "arms": ["magnitude", "gcnet", "random"], "dense_train": 300,
              "dense_epochs": 1, "ft_train": 200, "ft_epochs": 1, "n_shift": 40, "drift_bins": [7],
              "corruptions": ["contrast"], "severities": [3], "calib_per_class": 4, "dataset": "fashion_mnist"}
_TIMING = ("seconds", "prune_seconds")


def _write_fmnist(root: Path) -> None:
    """A tiny learnable Fashion-MNIST in IDX: a template per class plus noise."""
    from ._badopts import _idx

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    templates = rng.random((10, 28, 28)) > 0.6
    for prefix, n in (("train", 600), ("t10k", 200)):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = (templates[y] * 200 + rng.integers(0, 55, (n, 28, 28))).astype(np.uint8)
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(x), mtime=0))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(y), mtime=0))


def _instrument(emit) -> None:
    from shiftkit.bench import _results, prune as bp

    run_one, fit, append = bp.run_one, bp.fit, _results.append_jsonl

    def run_one_(*a, **k):
        emit("absorb")  # one sweep point: the prune counterpart of an absorb
        return run_one(*a, **k)

    def fit_(*a, **k):
        emit("finetune")
        return fit(*a, **k)

    def append_(path, obj):  # the real append is one write(); this one tears, to prove torn lines are dropped
        emit("write")
        data = (json.dumps(obj) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for i in range(0, len(data), 64):
                os.write(fd, data[i:i + 64])
                time.sleep(0.002)
        finally:
            os.close(fd)
        emit("write-end")

    bp.run_one, bp.fit, _results.append_jsonl = run_one_, fit_, append_


def prune_child(spec: dict, emit) -> None:
    """Resume (or start) the sweep in spec["jsonl"]; the record list is the result."""
    _instrument(emit)
    from shiftkit.bench import prune as bp

    cfg = dict(spec["sweep"])
    cfg = bp.BenchConfig(**{**cfg, **{k: tuple(tuple(x) if isinstance(x, list) else x for x in v)
                                      for k, v in cfg.items() if isinstance(v, list)}})
    bp._DATA.clear()
    bp.run(cfg, Path(spec["jsonl"]), workers=1, threads=1, progress=lambda _: None)
    emit("done")


def _complete_records(jsonl: Path) -> tuple[list[dict], bool]:
    """(records of the complete lines, whether a torn last line is there) without changing the file."""
    raw = jsonl.read_bytes() if jsonl.exists() else b""
    end = raw.rfind(b"\n") + 1
    return [json.loads(line) for line in raw[:end].decode().splitlines() if line.strip()], end < len(raw)


def _check(run_dir: Path, jsonl: Path) -> tuple[list[str], int]:
    """Problems (a complete line that does not parse, a dense checkpoint that does not load) and torn lines."""
    from shiftkit.checkpoints import read_metadata

    problems, torn = [], 0
    try:
        torn = int(_complete_records(jsonl)[1])
    except ValueError as e:
        problems.append(f"{jsonl.name}: {e}")
    for p in sorted(run_dir.glob("*.safetensors")) if run_dir.exists() else []:
        try:
            read_metadata(p)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{p.name}: {type(e).__name__}: {e}")
    return problems, torn


def _strip(records: list[dict]) -> dict:
    return {(r["seed"], r["arm"], r["sparsity"]): {k: v for k, v in r.items() if k not in _TIMING} for r in records}


def prune_campaign(work: Path, zygote: Zygote, *, kills: int, seed: int = 0, max_kills_per_run: int = 6,
                   log=print) -> dict:
    """SIGKILL pruning-sweep children >= `kills` times; every run's records must equal the reference's."""
    work.mkdir(parents=True, exist_ok=True)
    _write_fmnist(work / "fmnist")
    sweep = {**TINY_SWEEP, "root": str(work / "fmnist")}

    def spec(name: str) -> dict:
        shutil.rmtree(work / name, ignore_errors=True)
        return {"kind": "prune", "sweep": {**sweep, "runs_dir": str(work / name)}, "jsonl": str(work / name / "runs.jsonl")}

    ref_spec = spec("ref")
    (work / "ref").mkdir()
    ref = zygote.run_child(ref_spec)
    ref_records = _strip(_complete_records(Path(ref_spec["jsonl"]))[0])
    durations, n_points = _durations(ref["phases"]), len(ref_records)
    rng, runs, total = random.Random(seed), [], 0
    while total < kills and len(runs) < 4 * kills:
        name = f"run{len(runs)}"
        s = spec(name)
        (work / name).mkdir()
        r = {"kills": 0, "by_phase": {p: 0 for p in PHASES}, "torn_lines_seen": 0, "problems": [], "lost": 0}
        done = 0
        while True:
            phase = PHASES[(total + r["kills"]) % len(PHASES)]
            budget = min(max_kills_per_run, kills - total)
            plan = (phase, rng.randrange(max(1, n_points - done)), rng.uniform(0, durations[phase])) \
                if r["kills"] < budget else None
            if not zygote.run_child(s, kill_at=plan)["killed"]:
                break
            r["kills"] += 1
            r["by_phase"][phase] += 1
            problems, torn = _check(work / name, Path(s["jsonl"]))
            r["problems"] += [f"{name} kill {r['kills']} ({phase}): {p}" for p in problems]
            r["torn_lines_seen"] += torn
            now = len(_complete_records(Path(s["jsonl"]))[0]) if not problems else 0
            r["lost"] += max(0, done - now)
            done = now
        records, torn = _complete_records(Path(s["jsonl"]))
        got = _strip(records)
        r.update(equal=got == ref_records, points=len(got), torn_at_end=torn)
        runs.append(r)
        total += r["kills"]
        log(f"prune crash run {len(runs)}: {r['kills']} kills survived, records equal: {r['equal']}, "
            f"torn lines dropped: {r['torn_lines_seen']}, partial files accepted: {len(r['problems'])}")
    problems = [p for r in runs for p in r["problems"]]
    return {"sweep_points": n_points, "kills": total, "runs": len(runs),
            "kills_by_phase": {p: sum(r["by_phase"][p] for r in runs) for p in PHASES},
            "all_records_equal": all(r["equal"] for r in runs), "torn_lines_dropped": sum(r["torn_lines_seen"] for r in runs),
            "partial_files_accepted": len(problems), "records_lost": sum(r["lost"] for r in runs),
            "reference_seconds": round(ref["seconds"], 2), "problems": problems,
            "per_run": [{k: v for k, v in r.items() if k != "problems"} for r in runs]}
