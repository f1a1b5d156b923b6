"""Random pruning: the floor every criterion must beat, per weight or per connection ("random kernels").

Reference: Liu et al., The Unreasonable Effectiveness of Random Pruning, ICLR 2022.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.base import ArrayDataset
from ..errors import ConfigError
from .base import Criterion, PruneConfig, Scores, prunable_weights, register_criterion

GRANULARITIES = ("element", "connection")


@dataclass(frozen=True)
class RandomConfig(PruneConfig):
    granularity: str = "element"  # "connection": random whole kernels, the control for GC-Net's granularity

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.granularity not in GRANULARITIES:
            raise ConfigError(f"granularity={self.granularity!r}; valid: {', '.join(GRANULARITIES)}")


@register_criterion("random")
class Random(Criterion):
    """Uniform random scores, seeded by cfg.seed."""

    config_cls = RandomConfig

    def scores(self, model: nn.Module, data: ArrayDataset | None = None) -> Scores:
        g = torch.Generator().manual_seed(self.cfg.seed)
        weights = prunable_weights(model, skip_unsupported=self.cfg.skip_unsupported)
        conn = self.cfg.granularity == "connection"
        return {n: torch.rand(w.shape[:2] if conn and w.ndim > 2 else w.shape, generator=g) for n, w in weights.items()}
