"""Classification and model metrics: accuracy, macro-F1, AUROC (torchmetrics), params, FLOPs.

Per-layer sparsity lives in one place: `shiftkit.prune.masks.sparsity_report`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .device import model_device
from .errors import ConfigError

__all__ = ["classification_metrics", "count_params", "conv_linear_flops"]


def classification_metrics(logits: Tensor, labels: Tensor) -> dict[str, float]:
    """accuracy (micro), macro-F1 and macro one-vs-rest AUROC from logits (N, C)."""
    # imported here: torchmetrics costs seconds at import, and most CLI commands never score anything
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_auroc, multiclass_f1_score

    c = logits.shape[1]
    if c < 2:
        raise ConfigError(f"classification metrics need at least 2 classes, the model outputs {c}")
    probs = logits.float().softmax(1)
    return {
        "accuracy": multiclass_accuracy(probs, labels, num_classes=c, average="micro").item(),
        "macro_f1": multiclass_f1_score(probs, labels, num_classes=c, average="macro").item(),
        "auroc": multiclass_auroc(probs, labels, num_classes=c, average="macro").item(),
    }


def count_params(model: nn.Module, *, nonzero: bool = False) -> int:
    return sum(int((p != 0).sum()) if nonzero else p.numel() for p in model.parameters())


def conv_linear_flops(model: nn.Module, input_shape: tuple[int, int, int], *, nonzero: bool = False) -> int:
    """Multiply-accumulates of Conv2d/Linear layers for one input; with nonzero=True only unpruned weights count."""
    macs = 0

    def hook(m, inp, out):
        nonlocal macs
        w = m.weight
        per_out = int((w != 0).sum()) if nonzero else w.numel()
        spatial = out.shape[2] * out.shape[3] if out.ndim == 4 else 1
        macs += per_out * spatial

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape, device=model_device(model)))
    model.train(was_training)
    for h in handles:
        h.remove()
    return macs
