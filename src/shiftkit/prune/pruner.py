"""The glue: criterion scores -> masks (one shot), and iterative pruning (prune -> fine-tune -> prune more)."""
from __future__ import annotations

from torch import nn

from ..data.base import ArrayDataset
from ..errors import ConfigError
from ..train import TrainConfig, apply_masks, fit
from .base import Criterion, Masks, prunable_weights
from .masks import check_fraction, masks_from_scores

__all__ = ["compute_masks", "prune_model", "sparsity_schedule"]


def compute_masks(model: nn.Module, criterion: Criterion, sparsity: float, *, data: ArrayDataset | None = None,
                  allocation: dict[str, float] | None = None, prior: Masks | None = None) -> Masks:
    """Score the model with `criterion` and threshold the scores into masks (the model is not changed)."""
    check_fraction(sparsity)
    # masks are decided on the host wherever the model runs: small tensors, one global threshold over all layers
    weights = {n: w.detach().cpu() for n, w in prunable_weights(model, skip_unsupported=criterion.cfg.skip_unsupported).items()}
    scores = {n: s.cpu() for n, s in criterion.scores(model, data).items()}
    return masks_from_scores(scores, weights, sparsity, cfg=criterion.cfg, allocation=allocation,
                             groups=criterion.groups(list(weights)), prior=prior)


MAX_ROUNDS = 1000  # iterative pruning rounds (each one scores, masks and fine-tunes the whole net)


def sparsity_schedule(sparsity: float, steps: int) -> list[float]:
    """Geometric schedule: each step keeps the same fraction of the survivors (1 - (1 - s)^(k / steps))."""
    if not 1 <= steps <= MAX_ROUNDS:  # the schedule is a list: 1e9 rounds would be 8 GB before the first one
        raise ConfigError(f"steps={steps} must be in 1..{MAX_ROUNDS} (pruning rounds)")
    return [1.0 - (1.0 - sparsity) ** (k / steps) for k in range(1, steps + 1)]


def prune_model(model: nn.Module, criterion: Criterion, sparsity: float, *, data: ArrayDataset | None = None,
                steps: int = 1, train: ArrayDataset | None = None, val: ArrayDataset | None = None,
                train_cfg: TrainConfig | None = None) -> Masks:
    """Prune to `sparsity` in `steps` rounds; between rounds fine-tune on `train` with the masks fixed.

    Scores are recomputed on the masked model each round and pruned units stay pruned. The last round
    is not fine-tuned here (the caller fine-tunes the final sparse net with its own budget). The model's
    pruned weights are zeroed in place; attach the masks with `masks.apply` for torch.nn.utils.prune.
    Args:
        data: what the criterion reads (calibration set for gcnet, batches for snip).
        train_cfg: fine-tuning between rounds (None or train=None: no fine-tuning, e.g. SynFlow rounds).
    """
    masks: Masks | None = None
    for k, s in enumerate(sparsity_schedule(check_fraction(sparsity), steps)):
        masks = compute_masks(model, criterion, s, data=data, prior=masks)
        apply_masks(model, masks)
        if k < steps - 1 and train is not None and train_cfg is not None:
            fit(model, train, val, train_cfg, masks=masks)
    return masks
