"""Tiny models and synthetic data for the prune tests (a uniquely named module: importable from any test)."""
from __future__ import annotations

import torch
from torch import nn

from shiftkit.data import ArrayDataset

torch.set_num_threads(1)


def make_data(n: int = 120, *, classes: int = 4, shape=(1, 12, 12), seed: int = 0) -> ArrayDataset:
    """Class-dependent blobs + noise: learnable in one epoch, every class present."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    protos = torch.rand(classes, *shape, generator=g)
    x = (0.6 * protos[labels] + 0.4 * torch.rand(n, *shape, generator=g)).clamp(0, 1)
    return ArrayDataset(x, labels, [f"c{i}" for i in range(classes)])


class MixedNet(nn.Module):
    """3x3 and 1x1 convs, a residual add, a grouped conv and a Linear: every shape the masks must handle."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.short = nn.Conv2d(8, 8, 1)
        self.group = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x) + self.short(x))
        x = torch.relu(self.group(x))
        return self.fc(x.mean((2, 3)))
