"""The papers' larger architectures through timm (random init, no hub access).

MobileViT-XXS/XS (1.3M / 2.3M params), ResNet-50 (25.6M), EfficientNet-B1 (7.8M):
the GRASP paper's four architectures. Pretrained weights come from a file (`sources --base FILE`,
`train --init FILE`), never a download; `normalize=True` makes the model normalise its [0, 1] input with
the arch's pretrained_cfg mean / std, as the backbone's pretrained weights expect (training and evaluation).
"""
from __future__ import annotations

import timm
import torch
from torch import nn

from ._factory import register_model

__all__ = ["TIMM_ARCHS", "pretrained_cfg"]

TIMM_ARCHS = ("mobilevit_xxs", "mobilevit_xs", "resnet50", "efficientnet_b1")


def pretrained_cfg(arch: str) -> dict:
    """mean, std and input_size (C, H, W) of a timm arch's default pretrained weights (a local table, no download)."""
    cfg = timm.get_pretrained_cfg(arch)
    return {"mean": tuple(cfg.mean), "std": tuple(cfg.std), "input_size": tuple(cfg.input_size)}


def _normalize_input(model: nn.Module, arch: str, in_chans: int) -> None:
    cfg = pretrained_cfg(arch)
    mean, std = torch.tensor(cfg["mean"]), torch.tensor(cfg["std"])  # (3,)
    if in_chans != len(mean):  # grayscale into an RGB-pretrained stem: the channels' average
        mean, std = mean.mean().repeat(in_chans), std.mean().repeat(in_chans)
    # non-persistent: the state dict keeps timm's own keys, so hub / torchvision files still load
    model.register_buffer("input_mean", mean.view(1, -1, 1, 1), persistent=False)
    model.register_buffer("input_std", std.view(1, -1, 1, 1), persistent=False)
    model.register_forward_pre_hook(lambda m, args: ((args[0] - m.input_mean) / m.input_std, *args[1:]))


def _entry(timm_name: str):
    def build(num_classes: int = 10, in_chans: int = 3, normalize: bool = False, **kw) -> nn.Module:
        model = timm.create_model(timm_name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kw)
        if normalize:
            _normalize_input(model, timm_name, in_chans)
        return model

    build.__name__ = timm_name
    build.__doc__ = (f"timm {timm_name}, random init (one of the papers' larger architectures); "
                     "normalize=True: input normalised with its pretrained_cfg mean/std.")
    return register_model()(build)


for _name in TIMM_ARCHS:
    globals()[_name] = _entry(_name)
