"""Memory vs K (fresh process per point) and GRASP's absorb overhead.

Memory: K synthetic sources (the base plus small random task vectors, saved as safetensors) are
absorbed by GRASP, GRASP-taylor and fusion in a fresh Python process per (arch, method, K); the
child reports peak RSS (VmHWM) and anonymous memory (RssAnon) from /proc/self/status after the
last absorb, and its baseline after building the model (file pages of mapped checkpoints count in
RSS but are reclaimable, hence RssAnon beside it). Fine-tuning is off: memory of the merge itself.

Overhead: one GRASP absorb without fine-tuning ÷ (reading that checkpoint + two gradient passes).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from .. import models, transfer
from ..checkpoints import LazyCheckpoint, atomic_write_json, save_checkpoint
from ..data import ArrayDataset, Domain
from ..device import max_memory_allocated, place, provenance, reset_peak_memory, resolve_device
from ..transfer._grad import alignment_batches, target_gradients

__all__ = ["make_sources", "measure_point", "run_memory", "run_overhead"]

NO_TRAIN = {"initial_epochs": 0, "finetune_epochs": 0}


def _status() -> dict[str, int]:
    """VmHWM (peak RSS), VmRSS, RssAnon, RssFile in MiB, from /proc/self/status."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _target(arch: str, n: int = 32, seed: int = 0) -> Domain:
    g = torch.Generator().manual_seed(seed)
    shape = (3, 32, 32)
    x, y = torch.rand((n, *shape), generator=g), torch.randint(0, 10, (n,), generator=g)
    ds = ArrayDataset(x, y, [str(i) for i in range(10)])
    return Domain("synthetic", ds, ds.subset(torch.arange(8)), ds.subset(torch.arange(8)))


