"""Greedy soup over the sources, best-first: average in a source when the soup's target validation
loss does not get worse, then spend the shared fine-tuning budget on the soup.

Reference: Wortsman et al., Model soups: averaging weights of multiple fine-tuned models improves
accuracy without increasing inference time, ICML 2022, https://arxiv.org/abs/2203.05482 (greedy soup;
here acceptance on val loss, which a prototype found better than on accuracy with 20 val images).
Memory: the running sum, the current soup and one candidate — never all sources.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..train import recalibrate_bn
from .base import register_transfer, register_variant
from ._ranking import SourceScoring

__all__ = ["GreedySoup"]


@register_transfer("greedy_soup")
class GreedySoup(SourceScoring):
    deferred_training = True

    def _before_finish(self) -> None:
        order = self.ranked()
        self.load_source(order[0], self.model)
        total = {k: v.double() for k, v in self.model.state_dict().items() if v.is_floating_point()}  # running sum
        n, best = 1, self.selection_metrics()["loss"]
        accepted, log = [str(order[0])], []
        for path in order[1:]:
            self.load_source(path, self._scratch)  # the one candidate
            cand = self._scratch.state_dict()
            self._set_soup({k: s + cand[k] for k, s in total.items()}, n + 1)
            loss = self.selection_metrics()["loss"]
            ok = loss <= best
            if ok:
                for k, s in total.items():
                    s.add_(cand[k])
                n, best = n + 1, loss
                accepted.append(str(path))
            else:
                self._set_soup(total, n)  # back to the exact current soup
            log.append({"source": str(path), "soup_val_loss": loss, "accepted": ok})
        if self.cfg.bn_recalibrate:  # a rejected candidate left the averaged statistics: the soup's own again
            recalibrate_bn(self.model, self.target.train)
        self.soup_log = {"order": [str(p) for p in order], "accepted": accepted, "candidates": log}

    def _set_soup(self, total: dict[str, Tensor], n: int) -> None:
        state = self.model.state_dict()
        with torch.no_grad():
            for k, s in total.items():
                state[k].copy_(s / n)

    def finish(self):
        model = super().finish()
        self.finish_log = {**self.finish_log, **getattr(self, "soup_log", {})}
        return model


# BN statistics re-estimated on the target's train images before each soup is judged (averaged running
# statistics describe no model in the soup; the target's describe the one that will be fine-tuned)
register_variant("greedy_soup_bnrecal", GreedySoup, bn_recalibrate=True)
