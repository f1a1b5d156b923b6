"""DriftFMNIST (the embedded default benchmark) and corruption test sets.

Fashion-MNIST (train + test, 70k images) is shuffled once and cut into T disjoint
"temporal" bins; bin t is transformed by a drift whose strength grows with t —
rotation (as Rotating MNIST), contrast/brightness fading, blur and sensor noise
(as the Portraits/Yearbook drift). Everything is a pure function of the seed.

Corruptions follow Hendrycks & Dietterich (ImageNet-C / CIFAR-10-C,
https://arxiv.org/abs/1903.12261): named corruptions at severities 1..5.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from ..errors import ConfigError
from .base import ArrayDataset
from .domains import Domain, split_domain
from .idx import load_fashion_mnist

__all__ = ["DriftSpec", "apply_drift", "temporal_specs", "complementary_specs", "drift_fmnist",
           "CORRUPTIONS", "corrupt", "corruption_sets"]


@dataclass(frozen=True)
class DriftSpec:
    """One bin's drift. Zero everywhere is the clean distribution."""

    rotation: float = 0.0    # max |angle| in degrees; each image draws from [rotation/2, rotation]
    contrast: float = 0.0    # 0..1: fraction of contrast removed
    brightness: float = 0.0  # added to every pixel (after contrast)
    blur: float = 0.0        # Gaussian sigma in pixels
    noise: float = 0.0       # std of additive Gaussian noise


def temporal_specs(bins: int = 8, *, max_rotation: float = 60.0) -> list[DriftSpec]:
    """All drift kinds growing together with the bin index (bin 0 is clean)."""
    out = []
    for t in range(bins):
        s = t / max(bins - 1, 1)
        out.append(DriftSpec(rotation=max_rotation * s, contrast=0.4 * s, brightness=0.1 * s, blur=0.8 * s, noise=0.12 * s))
    return out


def complementary_specs() -> list[DriftSpec]:
    """Sources that drift in different kinds, and a last bin (the target) that combines them.

    Each source knows one drift well; no single source matches the target, so a merge that
    takes the right parts of several sources can win.
    """
    return [
        DriftSpec(),
        DriftSpec(rotation=50.0),
        DriftSpec(contrast=0.6, brightness=0.2),
        DriftSpec(noise=0.3),
        DriftSpec(blur=1.5),
        DriftSpec(rotation=50.0, contrast=0.6, brightness=0.2, noise=0.3, blur=1.5),
    ]


def _warp(x: Tensor, theta: Tensor, displacement: Tensor | None = None) -> Tensor:
    """Batched affine (+ optional dense displacement) warp with bilinear sampling."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, H, W, 2)
    if displacement is not None:
        grid = grid + displacement
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _rotate(x: Tensor, degrees: Tensor) -> Tensor:
    a = degrees * math.pi / 180
    cos, sin, zero = a.cos(), a.sin(), torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (N, 2, 3)
    return _warp(x, theta)


def _blur(x: Tensor, sigma: float) -> Tensor:
    if sigma <= 0:
        return x
    k = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma])


def apply_drift(x: Tensor, spec: DriftSpec, generator: torch.Generator) -> Tensor:
    """Apply one bin's drift to float images (N, C, H, W) in [0, 1]."""
    n = len(x)
    if spec.rotation:
        sign = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1
        mag = spec.rotation * (0.5 + 0.5 * torch.rand(n, generator=generator))
        x = _rotate(x, sign * mag)
    if spec.contrast or spec.brightness:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = mean + (1 - spec.contrast) * (x - mean) + spec.brightness
    x = _blur(x, spec.blur)
    if spec.noise:
        x = x + spec.noise * torch.randn(x.shape, generator=generator)
    return x.clamp_(0, 1)


