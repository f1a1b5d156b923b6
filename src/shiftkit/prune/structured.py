"""Structural (channel) pruning through Torch-Pruning's dependency graph: channels are physically removed.

    cfg = StructuredConfig(importance="gcnet", speedup=2.0)
    result = prune_structured(model, calib, cfg)      # a pruned copy; `model` is left as it is
    fit(result.model, train, val, tc)                 # an ordinary smaller nn.Module: no masks
    save_structured("runs/p.safetensors", result.model)
    model = load_structured("runs/p.safetensors")     # any process: dense arch + tp pruning history replayed

The target is a channel sparsity (Torch-Pruning's `pruning_ratio`, one step) or a FLOP speedup: then the
ratio grows by `step` per pruning step (Torch-Pruning's iterative schedule, importances re-estimated on the
current net every step) until MACs(dense) / MACs(pruned) >= speedup. The classifier (last Conv2d / Linear)
is never pruned (its inputs shrink with the layer before it); the first layer's outputs are kept unless
keep_first=False, and with them every channel coupled to them (in a ResNet: the first stage's residual stream).
Attention blocks (modules with `qkv` and `num_heads`, as in timm's ViT / MobileViT) are left whole.

The file is plain safetensors (no pickle): the pruned tensors under the dense arch's names, metadata with
arch/config, the Torch-Pruning pruning history (JSON) and the per-layer widths for plain PyTorch users.

Reference: Torch-Pruning / DepGraph, Fang et al., CVPR 2023.
"""
from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from .._files import loads_bounded
from ..checkpoints import load_checkpoint, model_from_checkpoint, read_metadata, save_checkpoint
from ..data.base import ArrayDataset
from ..device import batches, model_device
from ..errors import CheckpointError, ConfigError
from ..train import TrainConfig, fit, recalibrate_bn
from .base import SCOPES, prunable_modules
from .channel_importance import IMPORTANCES, create_importance, needs_gradients
from .connectivity import calibration_subset

__all__ = ["StructuredConfig", "StructuredResult", "prune_structured", "count_macs_params", "save_structured",
           "load_structured", "widths", "structured_prune_checkpoint"]

META_KEY = "structured"  # safetensors metadata key of the pruning history + example input shape
# Caps on what a config or a file may ask for before anything is allocated (issue 22 §3):
MAX_STEPS = 1000               # pruning steps towards a speedup: step >= max_layer_sparsity / 1000 (default 90 steps)
MAX_INPUT_VALUES = 1 << 24     # a file's example input: 16.7M values (64 MiB float32; 3 x 2048 x 2048 fits)


