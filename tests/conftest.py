"""Shared fixtures: tiny datasets written in the real on-disk formats, tiny models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from idx_fixtures import class_images, write_idx
from shiftkit.data import ArrayDataset

torch.set_num_threads(1)


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
