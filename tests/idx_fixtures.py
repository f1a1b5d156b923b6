"""Tiny datasets written in the real IDX format (shared by tests; a unique module name, not conftest)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> Path:
    """Write an IDX file exactly as MNIST / Fashion-MNIST ship them (big-endian dims, 0x08 = uint8)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(data)
    return path


def class_images(n: int, *, num_classes: int = 10, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Learnable synthetic images: a fixed random template per class plus noise, uint8."""
    rng = np.random.default_rng(seed)
    templates = rng.random((num_classes, size, size)) > 0.6
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    images = templates[labels] * 200 + rng.integers(0, 55, (n, size, size))
    return images.astype(np.uint8), labels.astype(np.uint8)
