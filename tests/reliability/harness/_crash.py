"""Kill-anywhere resume: run a multi-source transfer in a child process, SIGKILL it at random moments
(inside absorb, fine-tuning, checkpoint writing), resume, and compare with an uninterrupted run.

The child (forked by _zygote.Zygote) reports its phases as lines on a FIFO (`absorb`, `finetune`, `write`, `write-end`, `done`),
printed by wrappers around the library calls; checkpoint writes go out in small slow chunks so a kill
can land in the middle of one. After every kill every file in the run dir must load, or be a temp
file that resume ignores; the final weights must equal the uninterrupted run's bit for bit.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import torch

from ._zygote import PHASES, Zygote

__all__ = ["child", "check_run_dir", "crash_campaign", "Zygote"]

# what the child runs: few epochs, tiny batches, so one run is a few seconds but has many phases
TRANSFER_CFG = {"initial_epochs": 2, "finetune_epochs": 2, "batch_size": 8, "seed": 3}


# ---------------------------------------------------------------- the child

def _instrument(emit) -> None:
    """Wrap absorb, the fine-tuning fit and atomic_write so each announces itself on `emit`."""
    from shiftkit import checkpoints
    from shiftkit.transfer import base

    absorb, fit, write, fdopen = base.BaseMerger.absorb, base.fit, checkpoints.atomic_write, os.fdopen

    def absorb_(self, source):
        emit("absorb")
        return absorb(self, source)

    def fit_(*a, **k):
        emit("finetune")
        return fit(*a, **k)

    class SlowFile:  # writes in ~32 chunks so a kill can leave a partial temp file
        def __init__(self, f):
            self.f = f

        def write(self, data):
            step = max(len(data) // 32, 64)
            for i in range(0, len(data), step):
                self.f.write(data[i:i + step])
                self.f.flush()
                time.sleep(0.002)
            return len(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def write_(path, data, **kw):
        emit("write")
        os.fdopen = lambda fd, mode="r", *a, **k: SlowFile(fdopen(fd, mode, *a, **k)) if "w" in mode else fdopen(fd, mode, *a, **k)
        try:
            write(path, data, **kw)
        finally:
            os.fdopen = fdopen
        emit("write-end")

    base.BaseMerger.absorb, base.fit, checkpoints.atomic_write = absorb_, fit_, write_


def child(spec: dict, emit) -> None:
    """The child's work: (resume and) run the transfer described by `spec`, save the final weights."""
    _instrument(emit)
    from shiftkit import transfer
    from shiftkit.checkpoints import save_checkpoint
    from ._tiny import tiny_domains, tiny_net

    target = tiny_domains(spec["k"])[-1]
    merger = transfer.create(spec["method"], tiny_net(0), target, run_dir=spec["run_dir"], **spec["cfg"])
    model = transfer.run_sources(merger, spec["sources"], resume=True)
    save_checkpoint(Path(spec["final"]), model.state_dict(), metadata={"records": json.dumps(merger.records)})
    emit("done")


def check_run_dir(run_dir: Path) -> dict:
    """Every file in the run dir loads (state checkpoint, JSON log) or is a temp file resume ignores.

    Returns {"files": n, "temp_files": n, "problems": [...]}; a problem is a non-temp file that does not load.
    """
    from shiftkit.checkpoints import load_checkpoint, read_metadata
    from ._tiny import tiny_net

    problems, files, temps = [], 0, 0
    for p in sorted(run_dir.iterdir()) if run_dir.exists() else []:
        files += 1
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            temps += 1
            continue
        if p.name.startswith(".") and p.name.endswith(".lock"):  # a killed run's output lock: free once it died
            continue
        try:
            if p.suffix == ".safetensors":
                load_checkpoint(p, tiny_net(0))
                json.loads(read_metadata(p)["transfer_log"])
            else:
                json.loads(p.read_text())
        except Exception as e:  # noqa: BLE001  (any failure is what the check reports)
            problems.append(f"{p.name}: {type(e).__name__}: {e}")
    return {"files": files, "temp_files": temps, "problems": problems}


