"""Tiny synthetic domains for the transfer and GPU tests (a unique module name, not conftest; tests/ is on the path)."""
from __future__ import annotations

import torch

from shiftkit.data import ArrayDataset, Domain, split_domain

CLASSES = ["a", "b", "c", "d"]


def make_domain(name: str, shift: float, *, n: int = 96, seed: int = 0) -> Domain:
    """4 classes of 12x12 prototypes plus noise; `shift` brightens and flips part of the image."""
    protos = torch.rand((4, 1, 12, 12), generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    x = protos[labels] + 0.25 * torch.randn((n, 1, 12, 12), generator=g) + shift
    x[..., :6] = x[..., :6].flip(-2) if shift > 0.15 else x[..., :6]
    return split_domain(name, ArrayDataset(x.clamp(0, 1), labels, CLASSES), fractions=(0.5, 0.25, 0.25), seed=seed)

# one fine-tuning epoch per stage keeps every transfer test fast
FAST = {"initial_epochs": 1, "finetune_epochs": 1, "batch_size": 16}
