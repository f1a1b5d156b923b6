"""Issue 22's whole-run cases (run after _outputs.CASES): each `(class, case(work, fixtures, runner))`
returns None when it held, else {"class", "case", "problem"}.

- interrupt: Ctrl-C (SIGINT) during `train`: exit 130, `shiftkit: interrupted`, no temp or lock file left.
- full disk: ENOSPC while writing result.json, or the model file, of a second run into one folder: the
  earlier experiment.json / result.json / timing.json / model stay as they were, no temp file left.
- stale files: a killed save's temp files and lock (a dead pid) beside an output: reused and removed by
  the next write, which succeeds.
- report: FIFOs, /dev/zero, deep, non-UTF-8 or unknown-shape JSON under a results folder: skipped with a
  warning naming each, the report still written.
- sweep folders: grid values whose slugs read alike (`X/a-b`, `X/a/b`) get one folder each.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ._proc import child_env

__all__ = ["RUN_CASES"]


def _failure(cls: str, case: str, problem: str | None) -> dict | None:
    return {"class": cls, "case": case, "problem": problem} if problem else None


def report_case(work: Path, f: dict, runner) -> dict | None:
    """Hostile files under a results folder: the report is written, each file skipped with a warning naming it."""
    res = work / "report-res"
    res.mkdir()
    os.mkfifo(res / "a.json")
    (res / "b.json").symlink_to("/dev/zero")
    (res / "c.json").write_text("[" * 100_000 + "]" * 100_000)
    (res / "d.json").write_text('{"kind": "train", "test": {"accuracy": 1}}')
    (res / "e.json").write_text('{"rows": [{"method": "m", "sparsity": "high", "clean": 0.5}]}')
    (res / "f.jsonl").write_text('{"method": "m", "sparsity": 0.5, "clean": {"x": 1}}\n{"torn')
    (res / "g.json").write_bytes(b"\xff\xfe{}")
    try:
        rc, err = runner(["report", str(res)])
    except subprocess.TimeoutExpired:
        return {"class": "report", "case": "hostile results folder", "problem": "hang (timeout)"}
    missing = [n for n in ("a.json", "b.json", "c.json", "d.json", "e.json", "f.jsonl", "g.json") if n not in err]
    problem = ("traceback" if "Traceback" in err else f"exit code {rc}" if rc else
               f"no warning naming {missing}" if missing else None if (res / "report.md").is_file() else "no report.md")
    return {"class": "report", "case": "hostile results folder", "problem": problem} if problem else None


def interrupt_case(work: Path, f: dict, runner, *, timeout: float = 120) -> dict | None:
    """SIGINT during `shiftkit train`: exit 130, one line, no temp or lock file left."""
    data = f["data"]
    out = work / "interrupt" / "m.safetensors"
    p = subprocess.Popen([sys.executable, "-m", "shiftkit", "train", "--dataset", "fashion_mnist", "--root", str(data),
                          "--epochs", "100000", "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, env=child_env(OMP_NUM_THREADS="1"), stdin=subprocess.DEVNULL)
    lock, deadline = out.parent / ".m.safetensors.lock", time.monotonic() + timeout
    while not lock.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return {"class": "interrupt", "case": "SIGINT during train", "problem": "hang after SIGINT"}
    left = [q.name for q in out.parent.rglob("*") if q.name.endswith((".tmp", ".lock"))] if out.parent.exists() else []
    lines = err.strip().splitlines()
    problem = (f"exit code {p.returncode}" if p.returncode != 130 else "traceback" if "Traceback" in err
               else f"last line {lines[-1:]}" if lines[-1:] != ["shiftkit: interrupted"] else f"left {left}" if left else None)
    return {"class": "interrupt", "case": "SIGINT during train", "problem": problem} if problem else None


def sweep_folders_case(work: Path, f: dict, runner) -> dict | None:
    """Grid values whose readable slugs are the same (`X/a-b`, `X/a/b`) get a folder each."""
    out = work / "sweep-slugs"
    roots = [work / "roots" / "a-b", work / "roots" / "a" / "b"]
    for r in roots:
        r.parent.mkdir(parents=True, exist_ok=True)
        r.symlink_to(f["data"], target_is_directory=True)
    rc, err = runner(["sweep", str(f["cfg"]), "--grid", f"data.root={roots[0]},{roots[1]}", "--out", str(out), "--no-report"])
    found = sorted(out.glob("*/result.json"))
    problem = (f"exit code {rc}: {err.strip().splitlines()[-1:]}" if rc else
               f"{len(found)} result folders for 2 points" if len(found) != 2 else None)
    return {"class": "sweep folders", "case": "slugs that read alike", "problem": problem} if problem else None


# A child process: two 0-epoch runs into one folder, the second's write of `target` failing with ENOSPC.
_FULL_DISK = """
import errno, json, os, sys
from pathlib import Path
from shiftkit import checkpoints
from shiftkit._files import OutputError
from shiftkit.config import parse_experiment
from shiftkit.experiment import run_experiment
out, data, target = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
raw = {"data": {"name": "fashion_mnist", "root": data}, "budget": {"epochs": 0}, "model": {"kwargs": {"width": 4}},
       "out": str(out), "eval": {"domains": False}}
