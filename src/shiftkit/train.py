"""The one training loop: fit() with best-validation selection and fixed masks, evaluate().

Everything that trains in shiftkit (sources, transfer fine-tuning, pruned nets) goes
through `fit`, so budgets are comparable and seeding is identical across methods.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data.base import ArrayDataset
from .data.loader import augment_batch, check_augment
from .device import autocast, batches, check_precision, grad_scaler, model_device, to_device
from .errors import ConfigError, DivergedError
from .metrics import classification_metrics
from .progress import Progress

__all__ = ["TrainConfig", "FitResult", "fit", "evaluate", "evaluate_sets", "invalid_sets", "predict_logits", "iterate_batches", "apply_masks",
           "recalibrate_bn", "adapt_bn"]


# The float32 input of one training batch may take at most 4 GiB (a 4096-px RGB batch of 128 would be 25 GiB
# before the first forward); evaluation batches shrink to a quarter of it instead (results do not depend on them).
MAX_BATCH_BYTES = 4 << 30


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3            # AdamW default that trains the small nets from scratch in a few epochs
    weight_decay: float = 0.01  # GRASP reference fine-tuning uses AdamW wd 0.01
    optimizer: str = "adamw"    # "adamw" | "sgd"
    momentum: float = 0.9       # SGD only
    schedule: str = "cosine"    # "cosine" | "constant"
    select: str = "best_val"    # "best_val": keep the best-validation epoch; "last": keep the last
    seed: int = 0
    progress: bool = True       # a bar on a terminal, a line per epoch otherwise (shiftkit.progress)
    memory_format: str = "auto"  # "auto": channels_last for conv nets (measured 1.06-1.35x faster on this CPU); "contiguous"
    precision: str = "fp32"     # "bf16" | "fp16": autocast forward passes (fp16 with loss scaling); fp32 decisions
    on_diverge: str = "error"    # NaN/Inf loss or weights: "error" (DivergedError) or "keep_best" (the best finite
                                 # validation epoch so far, with a warning); never silently a NaN model
    augment: str = "none"       # training batches only (shiftkit.data.loader.AUGMENTS); evaluation never augments

    def __post_init__(self) -> None:
        checks = {"optimizer": ("adamw", "sgd"), "schedule": ("cosine", "constant"), "select": ("best_val", "last"),
                  "memory_format": ("auto", "channels_last", "contiguous"), "on_diverge": ("error", "keep_best")}
        for key, valid in checks.items():
            if getattr(self, key) not in valid:
                raise ConfigError(f"TrainConfig.{key}={getattr(self, key)!r}; valid: {', '.join(valid)}")
        check_precision(self.precision)
        check_augment(self.augment)
        if (self.epochs < 0 or self.batch_size < 1 or not 0 < self.lr < math.inf  # NaN fails every comparison
                or not 0 <= self.weight_decay < math.inf or not 0 <= self.momentum < math.inf):
            raise ConfigError(f"TrainConfig needs epochs >= 0, batch_size >= 1, finite lr > 0, weight_decay and "
                              f"momentum >= 0; got {self}")


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one dict per epoch: train_loss, val_loss, val_accuracy
    best_epoch: int = -1                               # 0-based; -1 when no epoch ran
    best_val_accuracy: float = float("nan")
    last_val_accuracy: float = float("nan")


def iterate_batches(ds: ArrayDataset, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                    device: torch.device | None = None, augment: str = "none") -> Iterator[tuple[Tensor, Tensor]]:
    """Float batches straight from the images (no per-item DataLoader overhead), on `device`
    (None: where the data is). The order is drawn on the host, so it is the same on every device.
    `augment` (training only) draws its crops and flips from `generator` after the order."""
    n = len(ds)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for x, y in batches(ds.images, ds.labels, batch_size, order=order, device=device):
        yield (x if augment == "none" else augment_batch(x, augment, generator)), y


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Zero every masked-out weight (mask False = pruned). Names are model.named_parameters() keys."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        p = params[name]
        p.mul_(to_device(mask, p.device).to(p.dtype))


@torch.no_grad()
def predict_logits(model: nn.Module, ds: ArrayDataset, *, batch_size: int = 512) -> Tensor:
    """Logits of every image, computed where the model is, returned on the host (fp32)."""
    was_training = model.training
    model.eval()
    dev = model_device(model)
    batch_size = max(1, min(batch_size, (MAX_BATCH_BYTES // 4) // _image_bytes(ds)))  # a quarter of the cap
    out = torch.cat([model(x).float() for x, _ in iterate_batches(ds, batch_size, device=dev)]).cpu() if len(ds) \
        else torch.empty(0)
    model.train(was_training)
    return out


@torch.no_grad()
def recalibrate_bn(model: nn.Module, ds: ArrayDataset, *, batch_size: int = 256) -> int:
    """Re-estimate every BatchNorm's running mean/var on `ds` (labels unused); weights are untouched.

    After pruning, the stored statistics describe the dense net; on a shifted set they describe the
    training distribution (re-estimating them there is AdaBN). Uses the exact average over `ds`
    (momentum=None), whatever the batch split. Returns the number of BN layers recalibrated.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or not len(ds):
        return 0
    saved = [(m, m.momentum, m.training) for m in bns]
    was_training = model.training
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = the mean over all batches
        m.train()
    try:
        for x, _ in iterate_batches(ds, batch_size, device=model_device(model)):
            model(x)
    finally:
        for m, momentum, training in saved:
            m.momentum = momentum
            m.train(training)
        model.train(was_training)
    return len(bns)


