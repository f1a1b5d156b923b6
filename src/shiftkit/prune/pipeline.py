"""Merge -> prune: run a transfer method over K sources, then remove channels from its result, per speedup,
and measure both (dense merged and pruned) on the target and under shift.

    sets = shift_sets(domains, target_index)                     # other domains' tests + corruptions
    result = merge_then_prune(base_model, target, sources, shift=sets, run_dir="runs/mp",
                              method="grasp", speedups=(1.5, 2.0), finetune=TrainConfig(epochs=2))

Every pruned model is re-estimated BN on the target's training images, fine-tuned on the target
(`finetune`, best validation epoch) and written as `<run_dir>/pruned_<s>x.safetensors` (load_structured).
An Experiment / config maps onto the keyword arguments one to one (a `pipeline: [transfer, prune]` key).
"""
from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from torch import nn

from .. import api
from ..data import ArrayDataset, Domain
from ..errors import ConfigError
from ..train import TrainConfig, evaluate, fit
from .structured import StructuredConfig, prune_structured, save_structured

__all__ = ["shift_accuracy", "shift_sets", "merge_then_prune"]


def shift_accuracy(net: nn.Module, sets: dict[str, ArrayDataset], *, adabn: bool = False) -> dict[str, float]:
    """Accuracy per shifted set (`api.evaluate_under_shift`; adabn: BN re-estimated per set, on a copy)."""
    return {k: m["accuracy"] for k, m in api.evaluate_under_shift(net, sets, adapt_bn=adabn).items()}


def shift_sets(domains: Sequence[Domain], target_index: int, *, corruptions: bool = True,
               seed: int = 0) -> dict[str, ArrayDataset]:
    """The target's shifted test sets: every other domain's test split, plus corruptions of the target test."""
    target = domains[target_index]
    others = [d for i, d in enumerate(domains) if i != target_index]
    sets = api.shift_sets([target, *others], corruptions=corruptions, seed=seed)  # corruptions of the first
    del sets[target.name]
    return sets


def _measure(net: nn.Module, target: Domain, shift: dict[str, ArrayDataset]) -> dict:
    plain, adapted = shift_accuracy(net, shift), shift_accuracy(net, shift, adabn=True)
    return {"target_accuracy": evaluate(net, target.test)["accuracy"], "shift": plain, "shift_adabn": adapted,
            "shift_mean": statistics.fmean(plain.values()) if plain else None,
            "shift_adabn_mean": statistics.fmean(adapted.values()) if adapted else None}


def merge_then_prune(model: nn.Module, target: Domain, sources: Sequence[str | Path], *,
                     shift: dict[str, ArrayDataset], run_dir: str | Path, method: str = "grasp",
                     method_options: dict | None = None, speedups: Sequence[float] = (2.0,),
                     prune: StructuredConfig = StructuredConfig(speedup=2.0), finetune: TrainConfig = TrainConfig()) -> dict:
    """Transfer `sources` into `model` for `target` with `method`, then prune the merged model per speedup.

    Args:
        model: the starting model (the transfer method's first source / base, already loaded).
        sources: source checkpoints in absorb order.
        shift: shifted test sets ({name: dataset}, e.g. `shift_sets(domains, t)`).
        run_dir: the transfer run's state and the pruned checkpoints.
        method / method_options: a `shiftkit.transfer` name and its options (seed, epochs, ...).
        speedups: FLOP speedups; each overrides `prune.speedup` (importance, scope, step... come from `prune`).
        finetune: target fine-tuning after pruning (the same budget for every speedup).
    Returns:
        {"method", "merged": metrics, "pruned": [{speedup, macs/params ratios, checkpoint, metrics}, ...]}
    """
    from .. import transfer

    if not sources:
        raise ConfigError("merge_then_prune needs at least one source checkpoint (option: sources)")
    bad = [s for s in speedups if not s > 1.0]
    if bad:
        raise ConfigError(f"speedups {bad} must be > 1 (option: speedups)")
    run_dir = Path(run_dir)
    merger = transfer.create(method, model, target, run_dir=run_dir / "transfer", **(method_options or {}))
    for path in sources:
        merger.absorb(path)
    merged = merger.finish()
    if not hasattr(merged, "shiftkit_arch"):
        raise ConfigError(f"transfer method {method!r} returns no single model (an ensemble / adapter composition); "
                          "it cannot be pruned structurally (option: method)")
    out = {"method": method, "sources": [str(s) for s in sources], "merged": _measure(merged, target, shift),
           "pruned": []}
    for s in speedups:
        res = prune_structured(merged, target.train, replace(prune, speedup=s, channel_sparsity=None,
                                                             bn_recalibrate=True))
        fit(res.model, target.train, target.val, finetune)
        path = run_dir / f"pruned_{s:g}x.safetensors"
        save_structured(path, res.model, metadata={"method": method, "domain": target.name})
        out["pruned"].append({"speedup_target": s, "speedup": res.speedup, "macs_ratio": res.macs_after / res.macs_before,
                              "params_ratio": res.params_after / res.params_before, "checkpoint": str(path),
                              **_measure(res.model, target, shift)})
    return out
