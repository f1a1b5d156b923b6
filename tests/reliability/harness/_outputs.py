"""Issue 22's classes (§1 outputs, §3 inputs) through the CLI, each case a `python -m shiftkit` process:

- outputs: an output that is a FIFO, socket, character device or folder; lock files that are symlinks
  (to a victim, dangling) or FIFOs; results folders and model files that clash, names too long once
  the lock / temp suffixes are added, a file where a folder must be. Pass: exit 2, one stderr line
  naming the path, and what was there untouched (the device still a device, the victim's bytes as
  they were, nothing created).
- yaml: alias bombs, duplicate keys, recursive aliases, deep nesting, huge values: one bounded line.
- grid: a grid of millions of points is counted and refused before it is built.
Whole runs (Ctrl-C, a full disk, stale files of a killed save, hostile report folders, sweep folders)
are in _outputs_runs.py.
"""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Callable

from ._badopts import _judge, make_fixtures, run_cli_case

__all__ = ["CASES", "run_outputs"]

Check = Callable[[], "str | None"]
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))


def _kind(path: Path) -> int | None:
    try:
        return stat.S_IFMT(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None


def _special(path: Path, kind: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "device":  # /dev/null's numbers; mknod needs CAP_MKNOD (a FIFO stands in without it)
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            os.mkfifo(path)
    return path


def _unchanged(*paths: Path) -> Check:
    """What each path is now (type and bytes of regular files) must still be so after the command."""
    def snap(p: Path):
        k = _kind(p)
        return k, p.read_bytes() if k == stat.S_IFREG else None
    before = {p: snap(p) for p in paths}
    return lambda: next((f"{p} changed" for p, s in before.items() if snap(p) != s), None)


def _absent(*paths: Path) -> Check:
    return lambda: next((f"{p} was created" for p in paths if os.path.lexists(p)), None)


def _both(*checks: Check) -> Check:
    return lambda: next((problem for c in checks if (problem := c())), None)


# ---- cases: (class, name, build(work, fixtures) -> (argv, check, text the one error line must hold)) ------
def _special_out(command: str, kind: str):
    def build(w: Path, f: dict):
        out = _special(w / f"{command}-{kind}.safetensors", kind)
        argv = {"export": ["export", str(f["ckpt"]), "--out", str(out)],
                "import": ["import", str(f["ckpt"]), "--arch", "small_cnn", "--in-chans", "1", "--out", str(out)],
                "train": ["train", "--dataset", "fashion_mnist", "--root", str(f["data"]), "--epochs", "1", "--out", str(out)],
                "prune": ["prune", str(f["ckpt"]), "--dataset", "fashion_mnist", "--root", str(f["data"]), "--out", str(out)],
                }[command]
        return argv, _unchanged(out), str(out)
    return build


def _lock(kind: str):
    def build(w: Path, f: dict):
        d = w / f"lock-{kind}"
        d.mkdir()
        victim, lock = d / "victim.txt", d / ".m.safetensors.lock"
        victim.write_text("precious\n")
        if kind == "symlink":
            lock.symlink_to(victim)
        elif kind == "dangling":
            lock.symlink_to(d / "created-through-the-link")
        else:
            os.mkfifo(lock)
        argv = ["train", "--dataset", "fashion_mnist", "--root", str(f["data"]), "--epochs", "1", "--out", str(d / "m.safetensors")]
        return argv, _both(_unchanged(victim, lock), _absent(d / "created-through-the-link", d / "m.safetensors")), str(lock)
    return build


def _clash(kind: str):
    def build(w: Path, f: dict):
        d = w / f"clash-{kind}"
        d.mkdir()
        base = ["run", str(f["cfg"]), "--root", str(f["data"])]
        if kind == "same path":
            return base + ["--out", str(d / "x"), "--set", f"save={d / 'x'}"], _absent(d / "x"), str(d / "x")
        if kind == "model inside":
            return base + ["--out", str(d / "x" / "r"), "--set", f"save={d / 'x'}"], _absent(d / "x"), str(d / "x")
        if kind == "model is results file":
            return (base + ["--out", str(d), "--set", f"save={d / 'result.json'}"], _absent(d / "result.json"),
                    str(d / "result.json"))
        if kind == "folder where result.json goes":
            (d / "result.json").mkdir()
            return base + ["--out", str(d)], _unchanged(d / "result.json"), str(d / "result.json")
        if kind == "file as parent":
            (d / "f").write_text("a file\n")
            return (["train", "--dataset", "fashion_mnist", "--root", str(f["data"]), "--out", str(d / "f" / "m.safetensors")],
                    _unchanged(d / "f"), str(d / "f"))
        if kind == "name too long":
            out = d / ("m" * 240 + ".safetensors")
            return (["train", "--dataset", "fashion_mnist", "--root", str(f["data"]), "--out", str(out)],
                    _absent(d / ("m" * 240)), "m" * 40)
        if kind == "sweep out is a file":
            (d / "s").write_text("a file\n")
            return ["sweep", str(f["cfg"]), "--grid", "seed=0,1", "--out", str(d / "s")], _unchanged(d / "s"), str(d / "s")
        if kind == "report into a FIFO":
            res = d / "res"
            res.mkdir()
            fifo = _special(d / "rep" / "report.md", "fifo")
            return ["report", str(res), "--out", str(fifo.parent)], _unchanged(fifo), str(fifo)
        raise KeyError(kind)
    return build


def _yaml(kind: str):
    texts = {"alias bomb": BOMB, "alias bomb in options": BOMB + "data: {options: {x: [*a9, *a9, *a9]}}\n",
             "duplicate key": "seed: 0\nbudget: {epochs: 1}\nseed: 1\n",
             "duplicate nested key": "budget:\n  epochs: 1\n  lr: 0.1\n  epochs: 2\n",
             "recursive alias": "data: &d {options: {self: *d}}\n", "nested 80 deep": "data: " + "[" * 80 + "]" * 80 + "\n",
             "huge bad value": "seed: [" + ", ".join(["123456789"] * 100_000) + "]\n",
             "a million values": "grid: {seed: [" + ", ".join(["0"] * 1_000_000) + "]}\n"}

    def build(w: Path, f: dict):
        cfg = w / f"yaml-{kind.replace(' ', '_')}.yaml"
        cfg.write_text(texts[kind])
        return ["run", str(cfg), "--dry-run"], _unchanged(cfg), cfg.name
    return build


def _grid(w: Path, f: dict):
    values = ",".join(map(str, range(300)))
    argv = ["sweep", str(f["cfg"]), "--grid", f"seed={values}", "--grid", f"data.seed={values}",
            "--grid", f"data.domain={values}", "--out", str(w / "grid")]
    return argv, _absent(w / "grid"), "points"


CASES: list[tuple[str, str, Callable]] = [
    *[("outputs", f"{c} --out {k}", _special_out(c, k)) for c in ("export", "train") for k in ("fifo", "socket", "device", "folder")],
    *[("outputs", f"{c} --out {k}", _special_out(c, k)) for c in ("import", "prune") for k in ("fifo", "folder")],
    *[("outputs", f"lock file: {k}", _lock(k)) for k in ("symlink", "dangling", "fifo")],
    *[("outputs", f"clash: {k}", _clash(k)) for k in ("same path", "model inside", "model is results file",
                                                        "folder where result.json goes", "file as parent", "name too long",
                                                        "sweep out is a file", "report into a FIFO")],
    *[("yaml", k, _yaml(k)) for k in ("alias bomb", "alias bomb in options", "duplicate key", "duplicate nested key",
                                      "recursive alias", "nested 80 deep", "huge bad value", "a million values")],
    ("grid", "27 million points", _grid),
]


def _fixtures(work: Path) -> dict:
    f = make_fixtures(work / "fixtures")
    f["cfg"] = work / "fixtures" / "train.yaml"
    f["cfg"].write_text("data: {name: fashion_mnist}\nbudget: {epochs: 0}\nmodel: {name: small_cnn, kwargs: {width: 4}}\n")
    return f


def _run_case(cls: str, name: str, build: Callable, work: Path, f: dict, runner) -> tuple[dict | None, str]:
    argv, check, names = build(work, f)
    t0 = time.monotonic()
    try:
        rc, err = runner(argv)
    except subprocess.TimeoutExpired:
        return {"class": cls, "case": name, "problem": "hang (timeout)"}, ""
    line = err.strip().splitlines()[-1][:300] if err.strip() else ""
    problem = _judge(rc, err) or (None if rc == 2 else f"exit code {rc}") or check()
    if not problem and names not in line:
        problem = f"the error line does not name {names[:60]!r}: {line[:200]}"
    if not problem and len(line) > 500:
        problem = f"error line of {len(line)} characters"
    return ({"class": cls, "case": name, "problem": problem, "seconds": round(time.monotonic() - t0, 1)}
            if problem else None), line


def run_outputs(work: Path, *, runner=None, names: set[str] | None = None, extras: bool = True) -> dict:
    """Every case (or those in `names`) through `runner(argv) -> (rc, stderr)`: counts per class, failures,
    one stderr line per case."""
    work.mkdir(parents=True, exist_ok=True)
    runner = runner or (lambda argv: run_cli_case(argv, cwd=work, timeout=120))
    f = _fixtures(work)
    failures, lines, per_class = [], {}, {}
    for cls, name, build in CASES:
        if names is not None and name not in names:
            continue
        failure, lines[name] = _run_case(cls, name, build, work, f, runner)
        c = per_class.setdefault(cls, {"cases": 0, "failures": 0})
        c["cases"] += 1
        c["failures"] += failure is not None
        failures += [failure] if failure else []
    if extras:
        from ._outputs_runs import RUN_CASES

        for cls, fn in RUN_CASES:
            failure = fn(work, f, runner)
            c = per_class.setdefault(cls, {"cases": 0, "failures": 0})
            c["cases"] += 1
            c["failures"] += failure is not None
            failures += [failure] if failure else []
    return {"cases": sum(c["cases"] for c in per_class.values()), "per_class": per_class, "failures": failures,
            "stderr": lines}
