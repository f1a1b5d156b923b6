"""OPCM: continual model merging by orthogonal projection, one source at a time (O(1) memory in K).

Reference: Tang et al., Merging Models on the Fly Without Retraining: A Sequential Approach to
Scalable Continual Model Merging, 2025, https://arxiv.org/abs/2501.09522 (FusionBench `opcm`).
Per 2-D weight (convs seen as (out, in·k·k)): the new task vector loses its components inside the
principal subspace of the merged task vector (top singular directions holding `alpha` of the
spectrum, and the diagonal), other parameters add; then the merged task vector is rescaled to the
running mean of the task-vector norms. Buffers: running mean of the sources'. The source streams
from disk one tensor at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import BaseMerger, register_transfer
from .task_arithmetic import TaskArithmeticConfig

__all__ = ["Opcm", "OpcmConfig", "project_out"]


@dataclass(frozen=True)
class OpcmConfig(TaskArithmeticConfig):
    alpha: float = 0.5  # share of the merged spectrum whose directions are protected (FusionBench default 0.5)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha={self.alpha} must lie in [0, 1]")


def project_out(merged_tv: Tensor, task_tv: Tensor, alpha: float) -> Tensor:
    """Remove from task_tv (out, n) the part in merged_tv's principal subspace (OPCM's projection)."""
    u, s, vh = torch.linalg.svd(merged_tv, full_matrices=True)  # u (out,out), vh (n,n)
    split = int((s.cumsum(0) / s.sum().clamp_min(1e-12) > alpha).float().argmax())
    proj = u.T @ task_tv @ vh.T  # task vector in merged's singular bases
    proj.diagonal().zero_()
    proj[:split, :split] = 0
    return u @ proj @ vh


@register_transfer("opcm")
class Opcm(BaseMerger):
    Config = OpcmConfig
    deferred_training = True

    def __init__(self, model, target, **kw) -> None:
        super().__init__(model, target, **kw)
        self.base = self.load_base(self.cfg.base)
        self.norms: list[float] = []
        self.prev_lambda = 1.0

    def _absorb(self, path: Path, stage: int) -> dict:
        params = dict(self.model.named_parameters())
        state = self.model.state_dict()
        n = self.n_absorbed + 1  # sources merged after this one
        with self.open_source(path) as ckpt, torch.no_grad():
            self.norms.append(sum(float((ckpt.get(k) - self.base[k]).pow(2).sum()) for k in params) ** 0.5)
            for k, t in state.items():
                src = ckpt.get(k)  # one source tensor at a time
                if k not in params:
                    if t.is_floating_point():
                        t.add_((src - t) / n)  # buffers: running mean of the sources
                    continue
                if n == 1:
                    t.copy_(src)
                    continue
                prev, new = t - self.base[k], src - self.base[k]
                if t.ndim >= 2:
                    new = project_out(prev.reshape(len(prev), -1), new.reshape(len(new), -1), self.cfg.alpha).reshape(t.shape)
                t.copy_(self.base[k] + self.prev_lambda * prev + new)
        if n > 1:  # rescale the merged task vector to the mean task-vector norm
            merged = sum(float((params[k].detach() - self.base[k]).pow(2).sum()) for k in params) ** 0.5
            avg = sum(self.norms) / len(self.norms)
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(self.base[k] + (p - self.base[k]) * (avg / max(merged, 1e-12)))
            self.prev_lambda = merged / avg
        return {"task_vector_norm": self.norms[-1], "lambda_t": self.prev_lambda}
