"""Channel importances for structural pruning: Torch-Pruning `Importance` objects, usable by any tp pruner.

GC-Net at the level of whole channels. A Torch-Pruning group is a set of coupled channels that go together
(a conv's output channels, their BN, the next convs' input channels, residual partners). With the ghost
network conn_L (out, in) of every Conv2d / Linear L (see `connectivity`: |Pearson| of input channel i and
output channel j, per class, averaged over classes), the score of root channel c is

    s_L[k] = mean_i conn_L[k, i]   if L loses its output channel k  (how strongly k hangs on its inputs)
    s_L[k] = mean_j conn_L[j, k]   if L loses its input channel k   (how strongly k drives L's outputs)
    imp[c] = mean over the layers L of the group of ( mean of s_L[k] over L's indices k that map to c )

(a Linear after a flatten has H*W input indices per channel: they are averaged first, so every layer counts
once). Then the group's scores are divided by their mean (Torch-Pruning's default "mean" normalizer), which
makes groups comparable in a global ranking. The ghost network is recomputed whenever the model's shapes
changed (iterative pruning), from one calibration forward pass.

Hybrid (the paper's best unstructured setting): groups rooted in the first `hybrid_split` prunable layers
are scored by group L2 magnitude (mean-normalized too), the rest by connectivity.

`gcnet_reversed` is a diagnostic, not the paper's method: the same scores flipped within each group
(max + min - s), so the most connected channels go first. If connectivity carries information about which
channels matter, the paper's direction must beat the reversed one clearly; if both land near random, it does not.

Baselines are Torch-Pruning's own classes: group L1 / L2 magnitude, Taylor, LAMP, random.

Reference: GC-Net (abstract in seeds/); Torch-Pruning / DepGraph, Fang et al., CVPR 2023.
"""
from __future__ import annotations

import torch
import torch_pruning as tp
from torch import Tensor, nn
from torch_pruning.pruner import function

from .._registry import Registry
from ..data.base import ArrayDataset
from ..errors import ConfigError
from .base import prunable_modules
from .connectivity import POOLINGS, READINGS, calibration_subset, compute_connectivity

__all__ = ["GCNetChannelImportance", "IMPORTANCES", "create_importance", "needs_gradients"]

_OUT = (function.prune_conv_out_channels, function.prune_linear_out_channels)
_IN = (function.prune_conv_in_channels, function.prune_linear_in_channels)


class GCNetChannelImportance(tp.importance.Importance):
    """GC-Net channel importance from the ghost network (see the module docstring for the exact reduction).

    Args:
        data: calibration images (a class-balanced subset of `calib_per_class` per class is drawn).
        reading / pooling / classwise: the connectivity reading (see `connectivity.compute_connectivity`).
        hybrid_split: groups rooted in the first k prunable layers scored by group L2 magnitude.
        reverse: flip the connectivity scores within each group (the `gcnet_reversed` diagnostic).
        normalizer: "mean" (divide each group by its mean) or None (raw scores).
    """

    def __init__(self, data: ArrayDataset, *, reading: str = "input", pooling: str = "space", classwise: bool = True,
                 hybrid_split: int = 0, calib_per_class: int | None = 64, normalizer: str | None = "mean",
                 reverse: bool = False, seed: int = 0) -> None:
        if reading not in READINGS or pooling not in POOLINGS:
            raise ConfigError(f"reading={reading!r} / pooling={pooling!r}; valid: {READINGS} / {POOLINGS}")
        if hybrid_split < 0 or normalizer not in ("mean", None):
            raise ConfigError(f"hybrid_split={hybrid_split} must be >= 0; normalizer={normalizer!r}: 'mean' or None")
        self.calib = calibration_subset(data, calib_per_class, seed=seed)
        self.reading, self.pooling, self.classwise = reading, pooling, classwise
        self.hybrid_split, self.normalizer, self.reverse = hybrid_split, normalizer, reverse
        self.magnitude = tp.importance.GroupMagnitudeImportance(p=2, normalizer=normalizer)
        self._key: tuple | None = None
        self._conn: dict[nn.Module, Tensor] = {}
        self._early: set[nn.Module] = set()

    def prepare(self, model: nn.Module) -> None:
        """(Re)compute the ghost network of `model` unless its shapes are unchanged since the last call."""
        modules = prunable_modules(model, skip_unsupported=True)
        key = (id(model), tuple((n, tuple(m.weight.shape)) for n, m in modules.items()))
        if key == self._key:
            return
        ghost = compute_connectivity(model, self.calib, reading=self.reading, pooling=self.pooling,
                                     classwise=self.classwise, skip_unsupported=True, full=True)
        self._conn = {m: ghost[f"{n}.weight"] for n, m in modules.items()}  # (O, I) each
        self._early = set(list(modules.values())[:self.hybrid_split])
        self._key = key

    @torch.no_grad()
    def __call__(self, group) -> Tensor | None:
        self.prepare(group._DG.model)  # tp hands importances only the group; its graph knows the model
        if group[0].dep.target.module in self._early:
            return self.magnitude(group)
        sums = counts = None
        for i, (dep, idxs) in enumerate(group):
            conn, root = self._conn.get(dep.target.module), group[i].root_idxs
            if conn is None or any(r is None for r in root) or dep.handler not in _OUT + _IN:
                continue
            s = conn[idxs].mean(1) if dep.handler in _OUT else conn[:, idxs].mean(0)  # (len(idxs),)
            n_root = len(group[0].idxs)
            root = torch.as_tensor(root, device=s.device)
            per = s.new_zeros(n_root).index_add_(0, root, s)   # this layer's mean per root channel
            hits = s.new_zeros(n_root).index_add_(0, root, torch.ones_like(s))
            sums = (per / hits.clamp_min(1)) if sums is None else sums + per / hits.clamp_min(1)
            counts = (hits > 0).float() if counts is None else counts + (hits > 0).float()
        if sums is None:
            return None
        imp = sums / counts.clamp_min(1)  # (root channels,)
        if self.reverse:  # the diagnostic: the most connected channels go first (same range, so still positive)
            imp = imp.max() + imp.min() - imp
        return imp / imp.mean().clamp_min(1e-12) if self.normalizer == "mean" else imp


