"""Pruning protocol and shared types: a criterion turns a model (and data) into scores.

What / how much / how (as Torch-Pruning and torch.nn.utils.prune separate them):
- what: `Criterion.scores(model, data)` -> {weight name: score tensor}; a score shaped like the
  weight ranks single weights, a score shaped [out, in] ranks connections (whole kernels W[j, i, :, :]);
- how much: `masks.masks_from_scores` (global / layer-wise / matched allocation, caps, dense ends);
- how: `masks.apply` (torch.nn.utils.prune custom method), `masks.make_permanent`, `masks.export`.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from .._registry import Registry
from ..data.base import ArrayDataset
from ..errors import ConfigError

__all__ = ["PRUNE", "register_criterion", "create", "Criterion", "PruneConfig", "Scores", "Masks",
           "prunable_modules", "prunable_weights"]

Scores = dict[str, Tensor]  # weight name -> score, shaped like the weight or [out, in] (connections)
Masks = dict[str, Tensor]   # weight name -> bool tensor shaped like the weight (False = pruned)

PRUNE: Registry["Criterion"] = Registry("pruning criterion")
register_criterion = PRUNE.register

SCOPES = ("global", "layerwise")


@dataclass(frozen=True)
class PruneConfig:
    """How much to prune where: shared by every criterion (criteria add their own fields)."""

    scope: str = "global"              # "global": one threshold over all layers; "layerwise": same sparsity per layer
    keep_first: bool = False           # first prunable layer stays dense (common practice: it is tiny and vital)
    keep_last: bool = False            # classifier stays dense
    max_layer_sparsity: float = 1.0    # cap per layer; 1.0 = no cap
    skip_unsupported: bool = False     # False: a module with weights we cannot prune is an error naming it
    seed: int = 0                      # for criteria that draw random numbers

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigError(f"scope={self.scope!r}; valid: {', '.join(SCOPES)}")
        if not 0.0 < self.max_layer_sparsity <= 1.0:
            raise ConfigError(f"max_layer_sparsity={self.max_layer_sparsity!r} must be in (0, 1]")


class Criterion:
    """Base class of a pruning criterion: a config dataclass plus `scores`.

    Subclasses set `config_cls` (a PruneConfig subclass) and implement `scores`.
    `needs_data` says whether `scores` reads the calibration / training data.
    """

    config_cls: ClassVar[type[PruneConfig]] = PruneConfig
    needs_data: ClassVar[bool] = False

    def __init__(self, **cfg: Any) -> None:
        valid = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(cfg) - valid)
        if unknown:
            raise ConfigError(f"{type(self).__name__}: unknown option(s) {unknown}; valid: {', '.join(sorted(valid))}")
        self.cfg = self.config_cls(**cfg)

    def scores(self, model: nn.Module, data: ArrayDataset | None = None) -> Scores:
        raise NotImplementedError

    def groups(self, names: list[str]) -> list[list[str]]:
        """Layers thresholded together (each group reaches the asked sparsity); default: one group."""
        return [list(names)]

    def _require_data(self, data: ArrayDataset | None) -> ArrayDataset:
        if data is None or len(data) == 0:
            raise ConfigError(f"{type(self).__name__} needs calibration data (option: data / --dataset)")
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cfg})"


def create(name: str, **cfg: Any) -> Criterion:
    """Build a registered criterion by name: `create("gcnet", hybrid_split=2)`."""
    return PRUNE.create(name, **cfg)


_PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_modules(model: nn.Module, *, skip_unsupported: bool = False) -> dict[str, nn.Module]:
    """Conv2d / Linear modules in definition order, keyed by module name.

    A module holding a weight of >= 2 dims that is neither (nn.MultiheadAttention's in_proj_weight,
    Conv1d, Embedding, ...) raises ConfigError naming it, or is skipped with a warning.
    """
    found: dict[str, nn.Module] = {}
    for name, m in model.named_modules():
        if isinstance(m, _PRUNABLE):
            found[name] = m
            continue
        own = [p for p in m.parameters(recurse=False) if p.ndim >= 2]
        if own:
            msg = f"module {name!r} ({type(m).__name__}) has weights that shiftkit.prune cannot prune (only Conv2d / Linear)"
            if not skip_unsupported:
                raise ConfigError(msg + "; pass skip_unsupported=True (--skip-unsupported) to leave it dense")
            warnings.warn(msg + "; left dense")
    if not found:
        raise ConfigError(f"model {type(model).__name__} has no prunable layers (Conv2d / Linear)")
    return found


def prunable_weights(model: nn.Module, *, skip_unsupported: bool = False) -> dict[str, Tensor]:
    """{parameter name ("features.0.weight"): effective weight} of every prunable module."""
    return {f"{n}.weight" if n else "weight": m.weight for n, m in
            prunable_modules(model, skip_unsupported=skip_unsupported).items()}
