"""Issue 13's hostile-input classes through the CLI, as a user runs it: `python -m shiftkit ...` in a
fresh process per check, with a timeout (a hang), its peak RSS from wait4 against the same command on a
valid input (a memory blow-up is +1 GiB), and its stderr judged: exit != 0, no traceback, one line that
names the file. The `print` class (rich markup and deeply nested values in what inspect / import / eval
print) may exit 0 — showing a valid file's odd metadata is right — but must not crash, hang or blow up.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import inputs
from ._badopts import _judge
from ._proc import child_env

__all__ = ["COMMANDS", "run_classes", "run_check"]

BLOWUP_MIB = 1024


def _ckpt(path: Path, work: Path) -> dict[str, list[str]]:
    nodata = str(work / "no-data")
    return {
        "inspect": ["inspect", str(path)],
        "import": ["import", str(path), "--arch", "small_cnn", "--num-classes", "4", "--in-chans", "1",
                   "--out", str(work / "out" / "imported.safetensors")],
        "eval": ["eval", str(path), "--dataset", "fashion_mnist", "--root", nodata],
        "prune": ["prune", str(path), "--dataset", "fashion_mnist", "--root", nodata, "--out", str(work / "out" / "p")],
    }


def _folder(path: Path, work: Path, dataset: str) -> dict[str, list[str]]:
    return {"data": ["data", dataset, "--root", str(path)],
            "train": ["train", "--dataset", dataset, "--root", str(path), "--epochs", "1", "--model", "small_cnn",
                      "--out", str(work / "out" / "trained.safetensors")]}


# class -> (generator, commands run on each input, how the commands are built)
COMMANDS = {
    "config": (inputs.config_inputs, ("eval", "prune"), _ckpt),
    "shape": (inputs.shape_inputs, ("inspect", "import", "eval"), _ckpt),
    "special_file": (inputs.special_file_inputs, ("inspect", "import", "eval"), _ckpt),
    "pt": (inputs.pt_inputs, ("inspect", "import"), _ckpt),
    "cifar": (inputs.cifar_inputs, ("data",), lambda p, w: _folder(p, w, "cifar10")),
    "folder": (inputs.folder_inputs, ("data", "train"), lambda p, w: _folder(p, w, "image_folder")),
    "print": (inputs.markup_inputs, ("inspect", "import", "eval"), _ckpt),
}


# A small launcher forks and execs each check and reports wait4's peak RSS: Linux carries a process's
# high-water mark across fork + exec, so a check started straight from this (torch-sized) process would
# report at least this process's own RSS.
_SPAWN = """
import json, os, signal, sys, time
timeout, argv = float(sys.argv[1]), sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(sys.executable, [sys.executable, "-m", "shiftkit", *argv])
t0, hung = time.monotonic(), False
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    if time.monotonic() - t0 > timeout:
        os.kill(pid, signal.SIGKILL)
        hung = True
        _, status, usage = os.wait4(pid, 0)
        break
    time.sleep(0.05)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "peak_mib": usage.ru_maxrss / 1024, "hung": hung,
                  "seconds": time.monotonic() - t0}))
