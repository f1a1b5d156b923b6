"""Target-only baseline: ignore the sources' weights, train on the target alone with the shared budget."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from .base import BaseMerger, MergeConfig, register_transfer

__all__ = ["TargetOnly", "TargetOnlyConfig"]


@dataclass(frozen=True)
class TargetOnlyConfig(MergeConfig):
    lr: float = 1e-3  # from random init: the 5e-5 fine-tuning rate would barely move the weights


@register_transfer("target_only")
class TargetOnly(BaseMerger):
    """Sources are validated and counted (they set the budget), never read into the model."""
    order_invariant = True

    Config = TargetOnlyConfig
    deferred_training = True

    def _absorb(self, path: Path, stage: int) -> dict:
        return {"transferred": [], "fraction_transferred": 0.0}
