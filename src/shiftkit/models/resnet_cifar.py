"""CIFAR ResNets (He et al. 2016, sec. 4.2): 3 stages of 2n basic blocks, widths 16/32/64.

Reference: Deep Residual Learning for Image Recognition, https://arxiv.org/abs/1512.03385
Shortcuts that change shape use a 1x1 conv + BN (option B), so every weight is a prunable module.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ._factory import register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3, *, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for b in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (b == 0 and stage > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register_model()
def resnet20(num_classes: int = 10, in_chans: int = 3, **kw) -> CifarResNet:
    """CIFAR ResNet-20 (3 stages x 3 basic blocks, about 0.27M params)."""
    return CifarResNet(20, num_classes, in_chans, **kw)


@register_model()
def resnet56(num_classes: int = 10, in_chans: int = 3, **kw) -> CifarResNet:
    """CIFAR ResNet-56 (3 stages x 9 basic blocks, about 0.85M params)."""
    return CifarResNet(56, num_classes, in_chans, **kw)
