"""Shared fixtures: tiny datasets written in the real on-disk formats, tiny models."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from shiftkit.data import ArrayDataset

torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory) -> Path:
    """A tiny Fashion-MNIST in IDX format: 640 train and 160 test images."""
    root = tmp_path_factory.mktemp("fmnist")
    for prefix, n, seed in (("train", 640, 0), ("t10k", 160, 1)):
        x, y = class_images(n, seed=seed)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", y)
    return root


@pytest.fixture()
def tiny_dataset() -> ArrayDataset:
    x, y = class_images(200, num_classes=4, size=12, seed=3)
    return ArrayDataset(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64)), ["a", "b", "c", "d"])
