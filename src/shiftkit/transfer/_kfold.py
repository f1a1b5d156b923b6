"""k-fold selection over the few-shot set (train ∪ val), for every method, in one place.

With ~20 validation images one image is 5 points, so a decision taken on them is noisy. With
`val_folds = k` every labelled target image serves validation once:
- training-free selections (best source, ranking, soup acceptance, task-arithmetic λ) score a model
  that has never seen the target: the mean over the k folds is leak-free (`fold_metrics`);
- the deferred fine-tuning of merge-then-train methods picks its epoch by k-fold: k copies trained
  on k−1 folds for the same epochs, the epoch with the best mean fold accuracy (then loss); the model
  then trains on every labelled image with the same schedule and keeps that epoch (`kfold_fit`).
Sequential methods (GRASP and its variants) keep the val split for their per-stage decisions: a
later stage starts from a model that has already trained on every fold, so its fold scores would leak.
"""
from __future__ import annotations

import copy
import dataclasses
import statistics

import torch
from torch import nn

from ..data.base import ArrayDataset
from ..train import FitResult, TrainConfig, evaluate, fit

__all__ = ["pool", "split_folds", "fold_metrics", "kfold_fit"]


def pool(train: ArrayDataset, val: ArrayDataset) -> ArrayDataset:
    """Every labelled target image: train then val."""
    return _concat([train, val])


def split_folds(ds: ArrayDataset, k: int, *, seed: int) -> list[ArrayDataset]:
    """k disjoint folds covering ds, sizes differing by at most one (a seeded permutation)."""
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    return [ds.subset(idx) for idx in order.tensor_split(k)]  # (≈ n/k,) indices per fold


def fold_metrics(model: nn.Module, folds: list[ArrayDataset]) -> dict:
    """Mean accuracy and loss over the folds, with the per-fold values."""
    per = [{k: v for k, v in evaluate(model, f).items() if k in ("accuracy", "loss")} for f in folds]
    return {"accuracy": statistics.fmean(p["accuracy"] for p in per), "loss": statistics.fmean(p["loss"] for p in per),
            "folds": per}


def kfold_fit(model: nn.Module, folds: list[ArrayDataset], cfg: TrainConfig) -> FitResult:
    """Choose the epoch by k-fold, then train `model` on all folds and keep that epoch."""
    last = dataclasses.replace(cfg, select="last")
    curves = []  # per fold: [(val accuracy, val loss) per epoch]
    for i, held in enumerate(folds):
        rest = _concat([f for j, f in enumerate(folds) if j != i])
        res = fit(copy.deepcopy(model), rest, held, last)
        curves.append([(h["val_accuracy"], h["val_loss"]) for h in res.history])
    mean = [(statistics.fmean(c[e][0] for c in curves), statistics.fmean(c[e][1] for c in curves))
            for e in range(cfg.epochs)]
    best = max(range(cfg.epochs), key=lambda e: (mean[e][0], -mean[e][1], -e))  # ties: the earlier epoch
    kept: dict = {}
    result = fit(model, _concat(folds), None, last,
                 on_epoch=lambda e, _: kept.update(state=copy.deepcopy(model.state_dict())) if e == best else None)
    model.load_state_dict(kept["state"])
    result.best_epoch = best
    result.best_val_accuracy = mean[best][0]
    for h, (acc, loss) in zip(result.history, mean):
        h.update(kfold_val_accuracy=acc, kfold_val_loss=loss)
    return result


def _concat(parts: list[ArrayDataset]) -> ArrayDataset:
    return ArrayDataset(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), parts[0].classes)
