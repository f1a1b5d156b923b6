"""Training augmentation (torchvision.transforms.v2), applied by `train.iterate_batches` to training batches only.

Batches themselves index the uint8 images directly (an in-memory tensor or a memory-mapped cache), so the
un-augmented path has no per-item Python. Augmentation draws every random number from the caller's
generator: the same seed gives the same crops and flips, and `augment="none"` draws nothing extra, so
runs without augmentation keep their exact numbers. Normalisation for pretrained backbones is not an
augmentation: it belongs to the model (timm archs with `normalize=True`), so evaluation sees it too.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = ["AUGMENTS", "augment_batch", "check_augment"]

# name -> what it does to a training batch (images keep their size)
AUGMENTS = {
    "none": "no augmentation (the default; every existing benchmark)",
    "flip": "horizontal flip with probability 1/2",
    "crop_flip": "random resized crop (scale 0.25-1, aspect 3/4-4/3, back to the input size) + horizontal flip",
}
_SCALE = (0.25, 1.0)  # torchvision's default 0.08 destroys 32-64 px images; 0.25 keeps the object in view
_RATIO = (3 / 4, 4 / 3)


def check_augment(name: str) -> str:
    if name not in AUGMENTS:
        raise ConfigError(f"augment={name!r}; valid: {', '.join(AUGMENTS)}")
    return name


def augment_batch(x: Tensor, name: str, generator: torch.Generator | None = None) -> Tensor:
    """A training batch (B, C, H, W) augmented by the named set, per image, from `generator`'s draws."""
    check_augment(name)
    if name == "none" or not len(x):
        return x
    from torchvision.transforms.v2 import functional as TF  # lazy: only augmenting runs pay its import

    if name == "crop_flip":
        x = _random_resized_crop(x, generator)
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)  # (B,), drawn on the host generator
    if flip.any():
        x = x.clone() if name == "flip" else x
        x[flip] = TF.horizontal_flip(x[flip])
    return x


def _random_resized_crop(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """torchvision's RandomResizedCrop, parameters drawn from `generator` (the global RNG stays untouched)."""
    from torchvision.transforms.v2 import functional as TF

    b, _, h, w = x.shape
    u = torch.rand(b, 4, generator=generator, dtype=torch.float64)  # scale, log-ratio, top, left
    area = (_SCALE[0] + (_SCALE[1] - _SCALE[0]) * u[:, 0]) * h * w
    ratio = torch.exp(math.log(_RATIO[0]) + (math.log(_RATIO[1]) - math.log(_RATIO[0])) * u[:, 1])
    cw = torch.sqrt(area * ratio).round().clamp(1, w).long()
    ch = torch.sqrt(area / ratio).round().clamp(1, h).long()
    top = (u[:, 2] * (h - ch + 1)).floor().long()
    left = (u[:, 3] * (w - cw + 1)).floor().long()
    out = torch.empty_like(x)
    for i in range(b):  # one crop per image: only when augmenting
        out[i] = TF.resized_crop(x[i], int(top[i]), int(left[i]), int(ch[i]), int(cw[i]), [h, w], antialias=True)
    return out
