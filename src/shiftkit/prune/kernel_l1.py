"""Kernel L1 magnitude: a control for GC-Net at the same granularity (whole connections W[j, i, :, :]).

Reference: Mao et al., Exploring the Granularity of Sparsity in CNNs, CVPR-W 2017 (kernel-level pruning).
"""
from __future__ import annotations

from torch import nn

from ..data.base import ArrayDataset
from .base import Criterion, Scores, prunable_weights, register_criterion


@register_criterion("kernel_l1")
class KernelL1(Criterion):
    """Score of connection (j, i) = Σ |W[j, i, :, :]| (shape [out, in]); Linear weights score per element."""

    def scores(self, model: nn.Module, data: ArrayDataset | None = None) -> Scores:
        weights = prunable_weights(model, skip_unsupported=self.cfg.skip_unsupported)
        return {n: w.detach().abs().flatten(2).sum(-1) if w.ndim > 2 else w.detach().abs() for n, w in weights.items()}