"""


def run_check(argv: list[str], *, cwd: Path, timeout: float) -> dict:
    """`python -m shiftkit ARGV`: exit code, stderr, peak RSS (MiB, from wait4), seconds, hung."""
    with tempfile.TemporaryFile("w+", dir=cwd) as err:
        r = subprocess.run([sys.executable, "-c", _SPAWN, str(timeout), *argv], cwd=cwd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout + 60,
                           env=child_env(OMP_NUM_THREADS="1", COLUMNS="200"))
        err.seek(0)
        stderr = err.read()
    return {**json.loads(r.stdout.strip().splitlines()[-1]), "stderr": stderr}


def _problem(cls: str, path: Path, r: dict, baseline: float) -> str | None:
    if r["hung"]:
        return "hang (killed at the timeout)"
    if r["peak_mib"] - baseline > BLOWUP_MIB:
        return f"memory blow-up: peak {r['peak_mib']:.0f} MiB, baseline {baseline:.0f} MiB"
    if "Traceback" in r["stderr"]:
        return "traceback: " + r["stderr"].strip().splitlines()[-1][:200]
    if cls == "print":
        return None if r["rc"] in (0, 1, 2) else f"exit {r['rc']}"
    problem = _judge(r["rc"], r["stderr"])
    if problem:
        return problem
    named = {str(path), path.name, os.fsencode(path.name).decode("utf-8", "replace")}
    return None if any(n in r["stderr"] for n in named) else f"error does not name the file: {r['stderr'].strip()[:200]}"


def _baselines(work: Path, timeout: float) -> dict[str, float]:
    """Peak RSS of every command on a valid input: a checkpoint, a CIFAR folder, an image folder."""
    ok = inputs.valid_inputs(work / "valid")
    argvs = {f"ckpt {k}": v for k, v in _ckpt(ok["ckpt"], work).items()}
    argvs["cifar data"] = _folder(ok["cifar"], work, "cifar10")["data"]
    argvs.update({f"folder {k}": v for k, v in _folder(ok["folder"], work, "image_folder").items()})
    return {k: run_check(a, cwd=work, timeout=timeout)["peak_mib"] for k, a in argvs.items()}


def run_classes(work: Path, *, timeout: float = 60, jobs: int = 2, every_command: bool = False, log=print) -> dict:
    """Every input of every class through its commands (every_command) or through one of them, in turn
    (input i gets command i mod n: each command still sees several inputs of each class, at a third of the
    cost — a check is a fresh interpreter that imports torch); counts, failures, per-check costs."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "out").mkdir(exist_ok=True)
    base = _baselines(work, timeout)
    checks = []
    for cls, (gen, commands, build) in COMMANDS.items():
        (work / cls).mkdir(exist_ok=True)
        for i, (name, path) in enumerate(gen(work / cls)):
            argvs = build(path, work)
            kind = "ckpt" if build is _ckpt else ("cifar" if cls == "cifar" else "folder")
            chosen = commands if every_command else (commands[i % len(commands)],)
            checks += [(cls, name, path, cmd, argvs[cmd], base[f"{kind} {cmd}"]) for cmd in chosen]
    log(f"   {len(checks)} checks over {len(COMMANDS)} classes, {jobs} at a time")
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(lambda c: run_check(c[4], cwd=work, timeout=timeout), checks))
    per_class, failures, lines = {}, [], {}
    for (cls, name, path, cmd, argv, baseline), r in zip(checks, results):
        row = per_class.setdefault(cls, {"inputs": set(), "checks": 0, "commands": set(), "failures": 0, "peak_mib": 0.0,
                                         "peak_over_baseline_mib": -float("inf"), "max_seconds": 0.0, "seconds": 0.0})
        row["inputs"].add(name)
        row["commands"].add(cmd)
        row["checks"] += 1
        row["peak_over_baseline_mib"] = max(row["peak_over_baseline_mib"], r["peak_mib"] - baseline)
        row["peak_mib"] = max(row["peak_mib"], r["peak_mib"])
        row["max_seconds"] = max(row["max_seconds"], r["seconds"])
        row["seconds"] += r["seconds"]
        problem = _problem(cls, path, r, baseline)
        if problem:
            row["failures"] += 1
            failures.append({"class": cls, "input": name, "command": cmd, "problem": problem})
        lines.setdefault(f"{cls}: {name}", r["stderr"].strip().splitlines()[-1][:240] if r["stderr"].strip() else "")
    for row in per_class.values():
        row["inputs"], row["commands"] = len(row["inputs"]), sorted(row["commands"])
        row["mean_seconds"] = row["seconds"] / max(row["checks"], 1)
    return {"per_class": per_class, "failures": failures, "stderr": lines, "baseline_peak_mib": base,
            "timeout_s": timeout, "checks": len(checks)}
