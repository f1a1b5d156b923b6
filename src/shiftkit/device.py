"""Where tensors live and how they move: the one module that knows about devices and precision.

The rule everywhere else: **data follows the model**. Code that runs a model asks `model_device(model)` and
moves its batches with `batches` / `to_device`; nothing else calls `.to(device)`. The CLI, the YAML
(`device:`, `precision:`) and the Python API (`device=`) resolve a setting once with `resolve_device` and
`place` the model; checkpoints are always written from CPU copies (`checkpoints.save_checkpoint`) and load
onto whatever device the model is on (`Tensor.copy_` crosses devices).

    dev = resolve_device("auto")          # CUDA when available, else MPS, else CPU
    net = place(models.create("resnet20", num_classes=10), dev)
    for x, y in batches(ds, 128, device=model_device(net)):   # resident on the device when it fits
        with autocast(dev, "bf16"):
            loss = F.cross_entropy(net(x), y)
"""
from __future__ import annotations

import contextlib
import os
import re
import weakref
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from .errors import ConfigError

__all__ = ["DEVICE_CHOICES", "PRECISIONS", "check_device_spec", "resolve_device", "model_device", "place", "to_device", "batches",
           "autocast", "grad_scaler", "check_precision", "make_deterministic", "provenance", "max_memory_allocated",
           "reset_peak_memory", "synchronize"]

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N | mps"
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")
RESIDENT_FRACTION = 0.25  # a dataset moves to the device once when it takes at most this share of free memory


def check_device_spec(spec: str | torch.device | None) -> str:
    """The normalised spelling of a device setting (syntax only: a config names a GPU it may run on later)."""
    text = str(spec) if spec is not None else "auto"
    norm = text.strip().lower()
    if not _SPEC.match(norm):
        raise ConfigError(f"device={text[:80]!r}; valid: {DEVICE_CHOICES}")
    return norm


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """"auto" -> CUDA when available, else MPS, else CPU; an explicit device that is not there is one line."""
    spec = check_device_spec(spec)
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"device={spec!r}: {built}; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device={spec!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        dev = torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)  # as tensors say
    if dev.type == "mps" and not _mps_available():
        raise ConfigError(f"device={spec!r}: MPS is not available on this machine; use --device cpu (or auto)")
    return dev


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def model_device(model: nn.Module) -> torch.device:
    """Where a model's tensors live (its first parameter or buffer); CPU for a model without any."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def place(model: nn.Module, device: str | torch.device | None) -> nn.Module:
    """The model moved (in place) to a device setting; None leaves it where it is."""
    if device is None:
        return model
    return model.to(resolve_device(device) if not isinstance(device, torch.device) else device)


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """x on `device`; a pinned host tensor is copied without blocking the host."""
    if x.device == device:
        return x
    return x.to(device, non_blocking=x.is_pinned())


# ---- data ---------------------------------------------------------------------------------------------
# (images, labels) already on a device, by the identity of the host tensors: a dataset that fits moves once per
# device, not once per epoch. Weak references: the copy goes when the host dataset goes.
_RESIDENT: dict[tuple[int, str], tuple[weakref.ref, Tensor, Tensor]] = {}


def _fits(nbytes: int, device: torch.device) -> bool:
    if device.type != "cuda":
        return device.type == "mps"  # unified memory: the copy costs the host nothing extra
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= RESIDENT_FRACTION * free


def _resident(images: Tensor, labels: Tensor, device: torch.device) -> tuple[Tensor, Tensor] | None:
    key = (id(images), str(device))
    hit = _RESIDENT.get(key)
    if hit is not None and hit[0]() is images:
        return hit[1], hit[2]
    if not _fits(images.nbytes + labels.nbytes, device):
        return None
    moved = (images.to(device), labels.to(device))
    _RESIDENT[key] = (weakref.ref(images, lambda _r, k=key: _RESIDENT.pop(k, None)), *moved)
    return moved


def batches(images: Tensor, labels: Tensor, batch_size: int, *, order: Tensor, device: torch.device | None = None
            ) -> Iterator[tuple[Tensor, Tensor]]:
    """(float images in [0, 1], labels) batches in `order`, on `device` (None: where the data is).

    On an accelerator, data that fits is moved there once and indexed there; otherwise each batch is gathered
    on the host, pinned and copied without blocking. uint8 images become float on the device (4x less to copy).
    """
    from .data.base import ArrayDataset

    device = images.device if device is None else device
    if device.type == "cpu" or images.device == device:
        for idx in order.split(batch_size):
            yield ArrayDataset.to_float(images[idx]), labels[idx]
        return
    held = _resident(images, labels, device)
    if held is not None:
        order = order.to(device)
        for idx in order.split(batch_size):
            yield ArrayDataset.to_float(held[0][idx]), held[1][idx]
        return
    pin = device.type == "cuda"
    for idx in order.split(batch_size):
        x, y = images[idx], labels[idx]
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        yield ArrayDataset.to_float(to_device(x, device)), to_device(y, device)


# ---- precision ------------------------------------------------------------------------------------------
def check_precision(precision: str, device: torch.device | None = None) -> str:
    """A precision setting, checked (with a device: one it can run on)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device is not None and device.type == "cpu":
        raise ConfigError("precision='fp16' needs a GPU (CPU autocast supports bf16); use bf16 or fp32")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision autocast for the forward pass (a no-op for fp32). Losses, optimizer state, BN statistics
    and every decision (GRASP cosines, connectivity moments, soup acceptance) stay in fp32."""
    if check_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> "torch.amp.GradScaler":
    """Loss scaling for fp16 (gradients would underflow without it); disabled (a pass-through) otherwise."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


# ---- reproducibility and provenance --------------------------------------------------------------------
def make_deterministic(device: torch.device) -> dict[str, Any]:
    """Ask torch for deterministic kernels where it has them (warn, not fail, where it has none) and say what
    was asked. CPU runs are deterministic already: nothing changes there."""
    if device.type != "cuda":
        return {"deterministic": True, "note": "CPU kernels are deterministic for a fixed thread count"}
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS reproducibility (read at handle creation)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    return {"deterministic": True, "note": "torch.use_deterministic_algorithms(warn_only=True): ops without a "
                                           "deterministic CUDA kernel warn and stay nondeterministic"}


def provenance(device: torch.device, precision: str = "fp32") -> dict[str, Any]:
    """What a result records about where it ran (no timing, no host name: the same run gives the same bytes)."""
    rec: dict[str, Any] = {"device": device.type, "precision": precision}
    if device.type == "cuda":
        rec.update(device_name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   deterministic=torch.are_deterministic_algorithms_enabled())
    return rec


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timings on a GPU measure nothing without it); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def max_memory_allocated(device: torch.device) -> int | None:
    """Peak bytes allocated by torch on an accelerator since the last reset; None on the CPU."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))
