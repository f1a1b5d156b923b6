"""How much and how: scores + amount -> boolean masks; masks -> torch.nn.utils.prune; permanence; export.

Masks are data: {weight name ("features.0.weight"): bool tensor shaped like the weight}, False = pruned.
A score shaped [out, in] for a conv weight [out, in, kh, kw] ranks whole connections; pruning one
zeroes the kernel slice W[j, i, :, :] (the map-back of the ghost network). Sparsity is always counted
in parameters of the original network's prunable weights, so a 3x3 connection weighs 9 and a 1x1 one 1.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Iterable

import torch
from torch import Tensor, nn
from torch.nn.utils import prune as tprune

from ..checkpoints import save_checkpoint
from ..errors import ConfigError
from .base import Masks, PruneConfig, Scores, prunable_modules

__all__ = ["check_fraction", "unit_size", "expand_mask", "masks_from_scores", "layer_sparsity", "apply",
           "current_masks", "make_permanent", "dense_copy", "sparsity_report", "export"]


def check_fraction(value: float, option: str = "sparsity") -> float:
    """The one amount validator: a sparsity must be a number in [0, 1); the error names the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{option}={value!r} must be a fraction in [0, 1)")
    return float(value)


def unit_size(name: str, score: Tensor, weight: Tensor) -> int:
    """Parameters per scored unit: 1 for element scores, kh*kw for connection scores [out, in]."""
    if score.shape == weight.shape:
        return 1
    if weight.ndim > 2 and score.shape == weight.shape[:2]:
        return weight[0, 0].numel()
    raise ConfigError(f"score for {name!r} has shape {tuple(score.shape)}; expected {tuple(weight.shape)} "
                      f"(elements) or {tuple(weight.shape[:2])} (connections)")


def expand_mask(unit_mask: Tensor, weight: Tensor) -> Tensor:
    """Map back: a connection mask [out, in] becomes a weight mask (whole kernel slices); elements pass through."""
    if unit_mask.shape == weight.shape:
        return unit_mask.bool()
    return unit_mask.bool().reshape(*unit_mask.shape, *([1] * (weight.ndim - 2))).expand_as(weight).clone()


def _unit_scores(name: str, score: Tensor, prior: Tensor | None) -> Tensor:
    """Flat float64 scores; units the prior mask already removed rank first (-inf)."""
    s = torch.nan_to_num(score.detach().double(), nan=0.0).flatten()
    if prior is not None:
        alive = prior.reshape(*score.shape, -1).any(-1) if prior.shape != score.shape else prior
        s = torch.where(alive.flatten(), s, torch.tensor(float("-inf"), dtype=s.dtype))
    return s


