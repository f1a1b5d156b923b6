"""PEARL-style composition: one LoRA adapter per source (via `peft`) on the shared base, combined
by composition weights learned on the target.

Each source's task vector (θ_k − θ_base) of every Conv2d/Linear weight is factored into a rank-r
LoRA pair by truncated SVD (no source training needed); the adapters' outputs are summed with one
learned scalar weight per source, bound to peft's per-adapter `scaling`. Target training updates
only the K composition weights (and BN statistics); everything else stays frozen. Biases and BN
parameters are the base's. Memory grows with K by the adapters (rank r), not by whole models.

Reference: PEFT LoRA, Hu et al., https://arxiv.org/abs/2106.09685; adapter composition as in
LoraHub (Huang et al., https://arxiv.org/abs/2307.13269).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from torch import Tensor, nn

from .base import BaseMerger, register_transfer
from .task_arithmetic import TaskArithmeticConfig

__all__ = ["Pearl", "PearlConfig", "ComposedLora", "lora_factors"]


@dataclass(frozen=True)
class PearlConfig(TaskArithmeticConfig):
    rank: int = 8    # LoRA rank per source and module
    lr: float = 1e-2  # only K scalar weights train: the 5e-5 fine-tuning rate would not move them


def lora_factors(delta: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """Δ (out, ...) -> B (out, r), A (r, n) with B @ A the best rank-r approximation of Δ viewed as (out, n)."""
    mat = delta.reshape(len(delta), -1)  # (out, n)
    u, s, vh = torch.linalg.svd(mat, full_matrices=False)
    r = min(rank, len(s))
    root = s[:r].sqrt()
    b, a = mat.new_zeros(len(mat), rank), mat.new_zeros(rank, mat.shape[1])
    b[:, :r], a[:r] = u[:, :r] * root, root[:, None] * vh[:r]
    return b, a


class ComposedLora(nn.Module):
    """The peft model plus one learnable weight per adapter (softmax-free: weights may be negative)."""

    def __init__(self, model: nn.Module, targets: list[str]) -> None:
        super().__init__()
        self.targets = targets
        self.peft = model
        self.weights = nn.ParameterDict()

    def forward(self, x: Tensor) -> Tensor:
        return self.peft(x)


@register_transfer("pearl")
class Pearl(BaseMerger):
    Config = PearlConfig
    deferred_training = True
    order_invariant = True

    def __init__(self, model: nn.Module, target, **kw) -> None:
        super().__init__(model, target, **kw)
        self.base = self.load_base(self.cfg.base)
        self.targets = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        self.model = ComposedLora(model, self.targets)

    def _lora_config(self) -> LoraConfig:
        return LoraConfig(r=self.cfg.rank, lora_alpha=self.cfg.rank, lora_dropout=0.0, target_modules=self.targets)

    def _absorb(self, path: Path, stage: int) -> dict:
        name = f"source{stage}"
        if not hasattr(self.model.peft, "peft_config"):  # first source: wrap the base with peft
            self.model.peft = get_peft_model(self.model.peft, self._lora_config(), adapter_name=name)
        else:
            self.model.peft.add_adapter(name, self._lora_config())
        inner = self.model.peft.base_model.model
        with self.open_source(path) as ckpt, torch.no_grad():
            for mod_name in self.targets:
                layer = inner.get_submodule(mod_name)
                delta = ckpt.get(f"{mod_name}.weight") - self.base[f"{mod_name}.weight"]
                b, a = lora_factors(delta, self.cfg.rank)
                layer.lora_A[name].weight.copy_(a.reshape(layer.lora_A[name].weight.shape))
                layer.lora_B[name].weight.copy_(b.reshape(layer.lora_B[name].weight.shape))
        self.model.weights[name] = nn.Parameter(torch.zeros((), device=self.device))
        n = len(self.model.weights)
        with torch.no_grad():
            for w in self.model.weights.values():
                w.fill_(1.0 / n)  # start from the average of the task vectors; learned in finish()
        self.model.peft.base_model.set_adapter(list(self.model.weights))
        for mod_name in self.targets:
            layer = inner.get_submodule(mod_name)
            for k, w in self.model.weights.items():
                layer.scaling[k] = w  # peft multiplies each adapter's output by its scaling
        for pname, p in self.model.named_parameters():
            p.requires_grad_(pname.startswith("weights."))
        return {"adapter": name, "adapters": n, "rank": self.cfg.rank}
