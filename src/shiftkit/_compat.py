"""Does a model fit a dataset? The one check where a checkpoint meets data (eval, prune, transfer, run).

A 3-class model scored on 10-class data gives silent garbage (labels past its outputs) or a deep torch
traceback; an RGB model on grayscale images fails in its first convolution. Both are refused up front
with one line naming the model's classes / channels (its checkpoint config) and the data's.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .errors import ConfigError

__all__ = ["model_io", "check_fits", "check_dataset", "check_runs"]


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


def check_dataset(model: nn.Module, ds, *, data_name: str, exact: bool = True) -> None:
    """check_fits against a dataset; exact=False for a user's data, whose class list may be only the labels seen."""
    classes = len(ds.classes) if exact else (int(ds.labels.max()) + 1 if len(ds) else 0)
    name = getattr(model, "shiftkit_checkpoint", None) or repr(getattr(model, "shiftkit_arch", type(model).__name__))
    check_fits(model, classes, ds.shape[0], model_name=name, data_name=data_name, exact=exact)


@torch.no_grad()
def check_runs(model: nn.Module, example: Tensor, *, model_name: str, data_name: str) -> None:
    """One forward pass on one image (eval mode, restored): images too small for the net's pooling (an image
    size of 1) fail here with one line naming the data's image size, not in the middle of training."""
    from .data.base import ArrayDataset

    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model(ArrayDataset.to_float(example[:1]).to(device))
    except (RuntimeError, ValueError, IndexError) as e:  # what a forward raises on an input it cannot take
        raise ConfigError(f"model {model_name} cannot run on data {data_name}'s {tuple(example.shape[1:])} images "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                          "use larger images (e.g. data.options.size)") from None
    finally:
        model.train(was_training)