def adapt_bn(model: nn.Module, ds: ArrayDataset) -> nn.Module:
    """AdaBN: a copy of `model` whose BN statistics are re-estimated on `ds` (the model is left as it is)."""
    adapted = copy.deepcopy(model)
    recalibrate_bn(adapted, ds)
    return adapted


def evaluate(model: nn.Module, ds: ArrayDataset, *, batch_size: int = 512) -> dict[str, float]:
    """accuracy, macro_f1, auroc, loss and n on a dataset (eval mode, no grad); when some logits are NaN/Inf
    (finite but huge weights) also valid=False and nonfinite=<predictions affected>: the scores mean nothing."""
    logits = predict_logits(model, ds, batch_size=batch_size)
    metrics = classification_metrics(logits, ds.labels)
    metrics["loss"] = F.cross_entropy(logits, ds.labels).item()
    metrics["n"] = len(ds)
    bad = int((~logits.isfinite()).flatten(1).any(1).sum()) if logits.ndim > 1 else 0
    if bad:  # keys added only then: a normal result keeps its bytes
        metrics.update(valid=False, nonfinite=bad)
    return metrics


def invalid_sets(results: dict[str, Any]) -> list[str]:
    """Names of the sets whose `evaluate` metrics are marked invalid (NaN/Inf logits)."""
    return [name for name, m in results.items() if isinstance(m, dict) and m.get("valid") is False]


def evaluate_sets(model: nn.Module, sets: dict[str, ArrayDataset], *, adabn: bool = False,
                  score: Callable[[nn.Module, ArrayDataset], Any] = evaluate) -> dict[str, Any]:
    """`score(model, set)` for every named set (e.g. the shifted test sets); adabn=True scores a fresh AdaBN
    copy per set, so BN statistics never leak across sets and the model is left unchanged."""
    return {name: score(adapt_bn(model, ds) if adabn else model, ds) for name, ds in sets.items()}


