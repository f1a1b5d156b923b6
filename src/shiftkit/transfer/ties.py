"""TIES-merging from the shared base: trim each task vector, elect signs, average the agreeing entries.

Reference: Yadav et al., TIES-Merging: Resolving Interference When Merging Models, NeurIPS 2023,
https://arxiv.org/abs/2306.01708 . A configured TaskArithmetic with a different `combine`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import register_transfer
from .task_arithmetic import TaskArithmetic

__all__ = ["Ties", "ties_combine"]


def ties_combine(tvs: Tensor, density: float) -> Tensor:
    """(K, ...) task vectors of one tensor -> merged (...): trim to top-`density`, elect sign, disjoint mean."""
    flat = tvs.reshape(len(tvs), -1)  # (K, n)
    keep = max(1, int(round(density * flat.shape[1])))
    thresh = flat.abs().topk(keep, dim=1).values[:, -1:]  # (K, 1) per-source magnitude cut
    trimmed = torch.where(flat.abs() >= thresh, flat, torch.zeros_like(flat))
    sign = torch.sign(trimmed.sum(0))  # (n,) elected sign = sign of the total mass
    agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
    merged = (trimmed * agree).sum(0) / agree.sum(0).clamp_min(1)
    return merged.reshape(tvs.shape[1:])


@register_transfer("ties")
class Ties(TaskArithmetic):
    def combine(self, tvs: Tensor) -> Tensor:
        return ties_combine(tvs, self.cfg.density)
