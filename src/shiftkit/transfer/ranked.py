"""Ranked GRASP: score every source on the target first (one streaming pass, K scalars), then run
GRASP with the stage gate over the sources best-first, so it starts where best_single_source ends.

Memory: the target, one scratch source and K scores; nothing else grows with K.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import register_transfer
from ._ranking import SourceScoring
from .grasp import Grasp, GraspConfig

__all__ = ["Ranked", "RankedConfig"]


@dataclass(frozen=True)
class RankedConfig(GraspConfig):
    stage_gate: bool = True  # a stage that ends with a worse val loss is undone: never below the best source's stage


@register_transfer("ranked")
class Ranked(SourceScoring, Grasp):
    Config = RankedConfig
    resume_from_checkpoint = False  # the scoring pass is training-free: resume replays it
    deferred_training = True

    def __init__(self, model: nn.Module, target, **kw) -> None:
        super().__init__(model, target, **kw)
        self._source = self._scratch  # the scoring pass and the GRASP stages share one scratch source

    def finish(self) -> nn.Module:
        """The GRASP stages, best-first; the budget is GRASP's (initial + finetune per later source)."""
        if self.finish_log is None:
            stages = [{"source": str(p), **self._stage(p, len(self.records) + i, first=i == 0)}
                      for i, p in enumerate(self.ranked())]
            self.finish_log = {"order": [s["source"] for s in stages], "stages": stages,
                               "epochs": sum(s["epochs"] for s in stages)}
        return self.model
