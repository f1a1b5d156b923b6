"""SynFlow: data-free synaptic saliency |W ⊙ ∂R/∂W|, R = 1ᵀ f(1; |θ|) (float64 so deep nets do not overflow).

Reference: Tanaka et al., Pruning neural networks without any data by iteratively conserving synaptic
flow, NeurIPS 2020. The paper's 100 rounds = `prune_model(..., steps=100)` without fine-tuning.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.base import ArrayDataset
from ..device import model_device
from ..errors import ConfigError
from .base import Criterion, PruneConfig, Scores, prunable_weights, register_criterion
from .masks import dense_copy


@dataclass(frozen=True)
class SynFlowConfig(PruneConfig):
    input_shape: tuple[int, ...] | None = None  # (C, H, W) of one input; default: the data's shape


@register_criterion("synflow")
class SynFlow(Criterion):
    """Linearize (|θ|, eval mode), push a ones input through, score |W ⊙ ∂R/∂W|."""

    config_cls = SynFlowConfig

    def scores(self, model: nn.Module, data: ArrayDataset | None = None) -> Scores:
        shape = self.cfg.input_shape or (data.shape if data is not None else None)
        if shape is None:
            raise ConfigError("synflow needs input_shape=(C, H, W) or data to read the input shape from")
        net = dense_copy(model).double().eval()
        with torch.no_grad():
            for t in net.state_dict().values():
                if t.is_floating_point():
                    t.abs_()
        weights = prunable_weights(net, skip_unsupported=self.cfg.skip_unsupported)
        net(torch.ones(1, *shape, dtype=torch.float64, device=model_device(net))).sum().backward()
        return {n: (w.grad * w).detach().abs() if w.grad is not None else torch.zeros_like(w)
                for n, w in weights.items()}
