"""Is data or compute the bottleneck? Loader images/s (in memory, cached on disk, decoded on the fly) next to
the training step's images/s, at 32, 64 and 224 px; and the peak anonymous memory of loading a folder.

Images are synthetic 256x256 JPEGs (photo-like sizes: every point resizes, as a real folder needs). Memory
is measured in a fresh process per point: the peak of RssAnon (/proc/self/status, sampled every 5 ms)
while loading a folder and reading every image once, minus the same for a 40-image folder (the empty run).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import models
from ..data import ArrayDataset
from ..data._images import list_images, load_images, read_image
from ..train import iterate_batches

__all__ = ["run", "write_folder", "memory_point", "render_section"]

SIZES = (32, 64, 224)
TRAIN_MODELS = ("resnet20", "resnet50")


def write_folder(root: Path, n: int, *, side: int = 256, seed: int = 0) -> list[Path]:
    """n JPEGs in root/<domain>/<class>/ (2 domains x 2 classes), smooth random content; returns the files."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)  # upsampled: JPEG-friendly, like photos
    for i in range(n):
        folder = root / f"d{i % 2}" / f"c{(i // 2) % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(base[i]).resize((side, side), Image.Resampling.BILINEAR).save(folder / f"{i}.jpg", quality=90)
    return sorted(p for d in sorted(root.iterdir()) for c in sorted(d.iterdir()) for p in list_images(c))


def _pass(ds: ArrayDataset, batch_size: int, repeats: int = 3, min_seconds: float = 0.3) -> float:
    """Images/s of shuffled passes of the training batch path (uint8 -> float batches): best of `repeats`
    timings, each over as many passes as fill `min_seconds` (one pass of a few hundred small images is
    too short to time alone)."""
    best = 0.0
    for r in range(repeats):
        n, t0 = 0, time.perf_counter()
        while n == 0 or time.perf_counter() - t0 < min_seconds:
            for x, _ in iterate_batches(ds, batch_size, shuffle=True, generator=torch.Generator().manual_seed(r)):
                x.sum()
            n += len(ds)
        best = max(best, n / (time.perf_counter() - t0))
    return best


class _Files(torch.utils.data.Dataset):
    """Decode on the fly: one file per item, in DataLoader workers."""

    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return torch.from_numpy(np.ascontiguousarray(read_image(self.paths[i], size=self.size))).float().div_(255.0), i % 2