@dataclass(frozen=True)
class StructuredConfig:
    importance: str = "l2"                     # a channel_importance.IMPORTANCES name
    channel_sparsity: float | None = None      # fraction of each group's channels removed (one step)
    speedup: float | None = None               # or: MACs(dense) / MACs(pruned) to reach, step by step
    scope: str = "global"                      # "global": one ranking over all groups; "layerwise": same ratio each
    layer_sparsity: tuple[tuple[str, float], ...] = ()  # per-layer budgets (module name, ratio); channel_sparsity only
    max_layer_sparsity: float = 0.9            # no group loses more than this (a global ranking can empty a layer)
    keep_first: bool = True                    # first layer's outputs kept (it is tiny and vital)
    step: float = 0.01                         # ratio increment per step towards a speedup (a few % MACs overshoot)
    round_to: int | None = None                # channel counts rounded to a multiple (SIMD-friendly widths)
    calib_per_class: int = 64                  # class-balanced calibration images per class (scores, BN, Taylor)
    bn_recalibrate: bool = False               # re-estimate BN statistics on the calibration data after removal
    seed: int = 0                              # random importance, calibration subset
    importance_options: tuple[tuple[str, object], ...] = ()  # e.g. (("hybrid_split", 3),)

    def __post_init__(self) -> None:
        if (self.channel_sparsity is None) == (self.speedup is None):
            raise ConfigError("give exactly one of channel_sparsity (--channel-sparsity) and speedup (--speedup)")
        if self.speedup is not None and not self.speedup > 1.0:
            raise ConfigError(f"speedup={self.speedup!r} must be > 1 (MACs of the dense net / MACs of the pruned net)")
        if self.channel_sparsity is not None and not 0.0 < self.channel_sparsity < 1.0:
            raise ConfigError(f"channel_sparsity={self.channel_sparsity!r} must be in (0, 1)")
        if self.scope not in SCOPES:
            raise ConfigError(f"scope={self.scope!r}; valid: {', '.join(SCOPES)}")
        if not 0.0 < self.max_layer_sparsity < 1.0 or not 0.0 < self.step < 1.0:
            raise ConfigError(f"max_layer_sparsity={self.max_layer_sparsity} and step={self.step} must be in (0, 1)")
        if self.speedup is not None and self.max_layer_sparsity / self.step > MAX_STEPS:
            raise ConfigError(f"step={self.step!r} means {self.max_layer_sparsity / self.step:.3g} pruning steps towards the "
                              f"speedup; at most {MAX_STEPS} (step >= {self.max_layer_sparsity / MAX_STEPS:g})")
        if self.calib_per_class < 1 or (self.round_to is not None and self.round_to < 1):
            raise ConfigError(f"calib_per_class={self.calib_per_class!r} and round_to={self.round_to!r} must be >= 1")
        if self.layer_sparsity and self.speedup is not None:
            raise ConfigError("layer_sparsity (per-layer budgets) needs channel_sparsity, not speedup")
        for name, r in self.layer_sparsity:
            if not 0.0 <= r < 1.0:
                raise ConfigError(f"layer_sparsity[{name!r}]={r!r} must be in [0, 1): every channel of {name!r} would go")


@dataclass
class StructuredResult:
    model: nn.Module
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    steps: int
    channel_sparsity: float                    # the ratio of the last step
    layer_widths: dict[str, list[int]] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        return self.macs_before / self.macs_after