def _final(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()["records"]


def _kill_plan(rng: random.Random, phase: str, remaining: int, durations: dict[str, float]) -> tuple[str, int, float]:
    per_absorb = {"absorb": 1, "finetune": 1, "write": 2}[phase]  # two writes per absorb: state + log.json
    return phase, rng.randrange(max(1, remaining * per_absorb)), rng.uniform(0, durations[phase])


def _durations(phases: list[tuple[str, float]]) -> dict[str, float]:
    """Typical time from each phase's line to the next line: where a kill lands inside that phase."""
    gaps: dict[str, list[float]] = {p: [] for p in PHASES}
    for (p, t), (_, t2) in zip(phases, phases[1:]):
        if p in gaps:
            gaps[p].append(t2 - t)
    return {p: max(sum(g) / len(g), 0.005) if g else 0.05 for p, g in gaps.items()}


def _run_with_kills(zygote: Zygote, spec: dict, n_sources: int, *, rng: random.Random, durations: dict,
                    budget: int, first_phase: int) -> dict:
    """One run from an empty run dir: kill and resume up to `budget` times, then let it finish."""
    run_dir = Path(spec["run_dir"])
    shutil.rmtree(run_dir, ignore_errors=True)
    kills, by_phase, temps, problems, lost, done = 0, {p: 0 for p in PHASES}, 0, [], 0, 0
    while True:
        phase = PHASES[(first_phase + kills) % len(PHASES)]
        plan = _kill_plan(rng, phase, n_sources - done, durations) if kills < budget else None
        if not zygote.run_child(spec, kill_at=plan)["killed"]:
            return {"kills": kills, "by_phase": by_phase, "temp_files_seen": temps, "problems": problems, "lost": lost}
        kills += 1
        by_phase[phase] += 1
        state = check_run_dir(run_dir)
        temps = max(temps, state["temp_files"])
        problems += [f"{run_dir.name} kill {kills} ({phase}): {p}" for p in state["problems"]]
        now = _absorbed(run_dir) if not state["problems"] else 0
        lost += max(0, done - now)  # an absorb that was persisted must survive every later kill
        done = now


def crash_campaign(work: Path, *, kills: int, seed: int = 0, k: int = 5, methods: tuple[str, ...] = ("grasp",),
                   max_kills_per_run: int = 8, log=print, zygote: Zygote | None = None) -> dict:
    """SIGKILL transfer children at >= `kills` random moments across as many runs as needed.

    Each run starts from an empty run dir, is killed and resumed until it completes, then its final
    weights and log are compared bit for bit with the uninterrupted reference run of its method.
    Methods alternate run by run (grasp resumes from its state checkpoint; training-free methods
    such as task_arithmetic replay their absorbs).
    """
    from ._tiny import tiny_zoo

    work.mkdir(parents=True, exist_ok=True)
    base, sources = tiny_zoo(work / "zoo", k)
    own = zygote is None
    zygote, rng, runs, refs = zygote or Zygote(work), random.Random(seed), [], {}
    try:
        for m in methods:
            cfg = {**TRANSFER_CFG, **({"base": str(base)} if m in ("task_arithmetic", "ties", "opcm") else {})}
            spec = {"k": k, "method": m, "cfg": cfg, "sources": [str(s) for s in sources],
                    "run_dir": str(work / f"ref_{m}"), "final": str(work / f"ref_{m}.safetensors")}
            shutil.rmtree(spec["run_dir"], ignore_errors=True)
            r = zygote.run_child(spec)
            refs[m] = {"spec": spec, "durations": _durations(r["phases"]), "final": _final(Path(spec["final"])),
                       "seconds": round(r["seconds"], 2)}
        total = 0
        while total < kills and len(runs) < 4 * kills:
            m = methods[len(runs) % len(methods)]
            ref = refs[m]
            spec = {**ref["spec"], "run_dir": str(work / f"run{len(runs)}"), "final": str(work / f"final{len(runs)}.safetensors")}
            r = _run_with_kills(zygote, spec, len(sources), rng=rng, durations=ref["durations"],
                                budget=min(max_kills_per_run, kills - total), first_phase=total)
            state, records = _final(Path(spec["final"]))
            ref_state, ref_records = ref["final"]
            r.update(method=m, bitwise_equal=state.keys() == ref_state.keys() and all(
                torch.equal(state[n], ref_state[n]) for n in state), log_equal=records == ref_records)
            runs.append(r)
            total += r["kills"]
            log(f"crash run {len(runs)} ({m}): {r['kills']} kills survived, weights bitwise equal: "
                f"{r['bitwise_equal']}, log equal: {r['log_equal']}, partial files accepted: {len(r['problems'])}")
    finally:
        if own:
            zygote.close()
    by_phase = {p: sum(r["by_phase"][p] for r in runs) for p in PHASES}
    problems = [p for r in runs for p in r["problems"]]
    return {"methods": list(methods), "sources": len(sources), "kills": sum(r["kills"] for r in runs),
            "kills_by_phase": by_phase, "runs": len(runs),
            "all_bitwise_equal": all(r["bitwise_equal"] for r in runs), "all_logs_equal": all(r["log_equal"] for r in runs),
            "partial_files_accepted": len(problems), "absorbs_lost": sum(r["lost"] for r in runs),
            "reference_seconds": {m: ref["seconds"] for m, ref in refs.items()}, "problems": problems,
            "per_run": [{k: v for k, v in r.items() if k != "problems"} for r in runs]}


def _absorbed(run_dir: Path) -> int:
    """Sources the run dir's state says are done (0 when there is no state yet)."""
    from shiftkit.checkpoints import read_metadata

    state = run_dir / "state.safetensors"
    if not state.is_file():
        return 0
    return len(json.loads(read_metadata(state)["transfer_log"])["records"])
