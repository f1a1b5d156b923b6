"""IDX files (`*-ubyte[.gz]`), the format of MNIST and Fashion-MNIST.

Reference: http://yann.lecun.com/exdb/mnist/ (file format section).
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .._files import open_regular
from ..errors import DataError
from ._pixels import to_uint8
from .base import ArrayDataset, data_root

__all__ = ["read_idx", "load_fashion_mnist", "FASHION_CLASSES"]

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_exact(f, n: int) -> bytes:
    """Up to n bytes, in chunks: memory never exceeds what the file really holds (gzip bombs, lying headers)."""
    chunks, left = [], n
    while left > 0:
        chunk = f.read(min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not); the magic number and sizes are checked before the data is read."""
    path = Path(path)
    try:
        with open_regular(path, DataError) as raw_f, (gzip.GzipFile(fileobj=raw_f) if path.suffix == ".gz" else raw_f) as f:
            raw = _read_exact(f, 4)
            if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES or raw[3] == 0:
                raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
            ndim = raw[3]
            header = 4 + 4 * ndim
            raw += _read_exact(f, header - 4)
            if len(raw) < header:
                raise DataError(f"{path}: truncated header")
            dims = struct.unpack(f">{ndim}I", raw[4:header])
            dtype = np.dtype(_DTYPES[raw[2]])
            expected = int(np.prod(dims, dtype=object)) * dtype.itemsize  # object: no int64 overflow
            data = _read_exact(f, expected + 1)  # one byte past the claim reveals trailing data
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: a corrupt deflate stream inside a valid gzip header
        raise DataError(f"{path}: cannot read ({e})") from e
    if len(data) != expected:
        raise DataError(f"{path}: holds {len(data)}{'+' if len(data) > expected else ''} data bytes, "
                        f"header {dims} needs {expected} (truncated?)")
    return np.frombuffer(data, dtype=dtype).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).exists():
            return root / name
    raise DataError(f"{root}: no {stem}[.gz] found")


def load_fashion_mnist(root: str | os.PathLike | None = None, *, train: bool = True) -> ArrayDataset:
    """Fashion-MNIST (or MNIST: same layout) from IDX files; default: Debian's dataset-fashion-mnist."""
    root = data_root(root)
    prefix = "train" if train else "t10k"
    img_path, lbl_path = _find(root, f"{prefix}-images-idx3-ubyte"), _find(root, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3:
        raise DataError(f"{img_path}: expected 3 dims (N, H, W), got {images.ndim}")
    if labels.ndim != 1:
        raise DataError(f"{lbl_path}: expected 1 dim (N,), got {labels.ndim}")
    if len(images) != len(labels):
        raise DataError(f"{img_path} has {len(images)} images but {lbl_path} has {len(labels)} labels")
    n_cls = len(FASHION_CLASSES)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_cls):
        raise DataError(f"{lbl_path}: labels outside [0, {n_cls})")
    # np.require copies a read-only uint8 payload (torch warns on non-writable arrays, and the CLI turns warnings into lines)
    x = torch.from_numpy(np.require(to_uint8(images, str(img_path)), requirements="W")).unsqueeze(1)  # (N, 1, 28, 28)
    return ArrayDataset(x, torch.from_numpy(labels.astype(np.int64)), list(FASHION_CLASSES), {"source": str(img_path)})