def count_macs_params(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass on `example` (Torch-Pruning's counter)."""
    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def widths(model: nn.Module) -> dict[str, list[int]]:
    """{module name: [out, in]} of every Conv2d / Linear (what a plain PyTorch rebuild needs)."""
    return {n: [int(m.weight.shape[0]), int(m.weight.shape[1] * getattr(m, "groups", 1))]
            for n, m in prunable_modules(model, skip_unsupported=True).items()}


def _example(data: ArrayDataset, device: torch.device) -> torch.Tensor:
    return next(batches(data.images, data.labels, 1, order=torch.arange(1), device=device))[0]


def _graph_pruner(net: nn.Module, example: torch.Tensor, importance, cfg: StructuredConfig, steps: int):
    modules = prunable_modules(net, skip_unsupported=True)
    names = list(modules)
    ignored = [modules[names[-1]]] + ([modules[names[0]]] if cfg.keep_first else [])
    # attention blocks (timm's Attention, mobilevit) reshape qkv by num_heads / head_dim: left whole
    ignored += [m for m in net.modules() if hasattr(m, "num_heads") and hasattr(m, "qkv")]
    unknown = [n for n, _ in cfg.layer_sparsity if n not in modules]
    if unknown:
        raise ConfigError(f"layer_sparsity names unknown layer(s) {unknown}; prunable layers: {', '.join(names)}")
    for name, r in cfg.layer_sparsity:
        if int(modules[name].weight.shape[0] * (1 - r)) < 1:
            raise ConfigError(f"layer_sparsity[{name!r}]={r}: every channel of layer {name!r} would go")
    ratio = cfg.channel_sparsity if cfg.channel_sparsity is not None else cfg.step * steps
    try:
        return tp.pruner.BasePruner(
            net, example, importance, global_pruning=cfg.scope == "global", pruning_ratio=ratio,
            pruning_ratio_dict={modules[n]: r for n, r in cfg.layer_sparsity} or None,
            max_pruning_ratio=cfg.max_layer_sparsity, iterative_steps=steps, ignored_layers=ignored,
            round_to=cfg.round_to)
    except Exception as e:  # tracing runs arbitrary model code: any failure means "cannot trace"
        arch = getattr(net, "shiftkit_arch", type(net).__name__)
        raise ConfigError(f"torch-pruning cannot trace model {arch!r} ({type(e).__name__}: {e}); "
                          "structural pruning needs a traceable model (option: model)") from e


def _gradients(net: nn.Module, calib: ArrayDataset) -> None:
    """weight.grad of one calibration batch (Taylor importance), BN in eval mode like the scores."""
    net.zero_grad(set_to_none=True)
    x, y = next(batches(calib.images, calib.labels, 256, order=torch.arange(min(256, len(calib))),
                        device=model_device(net)))
    F.cross_entropy(net(x), y).backward()


def prune_structured(model: nn.Module, data: ArrayDataset, cfg: StructuredConfig) -> StructuredResult:
    """A channel-pruned copy of `model` (eval mode); `data` gives calibration images and the input shape.

    Raises ConfigError (naming the option or layer) for an untraceable model, an unreachable speedup,
    or a per-layer budget that removes every channel; `model` is never modified.
    """
    calib = calibration_subset(data, cfg.calib_per_class, seed=cfg.seed)
    example = _example(calib, model_device(model))
    net = copy.deepcopy(model).eval()
    importance = create_importance(cfg.importance, data=calib if _needs_data(cfg) else None,
                                   **dict(cfg.importance_options))
    steps = 1 if cfg.channel_sparsity is not None else max(1, int(cfg.max_layer_sparsity / cfg.step))
    pruner = _graph_pruner(net, example, importance, cfg, steps)  # traces first: a clear error if it cannot
    macs0, params0 = count_macs_params(net, example)
    widths0 = widths(net)
    torch.manual_seed(cfg.seed)  # the random importance draws from torch's RNG
    macs, done = macs0, 0
    for done in range(1, steps + 1):
        if needs_gradients(importance):
            _gradients(net, calib)
        pruner.step()
        _check_alive(net, example)
        macs = count_macs_params(net, example)[0]
        if cfg.speedup is not None and macs0 / macs >= cfg.speedup:
            break
    net.zero_grad(set_to_none=True)
    if cfg.speedup is not None and macs0 / macs < cfg.speedup:
        raise ConfigError(f"speedup={cfg.speedup} unreachable: {macs0 / macs:.2f}x at max_layer_sparsity="
                          f"{cfg.max_layer_sparsity} (the first and last layers stay; raise max_layer_sparsity)")
    if widths(net) == widths0:  # e.g. a forward that leaves autograd hides every coupling from the tracer
        raise ConfigError(f"torch-pruning cannot trace model {getattr(net, 'shiftkit_arch', type(net).__name__)!r}: "
                          "no channel could be removed (its graph has no prunable coupled layers; option: model)")
    if cfg.bn_recalibrate:
        recalibrate_bn(net, calib)
    net.shiftkit_structured = {"history": _history(pruner), "input_shape": list(example.shape)}
    return StructuredResult(net, macs0, macs, params0, count_macs_params(net, example)[1], done,
                            pruner.per_step_pruning_ratio[done], widths(net))


def _needs_data(cfg: StructuredConfig) -> bool:
    return IMPORTANCES.get(cfg.importance).needs_data


def _history(pruner) -> list:
    """Torch-Pruning's pruning history as JSON-able lists (module name, is_out_channel, indices)."""
    return [[name, bool(is_out), [int(i) for i in idxs]] for name, is_out, idxs in pruner.pruning_history()]


def _check_alive(net: nn.Module, example: torch.Tensor) -> None:
    for name, width in widths(net).items():
        if min(width) < 1:
            raise ConfigError(f"layer {name!r} lost every channel; lower the sparsity / speedup")
    try:
        with torch.no_grad():
            net(example)
    except Exception as e:  # a graph torch-pruning mis-traced (e.g. a forward that leaves autograd)
        arch = getattr(net, "shiftkit_arch", type(net).__name__)
        raise ConfigError(f"torch-pruning cannot trace model {arch!r}: the pruned model does not run "
                          f"({type(e).__name__}: {e}); structural pruning needs a traceable model (option: model)") from e


def save_structured(path: str | os.PathLike, model: nn.Module, *, metadata: dict[str, str] | None = None) -> None:
    """Write a pruned model (from `prune_structured`) as safetensors with its pruning history; atomic."""
    info = getattr(model, "shiftkit_structured", None)
    if info is None:
        raise ConfigError("save_structured needs a model returned by prune_structured (no pruning history)")
    meta = {META_KEY: json.dumps(info), "widths": json.dumps(widths(model)), **(metadata or {})}
    save_checkpoint(path, model, metadata=meta)


def load_structured(path: str | os.PathLike) -> nn.Module:
    """The pruned model of a `save_structured` file: the dense arch, the pruning history replayed, the tensors
    loaded and validated (shape, dtype, NaN/Inf) — in any process, no pickle."""
    meta = read_metadata(path)
    if META_KEY not in meta:
        raise CheckpointError(f"{path}: no {META_KEY!r} metadata; not a structurally pruned shiftkit checkpoint")
    info = loads_bounded(meta[META_KEY], f"{path}: {META_KEY!r} metadata", CheckpointError, max_bytes=16 << 20)
    history, shape = (info.get("history"), info.get("input_shape")) if isinstance(info, dict) else (None, None)
    if not isinstance(history, list):
        raise CheckpointError(f"{path}: unreadable {META_KEY!r} metadata (expected an object with a history list)")
    _check_input_shape(path, shape)
    model = model_from_checkpoint(path, pruned=True).eval()  # the dense arch; the history narrows it
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(shape))
    try:
        graph.load_pruning_history(history)
    except Exception as e:  # a history that does not fit this arch: name the file
        raise CheckpointError(f"{path}: pruning history does not fit arch {meta.get('arch')!r} ({e})") from e
    load_checkpoint(path, model)
    model.shiftkit_structured = info
    return model


def _check_input_shape(path: str | os.PathLike, shape: object) -> None:
    """The example input a file asks to trace with: [1, C, H, W] of positive ints, at most MAX_INPUT_VALUES values
    (a hostile [1, 3, 60000, 60000] would allocate 43 GB before the graph is built)."""
    if (not isinstance(shape, list) or len(shape) != 4 or shape[0] != 1
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)):
        raise CheckpointError(f"{path}: {META_KEY!r} metadata input_shape {str(shape)[:80]} is not [1, C, H, W] "
                              "of positive integers")
    if math.prod(shape) > MAX_INPUT_VALUES:
        raise CheckpointError(f"{path}: {META_KEY!r} metadata input_shape {shape} is {math.prod(shape):,} values, over "
                              f"the limit of {MAX_INPUT_VALUES:,} (shiftkit.prune.structured.MAX_INPUT_VALUES)")


def structured_prune_checkpoint(src: str | os.PathLike, out: str | os.PathLike, data: ArrayDataset,
                                cfg: StructuredConfig, *, train: ArrayDataset | None = None,
                                val: ArrayDataset | None = None, finetune: TrainConfig | None = None) -> StructuredResult:
    """Prune the model of a shiftkit checkpoint, optionally fine-tune it on `train` (best `val` epoch), write it:
    the `shiftkit prune --structured` core. `data` calibrates (importances, BN).

    Everything is checked, pruned and trained before `out` is written: on any error nothing is written.
    """
    model = model_from_checkpoint(src)
    load_checkpoint(src, model)
    result = prune_structured(model, data, cfg)
    if finetune is not None and train is not None:
        fit(result.model, train, val, finetune)
    save_structured(out, result.model, metadata={"pruned_from": str(src), "structured_config": json.dumps(asdict(cfg)),
                                                 "speedup": f"{result.speedup:.4f}"})
    return result
