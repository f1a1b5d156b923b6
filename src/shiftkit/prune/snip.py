"""SNIP: connection sensitivity |g ⊙ W| of the training loss on a few batches.

Reference: Lee et al., SNIP: Single-shot Network Pruning based on Connection Sensitivity, ICLR 2019.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import ArrayDataset
from ..device import batches, model_device
from ..errors import ConfigError
from .base import Criterion, PruneConfig, Scores, prunable_weights, register_criterion
from .masks import dense_copy


@dataclass(frozen=True)
class SNIPConfig(PruneConfig):
    batches: int = 1        # reference: a single mini-batch
    batch_size: int = 128   # reference: 100-128 images

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batches < 1 or self.batch_size < 1:
            raise ConfigError(f"SNIP needs batches >= 1 and batch_size >= 1, got {self.batches}, {self.batch_size}")


@register_criterion("snip")
class SNIP(Criterion):
    """Score = |∂L/∂W ⊙ W| summed over `batches` random batches of `data`."""

    config_cls = SNIPConfig
    needs_data = True

    def scores(self, model: nn.Module, data: ArrayDataset | None = None) -> Scores:
        data = self._require_data(data)
        net = dense_copy(model).train()
        weights = prunable_weights(net, skip_unsupported=self.cfg.skip_unsupported)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.cfg.seed))
        order = order[:self.cfg.batches * self.cfg.batch_size]
        for x, y in batches(data.images, data.labels, self.cfg.batch_size, order=order, device=model_device(net)):
            F.cross_entropy(net(x), y).backward()
        return {n: (w.grad * w).detach().abs() if w.grad is not None else torch.zeros_like(w) for n, w in weights.items()}
