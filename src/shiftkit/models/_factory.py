"""The model registry. `create(name, ...)` is the one path every model is built through."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .._registry import Registry
from ..errors import ConfigError

# The most parameters a model may have: 2**28 (268M) float32 weights = 1 GiB, 4 GiB with gradients and AdamW
# state. The largest registry model (resnet50) has 25M; `model.kwargs.width=1e8` asks for billions.
MAX_PARAMS = 2**28

MODELS: Registry[nn.Module] = Registry("model")
register_model = MODELS.register


def create(name: str, *, num_classes: int = 10, in_chans: int = 1, **kwargs) -> nn.Module:
    """Build a registered model with random init and tag it with its arch and config.

    Args:
        name: registry name (see `names()`).
        num_classes: output classes.
        in_chans: input channels (1 for Fashion-MNIST, 3 for CIFAR / Yearbook / CLEAR).
        **kwargs: family options (e.g. `width`, `norm`).
    """
    for key, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model {name!r}: {key}={value!r} must be a positive integer")
    if torch.get_default_device().type != "meta" and (kwargs or num_classes > 1000 or in_chans > 4):
        _check_size(name, num_classes, in_chans, kwargs)  # only what a config can push past the defaults
    model = MODELS.create(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    model.shiftkit_arch = name
    model.shiftkit_config = {"num_classes": num_classes, "in_chans": in_chans, **kwargs}
    return model


def names() -> list[str]:
    return MODELS.names()


def _check_size(name: str, num_classes: int, in_chans: int, kwargs: dict) -> None:
    """Build the model on the meta device (no memory) first: refuse an empty layer (width 0) or more than
    MAX_PARAMS parameters (width 1e8) with one line naming the options, before anything is allocated."""
    shown = {"num_classes": num_classes, "in_chans": in_chans, **kwargs}
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "initializing zero-element tensors": refused below, by name
            probe = MODELS.create(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except (ValueError, RuntimeError, OverflowError, ZeroDivisionError) as e:  # TypeError: the caller's to name
        raise ConfigError(f"model {name!r} with {shown} cannot be built ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    params = dict(probe.named_parameters())
    empty = next((k for k, p in params.items() if p.numel() == 0), None)
    if empty is not None:
        raise ConfigError(f"model {name!r} with {shown} has an empty layer {empty!r} (shape "
                          f"{tuple(params[empty].shape)}): a width / size option is too small")
    total = sum(p.numel() for p in params.values())
    if total > MAX_PARAMS:
        raise ConfigError(f"model {name!r} with {shown} would have {total:,} parameters ({total * 4 / 2**30:.1f} GiB "
                          f"of float32), over the limit of {MAX_PARAMS:,} (shiftkit.models.MAX_PARAMS)")
