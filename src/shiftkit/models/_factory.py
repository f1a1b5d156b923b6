"""The model registry. `create(name, ...)` is the one path every model is built through."""
from __future__ import annotations

from torch import nn

from .._registry import Registry

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
    model = MODELS.create(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
    model.shiftkit_arch = name
    model.shiftkit_config = {"num_classes": num_classes, "in_chans": in_chans, **kwargs}
    return model


def names() -> list[str]:
    return MODELS.names()