def drift_fmnist(root=None, *, bins: int = 8, kind: str = "temporal", seed: int = 0, split_seed: int = 42) -> list[Domain]:
    """DriftFMNIST: Fashion-MNIST cut into disjoint bins with growing drift, each split 80/10/10.

    Args:
        root: Fashion-MNIST IDX folder (default: $SHIFTKIT_DATA or Debian's path).
        bins: number of temporal bins T (kind="temporal"); "complementary" has 6.
        kind: "temporal" (all drifts grow with t) or "complementary" (see `complementary_specs`).
        seed: drives the bin assignment and the drift randomness.
        split_seed: drives the train/val/test split inside each bin (reference: 42).
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"driftfmnist: bins={bins!r} must be an integer >= 1 (data.options.bins)")
    specs = {"temporal": lambda: temporal_specs(bins), "complementary": complementary_specs}
    if kind not in specs:
        raise ConfigError(f"unknown drift kind {kind!r}; valid: {', '.join(specs)}")
    spec_list = specs[kind]()
    train, test = load_fashion_mnist(root, train=True), load_fashion_mnist(root, train=False)
    images = torch.cat([train.images, test.images])
    labels = torch.cat([train.labels, test.labels])
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    domains = []
    for t, (idx, spec) in enumerate(zip(order.chunk(len(spec_list)), spec_list)):
        x = apply_drift(ArrayDataset.to_float(images[idx]), spec, g)
        ds = ArrayDataset(x, labels[idx], train.classes, {"bin": t, "drift": asdict(spec)})
        domains.append(split_domain(f"bin{t}", ds, seed=split_seed))
    return domains


def _elastic(x: Tensor, alpha: float, sigma: float, g: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    disp = torch.rand((n, 2, h, w), generator=g) * 2 - 1
    disp = _blur(disp, sigma) * alpha / max(h, w)  # smooth field, in normalized coordinates
    eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(n, 2, 3)
    return _warp(x, eye, disp.permute(0, 2, 3, 1))


def _pixelate(x: Tensor, factor: float) -> Tensor:
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * factor)), max(1, int(w * factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


def _impulse(x: Tensor, p: float, g: torch.Generator) -> Tensor:
    u = torch.rand(x.shape, generator=g)
    return torch.where(u < p / 2, torch.zeros_like(x), torch.where(u > 1 - p / 2, torch.ones_like(x), x))


# name -> (severity parameters 1..5, function(x, param, generator))
CORRUPTIONS = {
    "gaussian_noise": ((0.08, 0.12, 0.18, 0.26, 0.38), lambda x, p, g: x + p * torch.randn(x.shape, generator=g)),
    "shot_noise": ((60, 25, 12, 5, 3), lambda x, p, g: torch.poisson(x * p, generator=g) / p),
    "impulse_noise": ((0.03, 0.06, 0.09, 0.17, 0.27), _impulse),
    "gaussian_blur": ((0.6, 0.9, 1.2, 1.6, 2.2), lambda x, p, g: _blur(x, p)),
    "contrast": ((0.4, 0.3, 0.2, 0.1, 0.05),
                 lambda x, p, g: (m := x.mean(dim=(1, 2, 3), keepdim=True)) + p * (x - m)),
    "brightness": ((0.1, 0.2, 0.3, 0.4, 0.5), lambda x, p, g: x + p),
    "elastic": (((8, 3), (12, 3), (16, 2.5), (20, 2), (26, 2)), lambda x, p, g: _elastic(x, p[0], p[1], g)),
    "pixelate": ((0.6, 0.5, 0.4, 0.3, 0.25), lambda x, p, g: _pixelate(x, p)),
    "rotate": ((10, 20, 30, 45, 60), lambda x, p, g: _rotate(x, torch.full((len(x),), float(p)))),
}


def corrupt(x: Tensor, name: str, severity: int, *, seed: int = 0) -> Tensor:
    """One corruption at severity 1..5 on float images (N, C, H, W) in [0, 1]."""
    if name not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if severity not in range(1, 6):
        raise ConfigError(f"corruption severity must be 1..5, got {severity}")
    params, fn = CORRUPTIONS[name]
    return fn(x, params[severity - 1], torch.Generator().manual_seed(seed)).clamp_(0, 1)


def corruption_sets(ds: ArrayDataset, *, names=None, severities=(1, 2, 3, 4, 5), seed: int = 0) -> dict[tuple[str, int], ArrayDataset]:
    """Corrupted copies of a test set: {(name, severity): dataset} (as Fashion-MNIST-C / CIFAR-10-C)."""
    x = ArrayDataset.to_float(ds.images)
    return {
        (n, s): ArrayDataset(corrupt(x, n, s, seed=seed), ds.labels, ds.classes, {"corruption": n, "severity": s})
        for n in (names or CORRUPTIONS)
        for s in severities
    }
