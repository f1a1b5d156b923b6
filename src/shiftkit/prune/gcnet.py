"""GC-Net: prune through a ghost network whose weights are the connectivity between consecutive layers.

The ghost holds one matrix G_m = conn (out, in) per Conv2d / Linear (see `connectivity`). Pruning the
ghost by magnitude (global or layer-wise: `scope`) removes the weakest connections; the map-back zeroes
the whole kernel slice W[j, i, :, :] of each removed connection. Variants (one class, configured):
- hybrid_split=k: magnitude |W| on the first k prunable layers, the ghost on the rest (each part reaches
  the asked sparsity; the paper's best setting is a split after the first layers);
- combine=True: score |W[j, i, ...]| × conn[j, i] per weight;
- inverse=True: the control that prunes the most connected first.
Calibration data is any dataset: clean or shifted (the paper targets shift).

Reference: GC-Net, ghost-network connectivity pruning (abstract in seeds/); the reading of
"connectivity" here is our interpretation, documented in DESIGN.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..data.base import ArrayDataset
from ..errors import ConfigError
from .base import Criterion, PruneConfig, Scores, prunable_weights, register_criterion
from .connectivity import POOLINGS, READINGS, calibration_subset, compute_connectivity


@dataclass(frozen=True)
class GCNetConfig(PruneConfig):
    reading: str = "input"          # "input": child input vs child output; "parent": the lab's parent output
    pooling: str = "space"          # "space": conv maps averaged over space; "position": every position a sample
    classwise: bool = True          # False: one correlation over all samples (keeps between-class signal)
    hybrid_split: int = 0           # first k prunable layers by |W| (0 = pure GC-Net)
    combine: bool = False           # score |W| × conn instead of conn
    inverse: bool = False           # control: rank by -conn (prune the most connected first)
    calib_per_class: int | None = 100  # class-balanced calibration images per class (None: all given)
    batch_size: int = 256           # calibration forward batch

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reading not in READINGS:
            raise ConfigError(f"reading={self.reading!r}; valid: {', '.join(READINGS)}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling={self.pooling!r}; valid: {', '.join(POOLINGS)}")
        if self.hybrid_split < 0:
            raise ConfigError(f"hybrid_split={self.hybrid_split} must be >= 0")
        if self.calib_per_class is not None and self.calib_per_class < 2:
            raise ConfigError(f"calib_per_class={self.calib_per_class} must be >= 2 (a correlation needs 2 samples)")


def ghost_network(model: nn.Module, data: ArrayDataset, cfg: GCNetConfig = GCNetConfig()) -> dict[str, Tensor]:
    """{weight name: conn (out, in / groups)} from one pass over a class-balanced calibration subset."""
    calib = calibration_subset(data, cfg.calib_per_class, seed=cfg.seed)
    return compute_connectivity(model, calib, reading=cfg.reading, batch_size=cfg.batch_size,
                                skip_unsupported=cfg.skip_unsupported, pooling=cfg.pooling, classwise=cfg.classwise)


@register_criterion("gcnet")
class GCNet(Criterion):
    """Connection scores from the ghost network (optionally hybrid with magnitude, or |W| × conn)."""

    config_cls = GCNetConfig
    needs_data = True

    def scores(self, model: nn.Module, data: ArrayDataset | None = None) -> Scores:
        weights = prunable_weights(model, skip_unsupported=self.cfg.skip_unsupported)
        self._check_split(len(weights))
        names = list(weights)
        ghost_names = names[self.cfg.hybrid_split:]
        ghost = ghost_network(model, self._require_data(data), self.cfg) if ghost_names else {}
        out: Scores = {n: weights[n].detach().abs() for n in names[:self.cfg.hybrid_split]}
        sign = -1.0 if self.cfg.inverse else 1.0
        for n in ghost_names:
            conn = ghost[n]  # (O, I)
            if self.cfg.combine:
                w = weights[n].detach().abs()
                out[n] = sign * w * conn.reshape(*conn.shape, *([1] * (w.ndim - 2)))
            else:
                out[n] = sign * conn
        return out

    def groups(self, names: list[str]) -> list[list[str]]:
        k = self.cfg.hybrid_split
        return [names[:k], names[k:]] if 0 < k < len(names) else [list(names)]

    def _check_split(self, n_layers: int) -> None:
        if self.cfg.hybrid_split > n_layers:
            raise ConfigError(f"hybrid_split={self.cfg.hybrid_split} exceeds the {n_layers} prunable layers")
