"""The papers' larger architectures through timm (random init, no hub access).

MobileViT-XXS/XS (1.3M / 2.3M params), ResNet-50 (25.6M), EfficientNet-B1 (7.8M):
the GRASP paper's four architectures.
"""
from __future__ import annotations

import timm
from torch import nn

from ._factory import register_model

TIMM_ARCHS = ("mobilevit_xxs", "mobilevit_xs", "resnet50", "efficientnet_b1")


def _entry(timm_name: str):
    def build(num_classes: int = 10, in_chans: int = 3, **kw) -> nn.Module:
        return timm.create_model(timm_name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kw)

    build.__name__ = timm_name
    build.__doc__ = f"timm {timm_name}, random init (one of the papers' larger architectures)."
    return register_model()(build)


for _name in TIMM_ARCHS:
    globals()[_name] = _entry(_name)
