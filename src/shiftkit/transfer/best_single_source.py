"""Best single source: pick the source with the best target validation accuracy (or k-fold, val_folds), then fine-tune it."""
from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from .base import BaseMerger, register_transfer, register_variant

__all__ = ["BestSingleSource"]


@register_transfer("best_single_source")
class BestSingleSource(BaseMerger):
    """Holds the model plus the best source so far (one extra copy, independent of K)."""
    order_invariant = True

    deferred_training = True

    def __init__(self, model: nn.Module, target, **kw) -> None:
        super().__init__(model, target, **kw)
        self._scratch = copy.deepcopy(model)
        self.best = (float("-inf"), float("-inf"))  # (val accuracy, -val loss): ties never depend on the order

    def _absorb(self, path: Path, stage: int) -> dict:
        self.load_source(path, self._scratch)
        m = self.selection_metrics(self._scratch)
        chosen = (m["accuracy"], -m["loss"]) > self.best
        if chosen:
            self.best = (m["accuracy"], -m["loss"])
            self.model.load_state_dict(self._scratch.state_dict())
        return {"val_accuracy": m["accuracy"], "val_loss": m["loss"], "chosen": chosen}



# the baseline the bnrecal soup is measured against: the same target BN statistics for every candidate
register_variant("best_single_source_bnrecal", BestSingleSource, bn_recalibrate=True)
