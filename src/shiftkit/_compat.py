"""Does a model fit a dataset? The one check where a checkpoint meets data (eval, prune, transfer, run).

A 3-class model scored on 10-class data gives silent garbage (labels past its outputs) or a deep torch
traceback; an RGB model on grayscale images fails in its first convolution. Both are refused up front
with one line naming the model's classes / channels (its checkpoint config) and the data's.
"""
from __future__ import annotations

from torch import nn

from .errors import ConfigError

__all__ = ["model_io", "check_fits"]


def model_io(model: nn.Module) -> tuple[int | None, int | None]:
    """(classes, input channels) of a model: its shiftkit config, else its last Linear / first Conv2d."""
    cfg = getattr(model, "shiftkit_config", None) or {}
    classes, chans = cfg.get("num_classes"), cfg.get("in_chans")
    if classes is None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        classes = linears[-1].out_features if linears else None
    if chans is None:
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        chans = convs[0].in_channels if convs else None
    return (int(classes) if classes is not None else None), (int(chans) if chans is not None else None)


def check_fits(model: nn.Module, classes: int, channels: int, *, model_name: str, data_name: str,
               exact: bool = True) -> None:
    """ConfigError naming both sides when the model's class count or input channels differ from the data's.
    exact=False: `classes` is only the labels seen (a user's set may lack the last class): fewer is fine."""
    m_classes, m_chans = model_io(model)
    wrong = []
    if m_classes is not None and (m_classes != classes if exact else m_classes < classes):
        wrong.append(f"{m_classes} classes but the data has {classes}")
    if m_chans is not None and m_chans != channels:
        wrong.append(f"{m_chans} input channel(s) but the data's images have {channels}")
    if wrong:
        raise ConfigError(f"model {model_name} does not fit data {data_name}: the model has {' and '.join(wrong)} "
                          "(use a model built for this data, or data with its classes / channels)")
