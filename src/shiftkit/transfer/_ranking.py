"""The scoring pass shared by the methods that order or pick sources: one scratch model, K scalars.

Every source is read once into the same scratch model and scored on the target (`selection_metrics`,
so k-fold selection applies); only (accuracy, loss, path) per source is kept, never a source's weights.
"""
from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from .base import BaseMerger

__all__ = ["SourceScoring"]


class SourceScoring(BaseMerger):
    """`absorb` scores a source; `ranked()` lists the scored sources best-first (the order
    best_single_source would pick them in: val accuracy, then val loss, then arrival order)."""
    order_invariant = True

    def __init__(self, model: nn.Module, target, **kw) -> None:
        super().__init__(model, target, **kw)
        self._scratch = copy.deepcopy(model)
        self.scores: list[tuple[float, float, int, str]] = []  # (−accuracy, loss, stage, path): K scalars

    def _absorb(self, path: Path, stage: int) -> dict:
        self.load_source(path, self._scratch)
        m = self.selection_metrics(self._scratch)
        self.scores.append((-m["accuracy"], m["loss"], stage, str(path)))
        return {"val_accuracy": m["accuracy"], "val_loss": m["loss"]}

    def ranked(self) -> list[Path]:
        return [Path(p) for *_, p in sorted(self.scores)]