IMPORTANCES: Registry[tp.importance.Importance] = Registry("channel importance")


def _register(name: str, needs_data: bool = False):
    def deco(fn):
        fn.needs_data = needs_data
        return IMPORTANCES.register(name)(fn)
    return deco


@_register("gcnet", needs_data=True)
def _gcnet(data: ArrayDataset, **opts) -> tp.importance.Importance:
    return GCNetChannelImportance(data, **opts)


@_register("gcnet_hybrid", needs_data=True)
def _gcnet_hybrid(data: ArrayDataset, *, hybrid_split: int = 2, **opts) -> tp.importance.Importance:
    return GCNetChannelImportance(data, hybrid_split=hybrid_split, **opts)


@_register("gcnet_pooled", needs_data=True)
def _gcnet_pooled(data: ArrayDataset, **opts) -> tp.importance.Importance:
    return GCNetChannelImportance(data, classwise=False, **opts)  # one correlation over all classes


@_register("gcnet_position", needs_data=True)
def _gcnet_position(data: ArrayDataset, **opts) -> tp.importance.Importance:
    return GCNetChannelImportance(data, pooling="position", **opts)  # every output position a sample


@_register("gcnet_reversed", needs_data=True)
def _gcnet_reversed(data: ArrayDataset, **opts) -> tp.importance.Importance:
    return GCNetChannelImportance(data, reverse=True, **opts)  # diagnostic: most connected channels first


@_register("l1")
def _l1() -> tp.importance.Importance:
    return tp.importance.GroupMagnitudeImportance(p=1)


@_register("l2")
def _l2() -> tp.importance.Importance:
    return tp.importance.GroupMagnitudeImportance(p=2)


@_register("taylor", needs_data=True)
def _taylor(data: ArrayDataset) -> tp.importance.Importance:
    return tp.importance.GroupTaylorImportance()  # gradients: see structured.prepare_importance


@_register("lamp")
def _lamp() -> tp.importance.Importance:
    return tp.importance.LAMPImportance(p=2)


@_register("random")
def _random() -> tp.importance.Importance:
    return tp.importance.RandomImportance()  # draws from torch's RNG: structured seeds it


def create_importance(name: str, *, data: ArrayDataset | None = None, **options) -> tp.importance.Importance:
    """A Torch-Pruning importance by name (gcnet, gcnet_hybrid, gcnet_pooled, gcnet_position, gcnet_reversed, l1, l2,
    taylor, lamp, random); options go to the GC-Net constructor (reading, pooling, classwise, hybrid_split, ...)."""
    factory = IMPORTANCES.get(name)
    if factory.needs_data:
        if data is None or not len(data):
            raise ConfigError(f"importance {name!r} needs calibration data (option: data / --dataset)")
        try:
            return factory(data, **options)
        except TypeError as e:
            raise ConfigError(f"importance {name!r}: bad option(s) {sorted(options)} ({e})") from None
    if options:
        raise ConfigError(f"importance {name!r} takes no options; got {sorted(options)}")
    return factory()


def needs_gradients(importance: tp.importance.Importance) -> bool:
    """Taylor-style importances read `weight.grad`: the caller runs a backward pass before each step."""
    return isinstance(importance, (tp.importance.GroupTaylorImportance, tp.importance.GroupHessianImportance))
