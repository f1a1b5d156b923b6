"""GC-Net connectivity pruning and the baselines it is measured against.

    crit = prune.create("gcnet", hybrid_split=2, scope="global")
    masks = prune.compute_masks(model, crit, 0.9, data=calibration)   # what + how much
    prune.apply(model, masks)                                         # how (torch.nn.utils.prune)
    fit(model, train, val, cfg)                                       # masks stay fixed
    prune.export(model, "runs/p.safetensors")                         # masks folded in, safetensors
"""
from . import gcnet, kernel_l1, magnitude, random, snip, synflow  # noqa: F401  (register the criteria)
from .base import PRUNE, Criterion, Masks, PruneConfig, Scores, create, prunable_modules, prunable_weights
from .connectivity import calibration_subset, compute_connectivity, connectivity_reference, pooled_activations
from .gcnet import GCNetConfig, ghost_network
from .masks import (apply, check_fraction, current_masks, dense_copy, expand_mask, export, layer_sparsity, make_permanent,
                    masks_from_scores, sparsity_report)
from .pruner import compute_masks, prune_model, sparsity_schedule

__all__ = [
    "PRUNE", "Criterion", "Masks", "PruneConfig", "Scores", "create", "names", "prunable_modules", "prunable_weights",
    "calibration_subset", "compute_connectivity", "connectivity_reference", "pooled_activations",
    "GCNetConfig", "ghost_network", "apply", "check_fraction", "current_masks", "dense_copy", "expand_mask", "export",
    "layer_sparsity", "make_permanent", "masks_from_scores", "sparsity_report", "compute_masks", "prune_model",
    "sparsity_schedule",
]


def names() -> list[str]:
    """Registered criterion names."""
    return PRUNE.names()
