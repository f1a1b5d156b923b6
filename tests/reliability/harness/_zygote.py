"""A fork server for the kill-anywhere campaigns: one process imports torch and the shiftkit library once,
then forks a child per request (a transfer run, a pruning sweep). A fresh interpreter costs seconds of
imports; a fork costs milliseconds, so a SIGKILL campaign stays cheap. It never imports the CLI: CLI checks
run `python -m shiftkit` in a subprocess, as a user does (`_badopts.run_cli_case`).

A child reports its phases as lines on a FIFO (`absorb`, `finetune`, `write`, `write-end`, `done`);
the parent may SIGKILL it after any of them.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from ._proc import PACKAGE, child_env

__all__ = ["PHASES", "Zygote", "zygote"]

PHASES = ("absorb", "finetune", "write")


def zygote() -> None:
    """Import everything once, then fork one child per spec line on stdin (a fresh interpreter costs
    seconds of imports per kill). Answers `{"pid": n}` then `{"exit": code}` per child on stdout.
    Children: a transfer run (default) or a pruning sweep (kind "prune")."""
    torch.set_num_threads(1)
    from shiftkit import prune, transfer  # noqa: F401  (the heavy imports, shared by every fork)
    from shiftkit.bench import prune as bench_prune  # noqa: F401

    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing the library prints may reach the answer channel
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        spec = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fifo = os.open(spec["fifo"], os.O_WRONLY)
                emit = lambda phase: os.write(fifo, f"{phase}\n".encode())  # noqa: E731
                try:
                    if spec.get("kind") == "prune":
                        from ._crash_prune import prune_child

                        prune_child(spec, emit)
                        code = 0
                    else:
                        from ._crash import child

                        child(spec, emit)
                        code = 0
                except BaseException as e:  # noqa: BLE001  (reported to the parent, then exit 1)
                    emit(f"error {type(e).__name__}: {e}".replace("\n", " "))
            finally:
                os._exit(code)
        print(json.dumps({"pid": pid}), file=out, flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"exit": os.waitstatus_to_exitcode(status)}), file=out, flush=True)


def _kill(pid: int) -> bool:
    """SIGKILL pid; False if it already exited (the zygote reaped it)."""
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


class Zygote:
    """Parent side of `zygote()`: run_child() forks a child, streams its phases, may SIGKILL it."""

    def __init__(self, work: Path) -> None:
        self.fifo = work / "phases.fifo"
        self.fifo.unlink(missing_ok=True)
        os.mkfifo(self.fifo)
        env = child_env(OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-c", f"from {PACKAGE}._zygote import zygote; zygote()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env, cwd=work)
        self._answer()

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("crash-test zygote died")
        return json.loads(line)

    def run_child(self, spec: dict, *, kill_at: tuple[str, int, float] | None = None, timeout: float = 300) -> dict:
        """Run (or resume) a child. kill_at=(phase, n, delay): SIGKILL `delay` s after the n-th (0-based)
        `phase` line. Returns {"killed": bool, "phases": [(phase, t)], "seconds": float}."""
        self.proc.stdin.write(json.dumps({**spec, "fifo": str(self.fifo)}) + "\n")
        self.proc.stdin.flush()
        pid, start = self._answer()["pid"], time.monotonic()
        seen, phases, killed, error = {p: 0 for p in PHASES}, [], False, None
        with open(self.fifo) as f:
            while True:
                ready, _, _ = select.select([f], [], [], max(0.0, start + timeout - time.monotonic()))
                if not ready:
                    _kill(pid)
                    raise RuntimeError(f"transfer child hung for {timeout}s")
                line = f.readline().strip()
                if not line:
                    break
                if line.startswith("error"):
                    error = line
                phases.append((line, time.monotonic() - start))
                if kill_at and line == kill_at[0]:
                    if seen[line] == kill_at[1]:
                        time.sleep(kill_at[2])
                        killed = _kill(pid)
                        break
                    seen[line] += 1
        code = self._answer()["exit"]
        if error or (not killed and code != 0):
            raise RuntimeError(f"transfer child failed (exit {code}): {error}")
        killed = killed and code == -signal.SIGKILL  # else it finished just before the signal
        return {"killed": killed, "phases": phases, "seconds": time.monotonic() - start}

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)
        self.fifo.unlink(missing_ok=True)
