"""A fork server for the reliability checks: one process imports torch and shiftkit once, then forks
a child per request (a transfer run, a pruning sweep, a CLI call). A fresh interpreter costs seconds of
imports; a fork costs milliseconds, so a SIGKILL campaign or a sweep of CLI cases stays cheap.

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

__all__ = ["PHASES", "Zygote", "zygote"]

PHASES = ("absorb", "finetune", "write")


def _cli_child(spec: dict) -> int:
    """`shiftkit.cli.main(argv)` with stderr to spec["stderr"]: its exit code; an uncaught error
    prints a traceback there, as the real entry point would."""
    import traceback

    from .. import cli

    os.dup2(os.open(spec["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    sys.argv = ["shiftkit", *spec["argv"]]
    try:
        cli.main(spec["argv"])
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        return 1
    finally:
        sys.stderr.flush()


def zygote() -> None:
    """Import everything once, then fork one child per spec line on stdin (a fresh interpreter costs
    seconds of imports per kill). Answers `{"pid": n}` then `{"exit": code}` per child on stdout.
    Children: a transfer run (default), a pruning sweep (kind "prune"), a CLI call (kind "cli")."""
    torch.set_num_threads(1)
    from .. import cli, prune, transfer  # noqa: F401  (the heavy imports, shared by every fork)
    from . import prune as bench_prune  # noqa: F401

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
                    if spec.get("kind") == "cli":
                        code = _cli_child(spec)
                    elif spec.get("kind") == "prune":
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
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", "from shiftkit.bench._zygote import zygote; zygote()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env, cwd=work)  # a CLI case that wrongly succeeds writes here
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

    def run_cli(self, argv: list[str], *, timeout: float = 300) -> tuple[int, str]:
        """`shiftkit ARGV` in a forked child (the CLI's own code path, imports already paid):
        (exit code, stderr)."""
        err = self.fifo.with_name("cli_stderr.txt")
        self.proc.stdin.write(json.dumps({"kind": "cli", "argv": argv, "stderr": str(err), "fifo": str(self.fifo)}) + "\n")
        self.proc.stdin.flush()
        pid, start = self._answer()["pid"], time.monotonic()
        with open(self.fifo) as f:
            while select.select([f], [], [], max(0.0, start + timeout - time.monotonic()))[0]:
                if not f.readline():
                    break
            else:
                _kill(pid)
        return self._answer()["exit"], err.read_text() if err.exists() else ""

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)
        self.fifo.unlink(missing_ok=True)
