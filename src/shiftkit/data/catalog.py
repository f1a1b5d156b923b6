"""Named datasets as lists of Domains: the one path the CLI and benchmarks load data through."""
from __future__ import annotations

import torch

from .._registry import Registry
from .base import ArrayDataset
from .domains import Domain, split_domain
from .drift import drift_fmnist
from .idx import load_fashion_mnist

__all__ = ["DATASETS", "load_domains", "register_dataset"]

DATASETS: Registry[list[Domain]] = Registry("dataset")
register_dataset = DATASETS.register


@register_dataset("driftfmnist")
def _driftfmnist(root=None, *, seed: int = 0, bins: int = 8) -> list[Domain]:
    return drift_fmnist(root, bins=bins, seed=seed)


@register_dataset("driftfmnist_complementary")
def _driftfmnist_complementary(root=None, *, seed: int = 0) -> list[Domain]:
    return drift_fmnist(root, kind="complementary", seed=seed)


@register_dataset("fashion_mnist")
def _fashion_mnist(root=None, *, seed: int = 0) -> list[Domain]:
    """One clean domain: the official 60k train (split 90/10 into train/val) and the full 10k test set."""
    train, test = load_fashion_mnist(root, train=True), load_fashion_mnist(root, train=False)
    d = split_domain("clean", train, fractions=(0.9, 0.1, 0.0), seed=42)
    return [Domain("clean", d.train, d.val, ArrayDataset(test.images, test.labels, test.classes))]


def load_domains(name: str, root=None, **kwargs) -> list[Domain]:
    """Load a named dataset as its list of domains (see `DATASETS.names()`)."""
    return DATASETS.create(name, root, **kwargs)


def describe(domains: list[Domain]) -> list[dict]:
    """Per-domain sizes and class balance (for `shiftkit data`)."""
    rows = []
    for d in domains:
        counts = torch.bincount(d.train.labels, minlength=len(d.classes))
        rows.append({"domain": d.name, "train": len(d.train), "val": len(d.val), "test": len(d.test),
                     "shape": list(d.train.shape), "min_class_train": int(counts.min()), "max_class_train": int(counts.max()),
                     "mean_pixel": float(ArrayDataset.to_float(d.test.images[:2000]).mean())})
    return rows
