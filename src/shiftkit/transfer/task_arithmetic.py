"""Task arithmetic from the shared base: θ = θ_base + λ Σ_k (θ_k − θ_base), λ chosen on target val.

Reference: Ilharco et al., Editing Models with Task Arithmetic, ICLR 2023, https://arxiv.org/abs/2212.04089
Merges one tensor at a time, streaming that tensor from every absorbed source (mergekit style);
the deferred target fine-tuning then spends the shared budget. TIES subclasses `combine`.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import BaseMerger, MergeConfig, register_transfer

__all__ = ["TaskArithmetic", "TaskArithmeticConfig"]


@dataclass(frozen=True)
class TaskArithmeticConfig(MergeConfig):
    base: str = ""                                            # the shared base checkpoint the sources were tuned from
    lambdas: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # scales tried on target val (the paper tunes λ on val)
    density: float = 0.2                                      # TIES only: fraction of each task vector kept

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.base:
            raise ConfigError("task arithmetic / TIES / OPCM / PEARL need base=<shared base checkpoint>")
        if not 0 < self.density <= 1:
            raise ConfigError(f"density={self.density} must lie in (0, 1]")


@register_transfer("task_arithmetic")
class TaskArithmetic(BaseMerger):
    Config = TaskArithmeticConfig
    deferred_training = True
    order_invariant = True

    def __init__(self, model, target, **kw) -> None:
        super().__init__(model, target, **kw)
        self.base = self.load_base(self.cfg.base)
        self.paths: list[Path] = []

    def combine(self, tvs: Tensor) -> Tensor:
        """Task vectors of one tensor (K, ...) -> the merged task vector (...)."""
        return tvs.sum(0)

    def _absorb(self, path: Path, stage: int) -> dict:
        self.paths.append(path)
        merged: dict[str, Tensor] = {}
        params = dict(self.model.named_parameters())
        with ExitStack() as stack:
            ckpts = [stack.enter_context(self.open_source(p)) for p in self.paths]
            for k, b in self.base.items():
                tensors = torch.stack([c.get(k) for c in ckpts])  # (K, ...) one tensor from every source
                if not b.is_floating_point():
                    merged[k] = b
                elif k in params:
                    merged[k] = self.combine(tensors - b)
                else:  # BN running statistics: the sources' mean (a scaled sum can turn variances negative)
                    merged[k] = tensors.mean(0) - b
        lam = self._choose_lambda(merged)
        return {"lambda": lam, "sources_merged": len(self.paths)}

    def _apply(self, merged: dict[str, Tensor], lam: float) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for k, t in self.model.state_dict().items():
                if t.is_floating_point():
                    t.copy_(self.base[k] + (lam if k in params else 1.0) * merged[k])

    def _choose_lambda(self, merged: dict[str, Tensor]) -> float:
        scores = []
        for lam in self.cfg.lambdas:
            self._apply(merged, lam)
            m = self.selection_metrics()
            scores.append((m["accuracy"], -m["loss"], lam))
        best = max(scores)[2]
        self._apply(merged, best)
        return best