def _prune_lowest(scores: Tensor, k: int) -> Tensor:
    """Keep-mask over units with the k lowest scores removed (stable: ties go by position)."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k > 0:
        keep[torch.argsort(scores, stable=True)[:k]] = False
    return keep


def _global(units: dict[str, Tensor], sizes: dict[str, int], target: float, cap: float) -> dict[str, Tensor]:
    """One threshold over all layers: remove the lowest units until `target` parameters are gone.

    A per-layer cap makes a unit ineligible once its layer would pass cap × layer size.
    """
    names = list(units)
    flat, size, eligible = [], [], []
    for n in names:
        s = units[n]
        rank = torch.empty_like(s, dtype=torch.long)
        rank[torch.argsort(s, stable=True)] = torch.arange(len(s))
        flat.append(s)
        size.append(torch.full_like(s, sizes[n]))
        eligible.append(rank + 1 <= cap * len(s) + 1e-9)
    s, sz, ok = torch.cat(flat), torch.cat(size), torch.cat(eligible)
    s = torch.where(ok, s, torch.tensor(float("inf"), dtype=s.dtype))
    if target > float(sz[ok].sum()) + 1e-9:
        raise ConfigError(f"sparsity unreachable: {target:.0f} parameters to prune but only {float(sz[ok].sum()):.0f} "
                          "may go under max_layer_sparsity / keep_first / keep_last")
    order = torch.argsort(s, stable=True)
    cum = torch.cumsum(sz[order], 0)
    k = int(torch.searchsorted(cum, torch.tensor(target, dtype=cum.dtype)))  # first k+1 units reach the target
    prev = float(cum[k - 1]) if k > 0 else 0.0
    if k < len(cum) and abs(float(cum[k]) - target) < abs(prev - target):
        k += 1  # the count of parameters closest to the target (within half a unit)
    keep = torch.ones_like(s, dtype=torch.bool)
    keep[order[:k]] = False
    return dict(zip(names, keep.split([len(units[n]) for n in names])))


def _waterfill(numels: dict[str, int], target: float, cap: float) -> dict[str, float]:
    """Equal sparsity per layer that removes `target` parameters, layers capped at `cap`."""
    total = sum(numels.values())
    if target > cap * total + 1e-9:
        raise ConfigError(f"sparsity unreachable layer-wise: needs {target / max(total, 1):.3f} of the pruned layers "
                          f"but max_layer_sparsity={cap} (or keep_first / keep_last leave too few)")
    return {n: min(cap, target / max(total, 1)) for n in numels}


def _resolve_dense(names: list[str], cfg: PruneConfig) -> set[str]:
    dense = set()
    if cfg.keep_first:
        dense.add(names[0])
    if cfg.keep_last:
        dense.add(names[-1])
    return dense


def masks_from_scores(scores: Scores, weights: dict[str, Tensor], sparsity: float, *, cfg: PruneConfig = PruneConfig(),
                      allocation: dict[str, float] | None = None, groups: Iterable[Iterable[str]] | None = None,
                      prior: Masks | None = None) -> Masks:
    """Turn scores into masks that remove `sparsity` of the weights (lowest scores go first).

    Args:
        scores: {weight name: score}, element- or connection-shaped (see `unit_size`).
        weights: {weight name: weight} of every prunable layer, in network order (the sparsity base).
        cfg: scope (global / layerwise), keep_first / keep_last dense, max_layer_sparsity cap.
        allocation: matched allocation {weight name: sparsity}; overrides scope and `sparsity`.
        groups: layer groups thresholded separately, each reaching the same sparsity (hybrid criteria);
            with dense layers the others carry their share, so the whole network reaches `sparsity`.
        prior: masks already in place (iterative pruning): their pruned units stay pruned.
    Returns: {weight name: bool mask} for every scored layer.
    """
    sparsity = check_fraction(sparsity)
    names = list(weights)
    missing = [n for n in scores if n not in weights]
    if missing:
        raise ConfigError(f"scores for unknown layer(s) {missing[:3]}; prunable: {names[:5]} ...")
    sizes = {n: unit_size(n, s, weights[n]) for n, s in scores.items()}
    units = {n: _unit_scores(n, s, None if prior is None else prior.get(n)) for n, s in scores.items()}
    keep: dict[str, Tensor] = {}
    if allocation is not None:
        for n in units:
            k = round(check_fraction(allocation.get(n, 0.0), f"allocation[{n!r}]") * len(units[n]))
            keep[n] = _prune_lowest(units[n], k)
    else:
        dense = _resolve_dense(names, cfg)
        live_total = sum(weights[n].numel() for n in units if n not in dense)
        if sparsity > 0 and not live_total:
            raise ConfigError("sparsity unreachable: keep_first / keep_last leave no layer to prune")
        scale = sparsity * sum(weights[n].numel() for n in units) / max(live_total, 1)  # dense layers' share moves
        for group in (groups or [names]):
            group = [n for n in group if n in units]
            live = {n: units[n] for n in group if n not in dense}
            target = scale * sum(weights[n].numel() for n in live)
            keep.update({n: torch.ones_like(units[n], dtype=torch.bool) for n in group if n in dense})
            if not live:
                continue
            if cfg.scope == "global":
                keep.update(_global(live, sizes, target, cfg.max_layer_sparsity))
            else:
                per = _waterfill({n: weights[n].numel() for n in live}, target, cfg.max_layer_sparsity)
                keep.update({n: _prune_lowest(live[n], round(per[n] * len(live[n]))) for n in live})
    out = {}
    for n, k in keep.items():
        m = expand_mask(k.reshape(scores[n].shape), weights[n])
        out[n] = m & prior[n].bool() if prior is not None and n in prior else m
    return out


def layer_sparsity(masks: Masks) -> dict[str, float]:
    """Fraction pruned per layer (for matched allocation)."""
    return {n: 1.0 - m.float().mean().item() for n, m in masks.items()}


def _module(model: nn.Module, weight_name: str) -> nn.Module:
    path, _, attr = weight_name.rpartition(".")
    if attr != "weight":
        raise ConfigError(f"mask key {weight_name!r} must name a module weight ('<module>.weight')")
    return model.get_submodule(path)


def apply(model: nn.Module, masks: Masks) -> nn.Module:
    """Attach masks through torch.nn.utils.prune.custom_from_mask: the forward pass sees weight_orig × mask,
    so masked weights stay zero through any fine-tuning; masks compose with earlier prune calls."""
    for name, mask in masks.items():
        module = _module(model, name)
        tprune.custom_from_mask(module, "weight", mask.to(device=module.weight.device, dtype=torch.bool))
    return model


def current_masks(model: nn.Module) -> Masks:
    """The torch.nn.utils.prune masks attached to a model, keyed by weight name."""
    return {(f"{n}.weight" if n else "weight"): m.weight_mask.bool().clone()
            for n, m in model.named_modules() if hasattr(m, "weight_mask")}


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every mask into its weight (torch.nn.utils.prune.remove); zeros stay, the hooks go."""
    for m in model.modules():
        if tprune.is_pruned(m) and hasattr(m, "weight_orig"):
            tprune.remove(m, "weight")
    return model


