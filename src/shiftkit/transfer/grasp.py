"""GRASP: gradient-aligned sequential parameter transfer, one source at a time, O(1) memory in K.

Reference: GRASP (Gradient-Aligned Sequential Parameter Transfer), the authors' public code:
θ ← first source, fine-tune; per next source copy every parameter tensor whose target-loss
gradient at θ_s has cosine > τ with the one at θ, then fine-tune and keep the best-validation
epoch of the stage. Variants (registered below) are configured instances of this one class.

BatchNorm modes of the two gradients (`source_bn_mode`): the reference ("eval", the authors'
`source_model.eval()` / `target_model.train()`) takes the source's gradient with its running
statistics and the target's with batch statistics; "train" takes both with batch statistics
(shiftkit's behaviour before 0.x; on BN nets it makes GRASP copy nearly every tensor).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..checkpoints import LazyCheckpoint
from ..errors import ConfigError
from ._grad import (BN_MODES, GRANULARITIES, alignment_batches, expand_mask, grouped_cosine, target_gradients, tau_mask,
                    taylor_scores)
from .base import BaseMerger, MergeConfig, register_transfer, register_variant

__all__ = ["GraspConfig", "Grasp"]


@dataclass(frozen=True)
class GraspConfig(MergeConfig):
    tau: float = 0.3              # reference threshold on the gradient cosine
    alignment_batches: int = 1    # reference: one batch of target train data
    granularity: str = "tensor"   # reference: one decision per parameter tensor
    mode: str = "cosine"          # "taylor": copy when g_t·(θ_s − θ) < 0; streams the source, no source forward
    source_bn_mode: str = "eval"  # reference: source gradient with its BN running stats; "train": batch stats
    copy_buffers: bool = False    # reference keeps the target's BN running stats; True: they travel with their layer
    val_gate: bool = False        # undo an absorb's copies when they make the target val loss worse
    stage_gate: bool = False      # undo a whole stage (copies + fine-tuning) whose val loss ends above the one before it

    def __post_init__(self) -> None:
        super().__post_init__()
        if not -1.0 <= self.tau <= 1.0:
            raise ConfigError(f"tau={self.tau} must lie in [-1, 1] (a cosine threshold)")
        if self.granularity not in GRANULARITIES:
            raise ConfigError(f"granularity={self.granularity!r}; valid: {', '.join(GRANULARITIES)}")
        if self.mode not in ("cosine", "taylor"):
            raise ConfigError(f"mode={self.mode!r}; valid: cosine, taylor")
        if self.source_bn_mode not in BN_MODES:
            raise ConfigError(f"source_bn_mode={self.source_bn_mode!r}; valid: {', '.join(BN_MODES)}")
        if self.alignment_batches < 1:
            raise ConfigError(f"alignment_batches={self.alignment_batches} must be >= 1")


@register_transfer("grasp")
class Grasp(BaseMerger):
    """Holds the target, one source and their gradients; nothing grows with the number of sources."""

    Config = GraspConfig
    resume_from_checkpoint = True

    def __init__(self, model, target, **kw) -> None:
        super().__init__(model, target, **kw)
        self._source: torch.nn.Module | None = None  # one scratch source model, reused by every absorb

    def _absorb(self, path: Path, stage: int) -> dict:
        return self._stage(path, stage, first=self.n_absorbed == 0)

    def _stage(self, path: Path, stage: int, *, first: bool) -> dict:
        """One GRASP stage: θ ← source (first) or the aligned copies, then the stage's fine-tuning."""
        before = None if first else self.val_metrics()
        if first:  # θ ← first source, then the initial fine-tuning
            self.load_source(path, self.model)
            n = sum(p.numel() for p in self.model.parameters())
            decisions = {"transferred": "all", "fraction_transferred": 1.0, "params_transferred": n}
            epochs = self.cfg.initial_epochs
        else:
            # one snapshot of the target (not of any source): memory stays constant in K
            snapshot = copy.deepcopy(self.model.state_dict()) if self.cfg.stage_gate else None
            decisions = self._transfer(path, stage, before)
            epochs = self.cfg.finetune_epochs
        after_copy = self.val_metrics()
        fit = self.fine_tune(epochs, stage)
        after_stage = after = self.val_metrics()
        reverted = not first and self.cfg.stage_gate and after_stage["loss"] > before["loss"]
        if reverted:  # the fine-tuning budget is spent either way: budgets stay equal across methods
            self.model.load_state_dict(snapshot)
            after = before  # the exact pre-absorb state
        return {**decisions, "val_before": before, "val_after_copy": after_copy, "val_after_stage": after_stage,
                "val_after": after, "reverted": reverted, "epochs": epochs, "stage_best_epoch": fit.best_epoch,
                "history": fit.history}

    def _source_model(self, path: Path) -> torch.nn.Module:
        if self._source is None:
            self._source = copy.deepcopy(self.model)
        self.load_source(path, self._source)
        return self._source

    def _transfer(self, path: Path, stage: int, before: dict) -> dict:
        c = self.cfg
        batches = alignment_batches(self.target.train, c.alignment_batches, c.batch_size, seed=self.stage_seed(stage),
                                    device=self.device)
        g_t = target_gradients(self.model, batches, bn_mode="train")  # the authors' target_model.train()
        params = dict(self.model.named_parameters())
        backup: dict[str, Tensor] = {}
        log: dict[str, dict] = {}
        masks: dict[str, Tensor] = {}
        with self.open_source(path) as ckpt:
            if c.mode == "cosine":
                source = self._source_model(path)
                g_s = target_gradients(source, batches, bn_mode=c.source_bn_mode)  # reference: source_model.eval()
                theta_s = dict(source.named_parameters())
            for name, p in params.items():
                src = theta_s[name].detach() if c.mode == "cosine" else ckpt.get(name)  # taylor: one tensor at a time
                if c.mode == "cosine":
                    score = grouped_cosine(g_s[name], g_t[name], c.granularity)
                    mask = tau_mask(score, c.tau)
                else:
                    score = taylor_scores(g_t[name], p.detach(), src, c.granularity)
                    mask = score < 0
                log[name] = {"score": score.mean().item(), "fraction": mask.float().mean().item()}
                if mask.any():
                    full = masks[name] = expand_mask(mask, p, c.granularity)
                    backup[name] = p.detach().clone() if c.val_gate else None
                    with torch.no_grad():
                        p.copy_(torch.where(full, src, p))
                    log[name]["copied"] = int(full.sum())
            buffers = self._copy_layer_buffers(ckpt, masks, backup) if c.copy_buffers else []
        summary = self._summary(log, backup, before)
        return {**summary, "buffers_copied": [] if summary["gated"] else buffers}

    def _copy_layer_buffers(self, ckpt: LazyCheckpoint, masks: dict[str, Tensor], backup: dict[str, Tensor]) -> list[str]:
        """A layer's buffers (BN running stats) follow its copied parameters: per channel where the
        layer's weight mask is per channel, whole otherwise; layers with nothing copied keep theirs."""
        names = []
        for mod_name, mod in self.model.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            copied = [masks[prefix + k] for k, _ in mod.named_parameters(recurse=False) if prefix + k in masks]
            if not copied:
                continue
            for k, b in mod.named_buffers(recurse=False):
                name, src = prefix + k, ckpt.get(prefix + k)
                sel = copied[0] if copied[0].shape == b.shape else torch.ones_like(b, dtype=torch.bool)
                if self.cfg.val_gate:
                    backup[name] = b.detach().clone()
                with torch.no_grad():
                    b.copy_(torch.where(sel, src, b))
                names.append(name)
        return names

    def _summary(self, log: dict[str, dict], backup: dict[str, Tensor], before: dict) -> dict:
        gated = False
        if self.cfg.val_gate and backup and self.val_metrics()["loss"] > before["loss"]:
            state = self.model.state_dict()  # parameters and (copy_buffers) their layers' buffers
            with torch.no_grad():
                for name, old in backup.items():
                    state[name].copy_(old)
            gated = True
        total = sum(p.numel() for p in self.model.parameters())
        copied = 0 if gated else sum(v.get("copied", 0) for v in log.values())
        return {"transferred": [] if gated else [k for k, v in log.items() if v.get("copied")],
                "fraction_transferred": copied / total, "params_transferred": copied, "gated": gated,
                "per_tensor_fraction": {k: v["fraction"] for k, v in log.items()},
                "score_kind": "cosine" if self.cfg.mode == "cosine" else "taylor g_t·(θ_s−θ)",
                "scores": {k: v["score"] for k, v in log.items()}}


# Variants beside the reference: each one configured instance of Grasp, measured on the paired table.
register_variant("grasp_taylor", Grasp, mode="taylor")
register_variant("grasp_channel", Grasp, granularity="channel")
register_variant("grasp_multibatch", Grasp, alignment_batches=4)
register_variant("grasp_valgate", Grasp, val_gate=True)
register_variant("grasp_stagegate", Grasp, stage_gate=True)
register_variant("grasp_bn_train", Grasp, source_bn_mode="train")  # shiftkit's old modes: source grads in train mode
register_variant("grasp_copybuffers", Grasp, copy_buffers=True)
register_variant("grasp_stagegate_copybuffers", Grasp, stage_gate=True, copy_buffers=True)
# The ablations that show whether alignment matters: copy every tensor / copy none.
register_variant("sequential_all", Grasp, tau=-1.0)
register_variant("sequential_none", Grasp, tau=1.0)
