"""Folders larger than memory: images decoded once into a uint8 cache file, memory-mapped afterwards.

`MappedImages` stands in for the (N, C, H, W) uint8 tensor of an ArrayDataset: indexing it (an int, a slice,
an index tensor) reads those rows from the page cache into a real tensor, `subset` and `torch.cat` only
compose row indices, so splits, few-shot pools and k-fold parts never copy pixels. The pages are file-backed,
so they count against the page cache, not the process's anonymous memory.

A cache file is keyed by the list of files, their sizes and mtimes, the size and the channels: a folder
that changed gets a new key and is decoded again (older caches of the same folder are deleted), never
silently reused. A build is written to a temporary file and renamed only when every image decoded.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError

__all__ = ["MappedImages", "cache_dir", "cached_images", "CACHE_ENV"]

CACHE_ENV = "SHIFTKIT_CACHE"
_VERSION = 1  # bump when the decoding changes: old caches then miss instead of serving other pixels


def cache_dir(folder: str | os.PathLike | None = None) -> Path:
    """Where caches go: the argument, else $SHIFTKIT_CACHE, else ~/.cache/shiftkit/images."""
    if folder:
        return Path(folder)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path.home() / ".cache" / "shiftkit" / "images"


class MappedImages:
    """uint8 images (N, C, H, W) held in memory-mapped cache files, selected by a row index.

    Quacks like the image tensor where the library uses one: len, shape, ndim, dtype, indexing (returns
    tensors), .float(), torch.cat (composes indices when every part is mapped, else reads them).
    """

    def __init__(self, maps: Sequence[np.memmap], which: np.ndarray, rows: np.ndarray) -> None:
        self._maps = tuple(maps)
        self._which = which.astype(np.int32)  # (N,) which map each row lives in
        self._rows = rows.astype(np.int64)    # (N,) row inside that map

    @classmethod
    def open(cls, path: str | os.PathLike, shape: tuple[int, ...]) -> "MappedImages":
        mm = np.memmap(path, dtype=np.uint8, mode="r", shape=tuple(shape))
        return cls([mm], np.zeros(shape[0], np.int32), np.arange(shape[0]))

    def __reduce__(self):  # pickles (deepcopy, worker processes) by file name, never by pixels
        return _reopen, ([(m.filename, m.shape) for m in self._maps], self._which, self._rows)

    # ---- the tensor-like surface -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self._rows), *self._maps[0].shape[1:]))

    ndim = 4
    dtype = torch.uint8
    device = torch.device("cpu")

    def __getitem__(self, key) -> Tensor:
        if isinstance(key, (int, np.integer)) or (isinstance(key, (Tensor, np.ndarray)) and key.ndim == 0):
            return self._read(self._positions(np.array([int(key)])))[0]
        return self._read(self._positions(key))

    @property
    def nbytes(self) -> int:
        return len(self._rows) * int(np.prod(self._maps[0].shape[1:]))

    def float(self) -> Tensor:
        return self[:].float()

    def to(self, device: torch.device | str, chunk: int = 1024) -> Tensor:
        """All rows on `device`, copied a chunk at a time (host memory stays bounded by one chunk)."""
        out = torch.empty(tuple(self.shape), dtype=torch.uint8, device=device)  # (N, C, H, W)
        for i in range(0, len(self), chunk):
            out[i:i + chunk] = self[i:i + chunk].to(device)
        return out

    def subset(self, key) -> "MappedImages":
        """The selected rows, still mapped (no pixels read)."""
        pos = self._positions(key)
        return MappedImages(self._maps, self._which[pos], self._rows[pos])

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        if func is torch.cat and dim == 0 and all(isinstance(t, MappedImages) for t in args[0]):
            return cls.concat(list(args[0]))
        return func(*_materialize(args), **_materialize(kwargs))  # anything else: on the pixels themselves

    @staticmethod
    def concat(parts: list["MappedImages"]) -> "MappedImages":
        maps: list[np.memmap] = []
        which, rows = [], []
        for p in parts:
            ids = [next((j for j, m in enumerate(maps) if m is mm), None) for mm in p._maps]
            for j, mm in enumerate(p._maps):
                if ids[j] is None:
                    ids[j] = len(maps)
                    maps.append(mm)
            which.append(np.asarray(ids, np.int32)[p._which])
            rows.append(p._rows)
        if len({m.shape[1:] for m in maps}) > 1:
            raise DataError(f"cannot concatenate images of shapes {sorted({m.shape[1:] for m in maps})}")
        return MappedImages(maps, np.concatenate(which), np.concatenate(rows))

    # ---- internals ---------------------------------------------------------------------------------
    def _positions(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return np.arange(len(self._rows))[key]
        key = key.cpu().numpy() if isinstance(key, Tensor) else np.asarray(key)  # an index may live on a device
        return np.flatnonzero(key) if key.dtype == bool else key.astype(np.int64).reshape(-1)

    def _read(self, pos: np.ndarray) -> Tensor:
        out = np.empty((len(pos), *self._maps[0].shape[1:]), dtype=np.uint8)  # (B, C, H, W)
        which, rows = self._which[pos], self._rows[pos]
        for j, mm in enumerate(self._maps):
            sel = np.flatnonzero(which == j) if len(self._maps) > 1 else slice(None)
            r = rows[sel]
            order = np.argsort(r, kind="stable")  # ascending file offsets read faster
            out_sel = np.arange(len(pos))[sel][order]
            out[out_sel] = mm[r[order]]
        return torch.from_numpy(out)


def _reopen(maps: list[tuple[str, tuple]], which: np.ndarray, rows: np.ndarray) -> MappedImages:
    return MappedImages([np.memmap(f, dtype=np.uint8, mode="r", shape=s) for f, s in maps], which, rows)


def _materialize(obj):
    if isinstance(obj, MappedImages):
        return obj[:]
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    return obj


def _keys(paths: Sequence[Path], size: int | None, channels: int) -> tuple[str, str]:
    """(family, fingerprint): family = the folder + size + channels; fingerprint adds every file's name,
    byte size and mtime, so any change to the folder gives a new cache."""
    folder = os.path.commonpath([str(Path(p).resolve().parent) for p in paths])
    family = hashlib.sha256(json.dumps([_VERSION, folder, size, channels]).encode()).hexdigest()[:16]
    h = hashlib.sha256(family.encode())
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as e:
            raise DataError(f"cannot read image {p}: {type(e).__name__}: {e}") from None
        h.update(f"{Path(p).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return family, h.hexdigest()[:24]


def cached_images(paths: Sequence[Path], first: np.ndarray, fill, *, size: int | None, channels: int,
                  folder: str | os.PathLike | None = None) -> MappedImages:
    """The decoded images of `paths` from their cache file, built first when missing or stale.

    Args:
        first: the decoded first image (its shape is every image's shape).
        fill: fill(out) decodes every image into the writable (N, C, H, W) array `out` (raises DataError).
        folder: the cache folder (see `cache_dir`).
    """
    root = cache_dir(folder)
    family, key = _keys(paths, size, channels)
    shape = (len(paths), *first.shape)
    data, meta = root / f"{family}-{key}.u8", root / f"{family}-{key}.json"
    if data.is_file() and meta.is_file() and data.stat().st_size == int(np.prod(shape)):
        return MappedImages.open(data, shape)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"image cache folder {root}: cannot create it ({e}); set {CACHE_ENV} or cache_dir") from None
    tmp = root / f"{family}-{key}.u8.tmp-{os.getpid()}"
    try:
        out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
        out[0] = first
        fill(out)  # a bad image raises its own DataError naming the file
        out.flush()
        del out
        os.replace(tmp, data)
        meta.write_text(json.dumps({"shape": list(shape), "files": len(paths), "size": size, "channels": channels}))
    except OSError as e:  # disk full, read-only folder: the cache's problem, said in one line
        data.unlink(missing_ok=True)
        raise DataError(f"image cache {data}: cannot write it ({type(e).__name__}: {e}); free space or set "
                        f"{CACHE_ENV} / cache_dir") from None
    finally:
        tmp.unlink(missing_ok=True)  # a failed build leaves nothing that could be mistaken for a cache
    for old in root.glob(f"{family}-*"):  # the same folder before it changed: never read again
        if not old.name.startswith(f"{family}-{key}.") and ".tmp-" not in old.name:
            old.unlink(missing_ok=True)
    return MappedImages.open(data, shape)