def dense_copy(model: nn.Module) -> nn.Module:
    """A deep copy with every mask folded into its weight; the original keeps its masks.

    (A module under torch.nn.utils.prune holds `weight` as a non-leaf tensor that deepcopy refuses;
    it is refreshed as a detached product first - the forward hook recomputes it on every call anyway.)
    """
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "weight_orig") and hasattr(m, "weight_mask"):
                m.weight = m.weight_orig * m.weight_mask
    return make_permanent(copy.deepcopy(model))


def sparsity_report(model: nn.Module, *, skip_unsupported: bool = False) -> list[dict]:
    """True sparsity per prunable layer, counted on the weights the forward pass uses; last row = total."""
    rows, zeros, total = [], 0, 0
    for name, m in prunable_modules(model, skip_unsupported=skip_unsupported).items():
        w = m.weight.detach()
        z = int((w == 0).sum())
        rows.append({"layer": name, "shape": list(w.shape), "params": w.numel(), "zeros": z, "sparsity": z / w.numel()})
        zeros, total = zeros + z, total + w.numel()
    rows.append({"layer": "total", "shape": [], "params": total, "zeros": zeros, "sparsity": zeros / max(total, 1)})
    return rows


def export(model: nn.Module, path: str | os.PathLike, *, metadata: dict[str, str] | None = None) -> list[dict]:
    """Save the sparse model as safetensors (masks folded in, same keys as the dense arch); returns the report."""
    sparse = dense_copy(model)
    report = sparsity_report(sparse, skip_unsupported=True)
    meta = {"sparsity": f"{report[-1]['sparsity']:.6f}",
            "sparsity_per_layer": json.dumps({r["layer"]: round(r["sparsity"], 6) for r in report[:-1]}),
            **(metadata or {})}
    save_checkpoint(path, sparse, metadata=meta)
    return report
