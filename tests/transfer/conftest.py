"""Tiny synthetic domains and a tiny source zoo (small_cnn width 4), built once per session."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from shiftkit import models
from shiftkit.data import Domain
from shiftkit.transfer import ZooConfig, build_zoo, zoo_sources
from transfer_fixtures import make_domain


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

