"""Ensemble of the sources (soft or hard vote), no target training: the GRASP paper's ensemble.

Holds all K sources at inference time (that is the cost GRASP avoids).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import BaseMerger, MergeConfig, register_transfer, register_variant

__all__ = ["Ensemble", "EnsembleConfig", "VoteEnsemble"]


class VoteEnsemble(nn.Module):
    """Returns log-probabilities of the vote, so softmax(output) is the ensemble's distribution."""

    def __init__(self, vote: str = "soft") -> None:
        super().__init__()
        self.members = nn.ModuleList()
        self.vote = vote

    def forward(self, x: Tensor) -> Tensor:
        return self.combine(torch.stack([m(x) for m in self.members]), self.vote)  # (K, N, C) -> (N, C)

    @staticmethod
    def combine(logits: Tensor, vote: str) -> Tensor:
        """Members' logits (K, N, C) -> log-probabilities of the vote (N, C)."""
        probs = logits.softmax(-1).mean(0)  # (N, C)
        if vote == "hard":  # share of members voting for each class; ties broken by the soft vote
            probs = nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float().mean(0) + 1e-3 * probs
        return probs.clamp_min(1e-12).log()


@dataclass(frozen=True)
class EnsembleConfig(MergeConfig):
    vote: str = "soft"  # "soft": mean of probabilities; "hard": majority of argmax votes

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vote not in ("soft", "hard"):
            raise ConfigError(f"vote={self.vote!r}; valid: soft, hard")


@register_transfer("ensemble")
class Ensemble(BaseMerger):
    order_invariant = True
    Config = EnsembleConfig

    def __init__(self, model: nn.Module, target, **kw) -> None:
        super().__init__(model, target, **kw)
        self._template = copy.deepcopy(model)
        self.model = VoteEnsemble(self.cfg.vote)

    def _absorb(self, path: Path, stage: int) -> dict:
        member = copy.deepcopy(self._template)
        self.load_source(path, member)
        self.model.members.append(member.eval())
        return {"members": len(self.model.members)}


register_variant("ensemble_hard", Ensemble, vote="hard")
