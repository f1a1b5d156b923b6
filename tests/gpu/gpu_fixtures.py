"""Tiny data and models for the GPU checks."""
from __future__ import annotations

import torch

from shiftkit import models
from shiftkit.data import ArrayDataset, Domain, split_domain

CLASSES = ["a", "b", "c", "d"]


def make_domain(name: str, shift: float, *, n: int = 96, seed: int = 0) -> Domain:
    """4 classes of 12x12 prototypes plus noise, brightened by `shift` (as tests/transfer's fixtures)."""
    protos = torch.rand((4, 1, 12, 12), generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    x = protos[labels] + 0.25 * torch.randn((n, 1, 12, 12), generator=g) + shift
    return split_domain(name, ArrayDataset(x.clamp(0, 1), labels, CLASSES), fractions=(0.5, 0.25, 0.25), seed=seed)


def tiny_model(**kw) -> torch.nn.Module:
    return models.create("small_cnn", num_classes=4, in_chans=1, width=4, **kw)