def make_sources(arch: str, k: int, folder: Path) -> list[Path]:
    """k sources = one base + independent small perturbations (files already present are kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{arch}_src{i:03d}.safetensors" for i in range(k)]
    if all(p.is_file() for p in paths):
        return paths
    torch.manual_seed(0)
    base = models.create(arch, num_classes=10, in_chans=3)
    state = base.state_dict()
    paths = []
    for i in range(k):
        path = folder / f"{arch}_src{i:03d}.safetensors"
        if not path.is_file():
            g = torch.Generator().manual_seed(i)
            src = {n: (t + 0.01 * t.std().nan_to_num(0) * torch.randn(t.shape, generator=g) if t.is_floating_point() else t)
                   for n, t in state.items()}
            save_checkpoint(path, src, metadata={"arch": arch, "num_classes": "10", "config": json.dumps(base.shiftkit_config)})
        paths.append(path)
    return paths


def measure_point(arch: str, method: str, k: int, folder: str, device: str = "cpu") -> dict:
    """Runs in the child process: absorb k sources, report memory (on a GPU also torch's peak allocation there,
    counted from after the model is placed: the merge's own memory, sources streamed to the device)."""
    torch.set_num_threads(1)
    paths = make_sources(arch, k, Path(folder))
    dev = resolve_device(device)
    torch.manual_seed(0)
    net = place(models.create(arch, num_classes=10, in_chans=3), dev)
    start = _status()
    reset_peak_memory(dev)
    gpu_start = max_memory_allocated(dev)
    merger = transfer.create(method, net, _target(arch), batch_size=8, **NO_TRAIN)  # small batch: CPU time
    t0 = time.perf_counter()
    for p in paths:
        merger.absorb(p)
    merger.finish()  # soup / ranked do their merging here (no epochs: the budget is 0)
    end = _status()
    row = {"arch": arch, "method": method, "k": k, "start": start, "end": end, "seconds": time.perf_counter() - t0,
           "params": sum(p.numel() for p in net.parameters())}
    if dev.type == "cuda":
        row.update(provenance(dev), gpu_start_mib=gpu_start / 2**20, gpu_peak_mib=max_memory_allocated(dev) / 2**20)
    return row


def run_memory(points: list[tuple[str, str, int]], folder: Path, out: Path, *, command: str, log=print,
               device: str = "cpu") -> list[dict]:
    """points: (arch, method, K) in priority order; one fresh process each. `out` is rewritten after every point
    and points already in it are not re-run, so an interrupted run keeps what it measured."""
    old = json.loads(out.read_text()) if out.is_file() else {}
    rows = old.get("rows", [])
    done = {(r["arch"], r["method"], r["k"]) for r in rows}
    for arch, method, k in points:
        if (arch, method, k) in done:
            continue
        make_sources(arch, max(kk for a, _, kk in points if a == arch), folder / arch)  # once, outside the measurement
        code = ("import json,sys; from shiftkit.bench.transfer_memory import measure_point; "
                f"print(json.dumps(measure_point({arch!r}, {method!r}, {k}, {str(folder / arch)!r}, {device!r})))")
        res = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        done.add((arch, method, k))
        atomic_write_json(out, {"command": command, "rows": rows})
        e = rows[-1]["end"]
        gpu = f", GPU peak {rows[-1]['gpu_peak_mib']:.0f} MiB" if "gpu_peak_mib" in rows[-1] else ""
        log(f"{arch} {method} K={k}: peak RSS {e['VmHWM']:.0f} MiB, RssAnon {e['RssAnon']:.0f} MiB{gpu}")
    return rows


def render_gpu_section(rows: list[dict], command: str) -> str:
    """Peak GPU memory (torch.cuda.max_memory_allocated) vs K per (arch, method), and K_max / K_min."""
    from ..render import markdown_table

    groups: dict[tuple[str, str], dict[int, float]] = {}
    for r in rows:
        if "gpu_peak_mib" in r:
            groups.setdefault((r["arch"], r["method"]), {})[r["k"]] = r["gpu_peak_mib"]
    ks = sorted({k for g in groups.values() for k in g})
    table = markdown_table(["arch", "method", *[f"K={k} MiB" for k in ks], "K_max / K_min"],
                           [(a, m, *[f"{g[k]:.1f}" if k in g else "–" for k in ks], f"{g[max(g)] / g[min(g)]:.3f}")
                            for (a, m), g in groups.items()])
    device = next((f"{r['device_name']}" for r in rows if r.get("device_name")), "GPU")
    return (f"## GPU memory vs K ({device})\n\n`{command}`\n\n{table}\n\nPeak bytes torch allocated on the GPU during "
            "the K absorbs (no fine-tuning), from after the model was placed, one fresh process per point. GRASP and "
            "the O(1) methods stream each source to the device one at a time (target goal: K_max / K_min <= 1.05); "
            "fusion keeps all K resident and grows with K.")


def run_overhead(arch: str, folder: Path, *, repeats: int = 3) -> dict:
    """Median seconds of one GRASP absorb (no fine-tuning) vs reading the checkpoint + two gradient passes."""
    torch.set_num_threads(1)
    paths = make_sources(arch, 2, folder)
    target = _target(arch)
    net = models.create(arch, num_classes=10, in_chans=3)
    t = {"absorb": [], "read": [], "grad": [], "absorb_taylor": []}
    for r in range(repeats):
        for method, key in (("grasp", "absorb"), ("grasp_taylor", "absorb_taylor")):
            merger = transfer.create(method, net, target, batch_size=32, **NO_TRAIN)
            merger.absorb(paths[0])
            t0 = time.perf_counter()
            merger.absorb(paths[1])
            t[key].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with LazyCheckpoint(paths[1]) as ckpt:
            _ = {k: ckpt.get(k) for k in ckpt.keys()}
        t["read"].append(time.perf_counter() - t0)
        batches = alignment_batches(target.train, 1, 32, seed=r)
        t0 = time.perf_counter()
        target_gradients(net, batches)
        target_gradients(net, batches)
        t["grad"].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in t.items()}
    ref = med["read"] + med["grad"]
    return {"arch": arch, "median_s": med, "ratio": med["absorb"] / ref, "ratio_taylor": med["absorb_taylor"] / ref,
            "repeats": repeats, "threads": torch.get_num_threads()}
