"""Multi-source fusion (the GRASP paper's "Multi-Source"): average all K sources, then fine-tune.

Keeps every source resident (O(K) memory) — that is the point of the comparison.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .base import BaseMerger, register_transfer

__all__ = ["Fusion"]


@register_transfer("fusion")
class Fusion(BaseMerger):
    deferred_training = True
    order_invariant = True

    def __init__(self, model, target, **kw) -> None:
        super().__init__(model, target, **kw)
        self.sources: list[dict[str, Tensor]] = []

    def _absorb(self, path: Path, stage: int) -> dict:
        with self.open_source(path) as ckpt:
            self.sources.append({k: ckpt.get(k).clone() for k in self.expected})  # resident, not a file mapping
        state = self.model.state_dict()
        with torch.no_grad():
            for k, t in state.items():
                if t.is_floating_point():
                    t.copy_(torch.stack([s[k] for s in self.sources]).mean(0))
                else:  # integer buffers (BN batch counters): the first source's
                    t.copy_(self.sources[0][k])
        return {"resident_sources": len(self.sources)}
