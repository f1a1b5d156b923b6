"""CIFAR-style VGG (Simonyan & Zisserman 2015) with a single linear classifier.

Reference: Very Deep Convolutional Networks, https://arxiv.org/abs/1409.1556
`width` scales every conv (0.25 gives a CPU-sized VGG); pools use ceil_mode so 28x28 inputs work.
"""
from __future__ import annotations

from torch import nn

from ._factory import register_model

_CFGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, in_chans: int = 3, *, norm: bool = True, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for v in _CFGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            cout = max(1, int(v * width))
            layers.append(nn.Conv2d(cin, cout, 3, padding=1, bias=not norm))
            if norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU(inplace=True))
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def _entry(depth: int, norm: bool):
    def build(num_classes: int = 10, in_chans: int = 3, **kw) -> VGG:
        return VGG(depth, num_classes, in_chans, norm=norm, **kw)

    build.__name__ = f"vgg{depth}{'_bn' if norm else ''}"
    build.__doc__ = f"CIFAR VGG-{depth}{' with BatchNorm' if norm else ''}, one linear classifier."
    return register_model()(build)


vgg11 = _entry(11, norm=False)
vgg11_bn = _entry(11, norm=True)
vgg16 = _entry(16, norm=False)
vgg16_bn = _entry(16, norm=True)
