"""Fuzzed dataset inputs: a seeded byte-level mutator, seed corpora in the real on-disk formats,
and a capped worker process that loads each mutated input.

The contract checked: every input either loads or raises a ShiftkitError subclass; nothing else
escapes, nothing hangs (per-input timeout), nothing allocates past a cap (RLIMIT_AS in the worker).
"""
from __future__ import annotations

import gzip
import json
import pickle
import random
import shutil
import select
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ._proc import PACKAGE, child_env

__all__ = ["mutate", "FORMATS", "make_case", "run_fuzz"]

# Values that break size arithmetic: zero, one, sign bits, all ones, just past small sizes.
_INTERESTING = (0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutate(data: bytes, rng: random.Random, *, header: int = 32) -> bytes:
    """1-3 random edits: bit flips, byte sets, truncation, insertion, deletion, chunk copies,
    and 1/2/4-byte field edits (both endians) inside the first `header` bytes."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(("flip", "set", "truncate", "insert", "delete", "copy", "field", "field"))
        n = len(b)
        if op == "flip" and n:
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == "set" and n:
            b[rng.randrange(n)] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op == "truncate":
            del b[rng.randint(0, n):]
        elif op == "insert":
            at = rng.randint(0, n)
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 4, 16, 256))))
        elif op == "delete" and n:
            at = rng.randrange(n)
            del b[at:at + rng.choice((1, 4, 16, 256))]
        elif op == "copy" and n:
            at, to = rng.randrange(n), rng.randint(0, n)
            b[to:to] = b[at:at + rng.choice((4, 64, 512))]
        elif op == "field" and n >= 4:
            width = rng.choice((1, 2, 4))
            at = rng.randrange(max(1, min(header, n) - width + 1))
            value = rng.choice((*_INTERESTING, n, n - 1, n + 1, rng.getrandbits(32))) % (1 << 8 * width)
            b[at:at + width] = value.to_bytes(width, rng.choice(("big", "little")))
    return bytes(b)


# ---------------------------------------------------------------- seed corpora (real layouts)

def _idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _idx_seed(root: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), (np.arange(20) % 10).astype(np.uint8)
    for prefix in ("train", "t10k"):
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(x), mtime=0))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(y), mtime=0))


def _cifar_seed(root: Path, protocol: int) -> None:
    rng = np.random.default_rng(1)
    names = [f"class{i}".encode() for i in range(10)]
    dump = lambda name, obj: (root / name).write_bytes(pickle.dumps(obj, protocol=protocol))  # noqa: E731
    dump("batches.meta", {b"num_cases_per_batch": 2, b"label_names": names, b"num_vis": 3072})
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        dump(name, {b"batch_label": b"batch", b"labels": [i % 10, (i + 3) % 10],
                    b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"filenames": [b"a.png", b"b.png"]})


_IMAGE_FORMATS = (("png", "PNG"), ("jpg", "JPEG"), ("bmp", "BMP"), ("gif", "GIF"), ("tif", "TIFF"),
                  ("webp", "WEBP"), ("ppm", "PPM"))


def _folder_seed(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    for d, domain in enumerate(("2001", "2002")):
        for c, cls in enumerate(("cat", "dog")):
            for i, (ext, fmt) in enumerate(_IMAGE_FORMATS):
                arr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                path = root / domain / cls / f"{d}{c}{i}.{ext}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(path, format=fmt)
    for name, fmt in (("dds_named.png", "DDS"), ("ico_named.jpg", "ICO"), ("tga_named.bmp", "TGA")):
        # PIL sniffs the format from the bytes: any decoder can sit behind a common extension
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "2001" / "cat" / name, format=fmt)


def _tiny_imagenet_seed(root: Path) -> None:
    from PIL import Image

    rng, folder = np.random.default_rng(3), root / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("n01443537\tgoldfish\nn01629819\tsalamander\n")
    ann = []
    for c, w in enumerate(wnids):
        (folder / "train" / w / "images").mkdir(parents=True)
        for i in range(3):
            img = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
            img.save(folder / "train" / w / "images" / f"{w}_{i}.JPEG", format="JPEG")
            img.save(folder / "val" / "images" / f"val_{c}{i}.JPEG", format="JPEG")
            ann.append(f"val_{c}{i}.JPEG\t{w}\t0\t0\t15\t15")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")


def _yearbook_seed(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(4)
    for g in ("F", "M"):
        (root / g).mkdir(parents=True)
        for i, year in enumerate((1925, 1941, 1955, 1968, 1975, 1987, 1995, 2008)):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                root / g / f"{year}_Ohio_Cleveland_Central_{i}-1.png")


def _mutate_tree(root: Path, rng: random.Random) -> None:
    """Any file of the tree: corrupt its bytes (text lists and images alike), empty it, delete it or rename it."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    target = rng.choice(files)
    how = rng.choice(("bytes", "bytes", "bytes", "zero", "delete", "rename"))
    if how == "bytes":
        target.write_bytes(mutate(target.read_bytes(), rng, header=64))
    elif how == "zero":
        target.write_bytes(b"")
    elif how == "delete":
        target.unlink()
    else:
        target.rename(target.with_name(rng.choice(("0000_x.png", "abcd.png", "9999_y.png", ".hidden.png", "x.JPEG"))))


# ---------------------------------------------------------------- one fuzz case per format

def _mutate_idx(root: Path, rng: random.Random) -> None:
    name = rng.choice(("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"))
    path = root / name
    raw = path.read_bytes()
    how = rng.choice(("gz", "payload", "plain"))
    if how == "gz":  # mutate the compressed stream itself
        path.write_bytes(mutate(raw, rng, header=24))
    else:  # mutate the IDX bytes so header edits reach the parser
        new = mutate(gzip.decompress(raw), rng, header=20)
        if how == "payload":
            path.write_bytes(gzip.compress(new, mtime=0))
        else:
            path.unlink()
            (root / name[:-3]).write_bytes(new)


def _mutate_cifar(root: Path, rng: random.Random) -> None:
    path = root / rng.choice(("batches.meta", "data_batch_1", "data_batch_3", "data_batch_5"))
    path.write_bytes(mutate(path.read_bytes(), rng, header=64))


def _mutate_folder(root: Path, rng: random.Random) -> None:
    images = sorted(p for p in root.rglob("*") if p.is_file())
    how = rng.choice(("bytes", "bytes", "bytes", "bytes", "zero", "empty_class", "not_image", "dir_as_image"))
    target = rng.choice(images)
    if how == "bytes":  # corrupt one image (the format's header is where decoders trust sizes)
        target.write_bytes(mutate(target.read_bytes(), rng, header=64))
    elif how == "zero":
        target.write_bytes(b"")
    elif how == "empty_class":
        for p in target.parent.iterdir():
            p.unlink()
    elif how == "not_image":
        target.write_bytes(rng.choice((b"hello", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"\xff\xd8\xff", b"BM")))
    else:
        target.unlink()
        target.mkdir()


def _load_idx(root: Path) -> None:
    from shiftkit.data import load_fashion_mnist

    load_fashion_mnist(root, train=True)


def _load_cifar(root: Path) -> None:
    from shiftkit.data import load_cifar

    load_cifar(root, train=True)


def _load_folder(root: Path) -> None:
    from shiftkit.data import load_image_folder

    load_image_folder(root, size=8)


def _load_tiny_imagenet(root: Path) -> None:
    from shiftkit.data import load_tiny_imagenet

    load_tiny_imagenet(root, split="train", size=8)
    load_tiny_imagenet(root, split="val", size=8)


def _load_yearbook(root: Path) -> None:
    from shiftkit.data import load_yearbook

    load_yearbook(root, task="grasp", size=8)
    load_yearbook(root, task="gender", size=8)


# name -> (seed writer, mutator, loader)
FORMATS = {
    "idx": (_idx_seed, _mutate_idx, _load_idx),
    "cifar_p2": (lambda r: _cifar_seed(r, 2), _mutate_cifar, _load_cifar),
    "cifar_p5": (lambda r: _cifar_seed(r, 5), _mutate_cifar, _load_cifar),
    "folder": (_folder_seed, _mutate_folder, _load_folder),
    "tiny_imagenet": (_tiny_imagenet_seed, _mutate_tree, _load_tiny_imagenet),
    "yearbook": (_yearbook_seed, _mutate_tree, _load_yearbook),
}


def make_case(fmt: str, seed_dir: Path, case_dir: Path, seed: int) -> Path:
    """Copy the format's seed corpus to case_dir and mutate it with rng seeded by (fmt, seed)."""
    shutil.rmtree(case_dir, ignore_errors=True)
    shutil.copytree(seed_dir, case_dir)
    FORMATS[fmt][1](case_dir, random.Random(f"{fmt}:{seed}"))
    return case_dir


# ---------------------------------------------------------------- the capped worker

def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def serve(cap_bytes: int) -> None:
    """Worker loop: read `fmt<TAB>path` lines on stdin, answer one JSON line each on stdout.
    The address space is capped at its size after the imports plus cap_bytes."""
    import resource
    import warnings

    import torch

    from shiftkit.errors import ShiftkitError

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from shiftkit import data  # noqa: F401  (import everything before the cap is measured)

    limit = _vm_size() + cap_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    out = sys.stdout
    sys.stdout = sys.stderr  # loaders must not write into the answer channel
    print(json.dumps(["ready", ""]), file=out, flush=True)
    for line in sys.stdin:
        fmt, path = line.rstrip("\n").split("\t")
        try:
            FORMATS[fmt][2](Path(path))
            answer = ["loaded", ""]
        except ShiftkitError as e:
            answer = ["rejected", type(e).__name__]
        except BaseException as e:  # noqa: BLE001  (the thing under test: nothing else may escape)
            answer = ["escaped", f"{type(e).__name__}: {str(e)[:200]}"]
        print(json.dumps(answer), file=out, flush=True)


class _Worker:
    """One `serve` process; a hang or death is detected, reported and the worker replaced."""

    def __init__(self, cap_bytes: int) -> None:
        code = f"from {PACKAGE}._fuzz import serve; serve({cap_bytes})"
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        if self._answer(120)[0] != "ready":
            raise RuntimeError("fuzz worker did not start")

    def _answer(self, timeout: float) -> list[str]:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            return ["hang", f"no answer within {timeout}s"]
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            return ["crash", f"worker died with exit code {self.proc.returncode}"]
        return json.loads(line)

    def run(self, fmt: str, path: Path, timeout: float) -> list[str]:
        self.proc.stdin.write(f"{fmt}\t{path}\n")
        self.proc.stdin.flush()
        return self._answer(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive():
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_fuzz(work: Path, *, per_format: int, seed: int = 0, timeout: float = 20.0,
             cap_mib: int = 1024) -> dict:
    """Mutate and load `per_format` inputs of every format; returns counts and every failure.

    A failure is an escaped non-shiftkit exception, a hang past `timeout` or a dead worker
    (which is how passing the memory cap of `cap_mib` shows up when it is not a MemoryError).
    """
    work.mkdir(parents=True, exist_ok=True)
    worker, counts, failures = _Worker(cap_mib << 20), {}, []
    try:
        for fmt, (write_seed, _, _) in FORMATS.items():
            seed_dir = work / f"seed_{fmt}"
            shutil.rmtree(seed_dir, ignore_errors=True)
            seed_dir.mkdir()
            write_seed(seed_dir)
            tally: Counter = Counter()
            for i in range(per_format):
                case = make_case(fmt, seed_dir, work / "case", seed * 1_000_003 + i)
                outcome, detail = worker.run(fmt, case, timeout)
                tally[outcome] += 1
                if outcome in ("escaped", "hang", "crash"):
                    failures.append({"format": fmt, "seed": seed * 1_000_003 + i, "outcome": outcome, "detail": detail})
                    if not worker.alive():
                        worker = _Worker(cap_mib << 20)
            counts[fmt] = dict(tally)
    finally:
        worker.close()
        shutil.rmtree(work / "case", ignore_errors=True)
    return {"inputs": sum(sum(c.values()) for c in counts.values()), "per_format": counts,
            "failures": failures, "timeout_s": timeout, "memory_cap_mib": cap_mib}