def _on_the_fly(paths: list[Path], size: int, batch_size: int, workers: int) -> float:
    loader = torch.utils.data.DataLoader(_Files(paths, size), batch_size=batch_size, shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    for x, _ in loader:
        x.sum()
    return len(paths) / (time.perf_counter() - t0)


def _loader_point(paths: list[Path], size: int, *, batch_size: int, workers: int, cache: Path) -> dict:
    labels = torch.arange(len(paths)) % 2
    t0 = time.perf_counter()
    mem = ArrayDataset(load_images(paths, size=size, storage="memory"), labels, ["a", "b"])
    decode = len(paths) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    cached = ArrayDataset(load_images(paths, size=size, storage="cache", cache_dir=cache), labels, ["a", "b"])
    build = len(paths) / (time.perf_counter() - t0)
    return {"size": size, "images": len(paths), "decode_into_memory": decode, "cache_build": build,
            "in_memory": _pass(mem, batch_size), "cached": _pass(cached, batch_size),
            "on_the_fly": _on_the_fly(paths, size, batch_size, workers)}


def _train_step(model: str, size: int, *, batch_size: int, steps: int) -> float:
    """Images/s of fit's step (channels_last forward, backward, AdamW) on random images: the fastest of `steps`
    timed steps after one warm-up (the least disturbed by other processes on a shared machine)."""
    torch.manual_seed(0)
    net = models.create(model, num_classes=10, in_chans=3).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.rand(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.arange(batch_size) % 10
    best = float("inf")
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            best = min(best, time.perf_counter() - t0)
    return batch_size / best


def memory_point(root: str, size: int, storage: str, cache: str) -> None:
    """In a fresh process: load the folder, read every image once; print the peak RssAnon in bytes as JSON."""
    from ..data import load_domains

    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with open("/proc/self/status") as f:
                kb = next(int(line.split()[1]) for line in f if line.startswith("RssAnon:"))
            peak[0] = max(peak[0], kb * 1024)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    n = 0
    for d in load_domains("image_folder", root, size=size, storage=storage, cache_dir=cache):
        for ds in (d.train, d.val, d.test):
            for x, _ in iterate_batches(ds, 128):
                n += len(x)
    time.sleep(0.02)
    stop.set()
    sampler.join()
    print(json.dumps({"peak_rss_anon": peak[0], "images": n}))


def _measure(root: Path, size: int, storage: str, cache: Path) -> dict:
    code = f"from shiftkit.bench.data_speed import memory_point; memory_point({str(root)!r}, {size}, {storage!r}, {str(cache)!r})"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _memory(n: int, work: Path) -> list[dict]:
    size = 224
    write_folder(work / "empty", 40)
    write_folder(work / "many", n)
    rows = []
    for storage in ("memory", "cache"):
        empty = _measure(work / "empty", size, storage, work / f"cache_{storage}_empty")
        full = _measure(work / "many", size, storage, work / f"cache_{storage}")
        decoded = full["images"] * 3 * size * size
        above = full["peak_rss_anon"] - empty["peak_rss_anon"]
        rows.append({"storage": storage, "images": full["images"], "size": size, "decoded_bytes": decoded,
                     "peak_rss_anon_above_empty": above, "fraction_of_decoded": above / decoded})
    return rows


def run(*, images: int = 300, memory_images: int = 2000, sizes: tuple[int, ...] = SIZES, batch_size: int = 64,
        workers: int = 2, work: str | None = None) -> dict:
    """Loader and training-step images/s per size, and the memory rows (`memory_images` 224-px JPEGs; 0: skip)."""
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmp = Path(tmp)
        paths = write_folder(tmp / "speed", images)
        loader = [_loader_point(paths, s, batch_size=batch_size, workers=workers, cache=tmp / "cache") for s in sizes]
        train = {m: {s: _train_step(m, s, batch_size=16 if s >= 224 else 32, steps=2 if s >= 224 else 5) for s in sizes}
                 for m in TRAIN_MODELS}
        memory = _memory(memory_images, tmp / "memory") if memory_images else []
    for row in loader:
        row["train_step"] = {m: train[m][row["size"]] for m in TRAIN_MODELS}
    return {"threads": torch.get_num_threads(), "workers": workers, "batch_size": batch_size, "loader": loader,
            "memory": memory}


def render_section(result: dict, command: str) -> str:
    """The RESULTS.md section, from the stored JSON alone."""
    from ..render import markdown_table

    def neck(loader_ips: float, r: dict) -> str:  # against the faster model: the one the loader must keep up with
        return "data" if loader_ips < max(r["train_step"].values()) else "compute"

    rows = [(r["size"], r["images"], f"{r['in_memory']:.0f}", f"{r['cached']:.0f}", f"{r['on_the_fly']:.0f}",
             f"{r['decode_into_memory']:.0f}", f"{r['cache_build']:.0f}",
             *(f"{r['train_step'][m]:.1f}" for m in TRAIN_MODELS),
             neck(min(r["cached"], r["in_memory"]), r), neck(r["on_the_fly"], r)) for r in result["loader"]]
    table = markdown_table(["px", "images", "in-memory img/s", "cached img/s", f"on-the-fly img/s ({result['workers']} workers)",
                            "decode into memory img/s", "cache build img/s", *(f"{m} train img/s" for m in TRAIN_MODELS),
                            "bottleneck, decoded", "bottleneck, on the fly"], rows)
    mem = markdown_table(["storage", "images (224 px)", "decoded MB", "peak RssAnon above empty run MB", "% of decoded"],
                         [(m["storage"], m["images"], f"{m['decoded_bytes'] / 2**20:.0f}",
                           f"{m['peak_rss_anon_above_empty'] / 2**20:.0f}", f"{100 * m['fraction_of_decoded']:.0f}%")
                          for m in result["memory"]])
    return (f"## Data loading: images/s and memory\n\n`{command}`\n\n{table}\n\nLoader columns: one shuffled pass of the "
            f"training batch path (batch {result['batch_size']}, {result['threads']} threads) over images already "
            "decoded (in memory, or the memory-mapped cache, warm), or decoding every file in DataLoader workers "
            "(what streaming without a cache costs every epoch). Train columns: fit's step (forward, backward, AdamW) "
            "on random batches (fastest step). Best-of timings on 2 cores shared with other work: read the ratios, not "
            "the last digit; the bottleneck columns compare a loader with the faster model's step. On a CPU the training "
            "step is the bottleneck at every size, even decoding on the fly; but decoding on the fly (the JPEG decode and "
            "resize, every epoch) is several times slower than reading decoded images, so a faster step meets it first. "
            "Hence the folder readers decode once: in memory below 1 GiB of decoded pixels, into the memory-mapped cache "
            f"above (`storage: auto`).\n\n{mem}\n\n"
            "Peak anonymous memory of loading a folder with `image_folder` and reading every split once, in a fresh "
            "process per row, above the same run on a 40-image folder.")