def _memory_format(model: nn.Module, cfg: TrainConfig) -> torch.memory_format:
    """channels_last where it was measured faster (every conv net of the registry, CPU, batch 128:
    benchmarks/RESULTS.md "Training loop"); contiguous for nets without convolutions."""
    if cfg.memory_format == "contiguous" or (cfg.memory_format == "auto" and (
            not any(isinstance(m, nn.Conv2d) for m in model.modules())
            or any(t.ndim > 4 for t in model.state_dict().values()))):  # channels_last is 4-D only (no Conv3d)
        return torch.contiguous_format
    return torch.channels_last


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def fit(model: nn.Module, train: ArrayDataset, val: ArrayDataset | None = None, cfg: TrainConfig = TrainConfig(), *,
        masks: dict[str, Tensor] | None = None, on_epoch: Callable[[int, dict], None] | None = None) -> FitResult:
    """Train `model` in place; with cfg.select="best_val" it ends holding its best-validation epoch.

    Args:
        masks: {parameter name: bool mask}; pruned weights are zeroed before training and after
            every optimizer step, so they stay exactly zero (momentum cannot revive them).
        on_epoch: called with (epoch, record) after every epoch (logging, checkpoints).
    """
    if cfg.epochs == 0:  # nothing to train: skip the layout round trip and the optimizer (a GRASP stage's cost)
        if masks:
            apply_masks(model, masks)
        model.eval()
        return FitResult()
    batch_bytes = min(cfg.batch_size, len(train)) * _image_bytes(train)
    if batch_bytes > MAX_BATCH_BYTES:  # refused before anything is allocated (a config's size x batch_size)
        raise ConfigError(f"budget.batch_size={cfg.batch_size} of {'x'.join(map(str, train.shape))} images is "
                          f"{batch_bytes / 2**30:.1f} GiB of float32 a batch, over {MAX_BATCH_BYTES / 2**30:g} GiB "
                          "(shiftkit.train.MAX_BATCH_BYTES): lower budget.batch_size or the image size")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    dev = model_device(model)
    fmt = _memory_format(model, cfg)
    model.to(memory_format=fmt)  # in place: the optimizer must see the converted parameters
    opt = _optimizer(model, cfg)
    steps = cfg.epochs * -(-len(train) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1)) if cfg.schedule == "cosine" else None
    scaler = grad_scaler(dev, cfg.precision)
    if masks:
        masks = {k: to_device(m, dev) for k, m in masks.items()}  # once, not a host copy per step
        apply_masks(model, masks)
    result, best_state = FitResult(), None
    start_scale = _weight_scale(model)  # a tensor: read only if the run diverges (no host sync otherwise)
    bar = Progress(total=steps, desc="fit", enabled=cfg.progress)
    for epoch in range(cfg.epochs):
        model.train()
        loss_sum = torch.zeros((), device=dev)  # summed on the device: no host sync inside the epoch
        for x, y in iterate_batches(train, cfg.batch_size, shuffle=True, generator=gen, device=dev, augment=cfg.augment):
            with autocast(dev, cfg.precision):
                logits = model(x.contiguous(memory_format=fmt))
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if sched:
                sched.step()
            if masks:
                apply_masks(model, masks)
            loss_sum += loss.detach() * len(y)
            bar.update()
        record = {"epoch": epoch, "train_loss": loss_sum.item() / max(len(train), 1)}
        bad = _divergence(model, record["train_loss"])
        m = evaluate(model, val) if val is not None and len(val) and not bad else None
        bad = bad or (f"validation loss is {m['loss']}" if m is not None and not math.isfinite(m["loss"]) else "")
        if bad:  # once per epoch: the loss sum is a tensor, so a per-step check would sync every step
            _diverged(model, cfg, epoch, f"{bad} (lr {cfg.lr:g}, largest starting weight {float(start_scale):.3g})",
                      result, best_state)
            break
        if m is not None:
            record.update(val_loss=m["loss"], val_accuracy=m["accuracy"])
            result.last_val_accuracy = m["accuracy"]
            if not m["accuracy"] <= result.best_val_accuracy:  # first epoch (nan) or a strict improvement
                result.best_epoch, result.best_val_accuracy = epoch, m["accuracy"]
                if cfg.select == "best_val" or cfg.on_diverge == "keep_best":
                    best_state = copy.deepcopy(model.state_dict())
        result.history.append(record)
        val_msg = f" val_loss {record['val_loss']:.4f} val_acc {record['val_accuracy']:.4f}" if "val_loss" in record else ""
        bar.milestone(f"epoch {epoch + 1}/{cfg.epochs} train_loss {record['train_loss']:.4f}{val_msg}")
        if on_epoch:
            on_epoch(epoch, record)
    bar.close()
    if best_state is not None and cfg.select == "best_val" and result.best_epoch != len(result.history) - 1:
        model.load_state_dict(best_state)
    model.to(memory_format=torch.contiguous_format)  # plain layout again: safetensors, exports, other code
    model.eval()
    return result


def _divergence(model: nn.Module, train_loss: float) -> str:
    """What is non-finite after an epoch ('' when nothing): the train loss or a weight / buffer (one host sync).
    fit also checks the validation loss (finite weights whose logits overflow)."""
    if not math.isfinite(train_loss):
        return f"train loss is {train_loss}"
    tensors = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    finite = torch.stack([v.isfinite().all() for v in tensors.values()]) if tensors else torch.ones(1, dtype=torch.bool)
    if bool(finite.all()):
        return ""
    return f"tensor {list(tensors)[int((~finite).nonzero()[0])]!r} holds NaN/Inf"


def _image_bytes(ds: ArrayDataset) -> int:
    """float32 bytes of one image of `ds` (C x H x W x 4)."""
    return 4 * math.prod(ds.shape)


def _weight_scale(model: nn.Module) -> Tensor:
    """The largest |weight| of a model, as a 0-d tensor (no host sync until read)."""
    params = [p.detach().abs().amax().float() for p in model.parameters() if p.numel()]
    return torch.stack(params).amax() if params else torch.zeros(())


def _diverged(model: nn.Module, cfg: TrainConfig, epoch: int, what: str, result: FitResult,
              best_state: dict | None) -> None:
    """Stop a diverged run: DivergedError naming the epoch, or (on_diverge="keep_best") back to the best finite
    validation epoch with a warning. Either way the model never ends holding NaN/Inf."""
    where = f"training diverged in epoch {epoch + 1}/{cfg.epochs}: {what}"
    if cfg.on_diverge == "keep_best" and best_state is not None:
        model.load_state_dict(best_state)
        warnings.warn(f"{where}; kept epoch {result.best_epoch + 1} (best finite validation accuracy "
                      f"{result.best_val_accuracy:.4f}) and stopped", stacklevel=3)
        return
    hint = "" if cfg.on_diverge == "error" else "; no finite validated epoch to keep"
    raise DivergedError(f"{where}{hint}: lower the learning rate (budget.lr / --lr), or check what made huge starting "
                        "weights (e.g. a merge's scale); the diverged weights are not saved")