run_experiment(parse_experiment(raw), progress=False)
names = ("experiment.json", "result.json", "timing.json", "model.safetensors")
before = {n: (out / n).read_bytes() for n in names}
write = checkpoints._write_temp
def full(path, data):
    if path.name == target:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write(path, data)
checkpoints._write_temp = full
try:
    run_experiment(parse_experiment({**raw, "seed": 1}), progress=False)
    problem = "the second run did not fail"
except OutputError as e:
    changed = [n for n in names if (out / n).read_bytes() != before[n]]
    temps = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    problem = (f"changed: {changed}" if changed else f"temp files left: {temps}" if temps
               else None if target in str(e) and "No space left" in str(e) else f"message: {e}")
print(json.dumps({"problem": problem}))
"""


def full_disk_case(target: str):
    def case(work: Path, f: dict, runner) -> dict | None:
        out = work / f"full-disk-{target}"
        r = subprocess.run([sys.executable, "-c", _FULL_DISK, str(out), str(f["data"]), target], capture_output=True,
                           text=True, env=child_env(OMP_NUM_THREADS="1"), timeout=300, stdin=subprocess.DEVNULL)
        try:
            problem = json.loads(r.stdout.strip().splitlines()[-1])["problem"]
        except (IndexError, ValueError, KeyError):
            problem = f"exit code {r.returncode}: {r.stderr.strip().splitlines()[-1:]}"
        return _failure("full disk", f"ENOSPC writing {target}", problem)
    return case


def stale_files_case(work: Path, f: dict, runner) -> dict | None:
    """A save killed mid-write left temp files and its lock (a dead pid): `export` to that path reuses
    the lock, removes the temps and writes the file."""
    d = work / "stale"
    d.mkdir()
    (d / ".plain.safetensors.lock").write_text("999999999\n")
    temps = [d / ".plain.safetensors.k1ll3d_x.tmp", d / ".plain.safetensors.abcdefgh.tmp"]
    for t in temps:
        t.write_bytes(b"half a checkpoint")
    rc, err = runner(["export", str(f["ckpt"]), "--out", str(d / "plain.safetensors")])
    left = [p.name for p in d.iterdir() if p.name != "plain.safetensors"]
    problem = (f"exit code {rc}: {err.strip().splitlines()[-1:]}" if rc else f"left: {left}" if left
               else None if (d / "plain.safetensors").stat().st_size > 1000 else "no output written")
    return _failure("stale files", "killed save's temps and lock", problem)


def plot_symlink_case(work: Path, f: dict, runner) -> dict | None:
    """A plot name in a results folder symlinked to a victim: the report replaces the link, the victim keeps its bytes."""
    res = work / "plot-link"
    res.mkdir()
    rows = [{"method": m, "sparsity": sp, "clean": 0.5, "shifted": 0.4, "seed": 0} for m in ("a", "b") for sp in (0.5, 0.9)]
    (res / "bench.json").write_text(json.dumps({"rows": rows}))
    victim = work / "plot-victim.txt"
    victim.write_text("precious\n")
    (res / "prune_accuracy_vs_sparsity.png").symlink_to(victim)
    rc, err = runner(["report", str(res)])
    problem = (f"exit code {rc}: {err.strip().splitlines()[-1:]}" if rc else
               "the victim was written" if victim.read_text() != "precious\n" else None)
    return _failure("outputs", "report plot symlinked to a victim", problem)


RUN_CASES = [("interrupt", interrupt_case), ("full disk", full_disk_case("result.json")),
             ("full disk", full_disk_case("model.safetensors")), ("stale files", stale_files_case),
             ("report", report_case), ("outputs", plot_symlink_case), ("sweep folders", sweep_folders_case)]
