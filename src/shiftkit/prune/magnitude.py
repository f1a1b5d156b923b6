"""Magnitude pruning: remove the weights with the smallest |W| (global or layer-wise via `scope`).

Reference: Han et al., Learning both Weights and Connections for Efficient Neural Networks, NeurIPS 2015.
"""
from __future__ import annotations

from torch import nn

from ..data.base import ArrayDataset
from .base import Criterion, Scores, prunable_weights, register_criterion


@register_criterion("magnitude")
class Magnitude(Criterion):
    """Score = |W| per weight."""

    def scores(self, model: nn.Module, data: ArrayDataset | None = None) -> Scores:
        weights = prunable_weights(model, skip_unsupported=self.cfg.skip_unsupported)
        return {n: w.detach().abs() for n, w in weights.items()}
