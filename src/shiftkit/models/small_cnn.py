"""A small conv net for 28x28 / 32x32 inputs: the default for DriftFMNIST (about 100k params)."""
from __future__ import annotations

from torch import nn

from ._factory import register_model


def _block(cin: int, cout: int, norm: bool) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=not norm), *( [nn.BatchNorm2d(cout)] if norm else []), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, *, width: int = 32, norm: bool = True) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_block(in_chans, w, norm), nn.MaxPool2d(2),
            *_block(w, 2 * w, norm), nn.MaxPool2d(2),
            *_block(2 * w, 2 * w, norm),
            nn.AdaptiveAvgPool2d(3),  # 28 -> 7 -> 3x3 keeps some layout for any input size
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * w * 9, 2 * w), nn.ReLU(inplace=True), nn.Linear(2 * w, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model()
def small_cnn(num_classes: int = 10, in_chans: int = 1, **kw) -> SmallCNN:
    """Small conv net with BatchNorm (about 100k params): the DriftFMNIST default."""
    return SmallCNN(num_classes, in_chans, **kw)


@register_model()
def small_cnn_nobn(num_classes: int = 10, in_chans: int = 1, **kw) -> SmallCNN:
    """small_cnn without BatchNorm (the pruning prototype's net)."""
    return SmallCNN(num_classes, in_chans, norm=False, **kw)
