"""One call per task, for Python users (as Torch-Pruning's and mergekit's entry points are):

    from shiftkit.api import evaluate_under_shift, merge, prune
    masks = prune(net, "gcnet", 0.8, calibration=train_set)              # prune a model in place
    merged = merge(["a.safetensors", "b.safetensors"], (train, val))     # merge sources into a target
    table = evaluate_under_shift(net, "driftfmnist", corruptions=True)   # accuracy on every shifted set

Data arguments take shiftkit's `ArrayDataset`, any torch Dataset of (image tensor, label) pairs
or a DataLoader over one (see `ArrayDataset.from_torch`). Each call is a thin composition of the
library's own pieces (`prune.create` + `prune_model`, `transfer.create` + `run_sources`,
`train.evaluate`), so it gives the same numbers as the CLI on the same inputs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

import torch
from torch import nn

from .data.base import ArrayDataset
from .data.domains import Domain
from .device import place
from .errors import ConfigError

__all__ = ["load_model", "prune", "merge", "evaluate_under_shift", "shift_sets"]

Data = Union[ArrayDataset, torch.utils.data.Dataset, torch.utils.data.DataLoader]


def _data(data: Data | None) -> ArrayDataset | None:
    return None if data is None else ArrayDataset.from_torch(data)


def load_model(path: str | os.PathLike, *, device: str | torch.device | None = None) -> nn.Module:
    """The model of any shiftkit checkpoint: trained, merged, mask-pruned or structurally pruned (its
    narrower widths rebuilt from the stored pruning history), weights validated and loaded onto `device`
    (None: the CPU; "auto": CUDA, else MPS, else CPU). A file written on a GPU loads on a CPU-only machine."""
    from .checkpoints import load_checkpoint, model_from_checkpoint, read_metadata
    from .prune.structured import META_KEY, load_structured

    if META_KEY in read_metadata(path):
        net = place(load_structured(path), device)
    else:
        net = place(model_from_checkpoint(path), device)
        load_checkpoint(path, net)
    net.shiftkit_checkpoint = str(path)  # errors about this model name its file
    return net


def prune(model: nn.Module, method: str = "gcnet", sparsity: float = 0.8, calibration: Data | None = None, *,
          finetune: Data | None = None, val: Data | None = None, epochs: int = 0, lr: float = 1e-3, steps: int = 1,
          seed: int = 0, device: str | torch.device | None = None, precision: str = "fp32",
          **options: Any) -> dict[str, torch.Tensor]:
    """Prune `model` in place to `sparsity` with a registered criterion; return its masks.

    The masks are attached through `torch.nn.utils.prune` (they stay fixed in any later training;
    `shiftkit.prune.make_permanent` folds them in). With `finetune` data and `epochs` > 0 the sparse
    net is fine-tuned (masks fixed) and keeps its best-validation epoch when `val` is given.

    Args:
        method: a criterion from `shiftkit.prune.names()` ("gcnet", "magnitude", "snip", ...).
        calibration: what data-driven criteria read (gcnet's connectivity, snip's gradients).
        options: the criterion's config, e.g. scope="layerwise", keep_first=True, hybrid_split=2.
        device: move the model there first (None: leave it where it is); precision: of the fine-tuning.
    """
    from . import prune as pruning
    from ._compat import check_dataset
    from .train import TrainConfig, fit

    place(model, device)
    criterion = pruning.create(method, seed=seed, **options)
    data = _data(calibration)
    if criterion.needs_data and data is None:
        raise ConfigError(f"prune method {method!r} reads data: pass calibration=<dataset>")
    train, val_set = _data(finetune), _data(val)
    for what, ds in (("calibration", data), ("finetune", train), ("val", val_set)):
        if ds is not None:
            check_dataset(model, ds, data_name=what, exact=False)
    if epochs > 0 and train is None:
        raise ConfigError(f"prune: epochs={epochs} fine-tuning needs finetune=<dataset>")
    cfg = TrainConfig(epochs=epochs, lr=lr, seed=seed, precision=precision)
    masks = pruning.prune_model(model, criterion, sparsity, data=data, steps=steps, train=train, val=val_set,
                                train_cfg=cfg if train is not None else None)
    if train is not None and epochs > 0:
        fit(model, train, val_set, cfg, masks=masks)
    pruning.apply(model, masks)  # attached last: fit() addresses the plain `weight` parameters
    return masks


def _target(target: Domain | Sequence[Data]) -> Domain:
    if isinstance(target, Domain):
        return target
    if not isinstance(target, (tuple, list)) or len(target) not in (2, 3):
        raise ConfigError("merge: target must be a Domain or a (train, val) / (train, val, test) tuple of datasets")
    parts = [_data(t) for t in target]
    train, val = parts[0], parts[1]
    test = parts[2] if len(parts) == 3 else val.subset(torch.arange(0))
    return Domain("target", train, val, test)


def merge(sources: Sequence[str | os.PathLike], target: Domain | Sequence[Data], *, method: str = "grasp",
          model: nn.Module | None = None, run_dir: str | os.PathLike | None = None,
          device: str | torch.device | None = None, **options: Any) -> nn.Module:
    """Merge source checkpoints, one at a time in the given order, into one model for `target`.

    Memory holds the target and one source (for the O(1) methods), whatever len(sources) is.

    Args:
        sources: shiftkit checkpoints (`shiftkit import` turns .pt / torchvision / timm files into them).
        target: the target's labelled few-shot data: a Domain or (train, val[, test]).
        method: a name from `shiftkit.transfer.names()`.
        model: the architecture to merge into; default: rebuilt from the first source's metadata.
        run_dir: where the state after every absorb is saved (resumable); None keeps it in memory.
        device: where the merge runs (None: where `model` is, the CPU for a rebuilt one); sources stream to it
            one tensor at a time.
        options: the method's config, e.g. tau=0.3, finetune_epochs=3, lr=5e-5, seed=0, precision="bf16".
    """
    from . import transfer
    from ._compat import check_dataset
    from .checkpoints import model_from_checkpoint

    paths = [Path(s) for s in sources]
    if not paths:
        raise ConfigError("merge: no sources given")
    net = place(model if model is not None else model_from_checkpoint(paths[0]), device)
    domain = _target(target)
    check_dataset(net, domain.train, data_name="target", exact=isinstance(target, Domain))
    merger = transfer.create(method, net, domain, run_dir=run_dir, **options)
    return transfer.run_sources(merger, paths)


def shift_sets(dataset: str | Sequence[Domain] | dict[str, Data], *, root: str | os.PathLike | None = None,
               corruptions: bool = False, seed: int = 0) -> dict[str, ArrayDataset]:
    """Named test sets: every domain's test split (the first is the clean one) and, optionally, the clean
    domain's corruption sets as "<corruption>@<severity>"."""
    from .data import corruption_sets, load_domains

    if isinstance(dataset, dict):
        sets = {name: _data(ds) for name, ds in dataset.items()}
    else:
        domains = load_domains(dataset, root, seed=seed) if isinstance(dataset, str) else list(dataset)
        sets = {d.name: d.test for d in domains}
    if corruptions:
        clean = next(iter(sets.values()))
        sets.update({f"{name}@{sev}": ds for (name, sev), ds in corruption_sets(clean, seed=seed).items()})
    return sets


def evaluate_under_shift(model: nn.Module, dataset: str | Sequence[Domain] | dict[str, Data] = "driftfmnist", *,
                         root: str | os.PathLike | None = None, corruptions: bool = False, adapt_bn: bool = False,
                         seed: int = 0, device: str | torch.device | None = None) -> dict[str, dict[str, float]]:
    """{set name: metrics} on every shifted test set (see `shift_sets`).

    Args:
        adapt_bn: AdaBN — BN statistics re-estimated on each set's images, on a fresh copy per set
            (statistics never leak across sets; the model is left unchanged).
        device: move the model there first (None: evaluate where it is).
    """
    from ._compat import check_dataset
    from .train import evaluate_sets

    sets = shift_sets(dataset, root=root, corruptions=corruptions, seed=seed)
    own = isinstance(dataset, dict)  # a user's sets: their class lists may be only the labels seen
    for name, ds in sets.items():  # before any forward pass: a model meeting data it was not built for
        check_dataset(model, ds, exact=not own, data_name=f"{dataset if isinstance(dataset, str) else 'set'} {name!r}")
    return evaluate_sets(place(model, device), sets, adabn=adapt_bn)
