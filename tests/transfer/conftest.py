"""Tiny synthetic domains and a tiny source zoo (small_cnn width 4), built once per session."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from shiftkit import models
from shiftkit.data import ArrayDataset, Domain, split_domain
from shiftkit.transfer import ZooConfig, build_zoo, zoo_sources

CLASSES = ["a", "b", "c", "d"]


def make_domain(name: str, shift: float, *, n: int = 96, seed: int = 0) -> Domain:
    """4 classes of 12x12 prototypes plus noise; `shift` brightens and flips part of the image."""
    protos = torch.rand((4, 1, 12, 12), generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    x = protos[labels] + 0.25 * torch.randn((n, 1, 12, 12), generator=g) + shift
    x[..., :6] = x[..., :6].flip(-2) if shift > 0.15 else x[..., :6]
    return split_domain(name, ArrayDataset(x.clamp(0, 1), labels, CLASSES), fractions=(0.5, 0.25, 0.25), seed=seed)


@dataclass
class Zoo:
    domains: list[Domain]
    target: Domain
    base: Path
    sources: list[Path]

    def model(self, **kw) -> torch.nn.Module:
        return models.create("small_cnn", num_classes=4, in_chans=1, width=4, **kw)


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Zoo:
    torch.set_num_threads(1)
    domains = [make_domain(f"bin{i}", 0.1 * i, seed=i) for i in range(5)]
    out = tmp_path_factory.mktemp("zoo")
    cfg = ZooConfig(model="small_cnn", model_kwargs={"width": 4}, base_epochs=3, source_epochs=2, batch_size=16)
    build_zoo(domains, out, cfg=cfg, dataset="tiny", exclude=(4,))
    base, sources = zoo_sources(out)
    return Zoo(domains, domains[4], base, sources)


FAST = {"initial_epochs": 1, "finetune_epochs": 1, "batch_size": 16}
