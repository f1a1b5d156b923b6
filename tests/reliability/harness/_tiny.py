"""Tiny deterministic domains and a tiny source zoo (small_cnn width 4, 12x12 images) for the
reliability checks: rebuilt bit for bit from a seed in any process, so a child can recreate them."""
from __future__ import annotations

from pathlib import Path

import torch

from shiftkit.data import ArrayDataset, Domain, split_domain

__all__ = ["CLASSES", "MODEL_KWARGS", "tiny_domains", "tiny_zoo", "tiny_net"]

CLASSES = ["a", "b", "c", "d"]
MODEL_KWARGS = {"num_classes": 4, "in_chans": 1, "width": 4}


def _domain(name: str, shift: float, n: int, seed: int) -> Domain:
    """4 classes of 12x12 prototypes plus noise; `shift` brightens and mirrors half the image."""
    protos = torch.rand((4, 1, 12, 12), generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    x = protos[labels] + 0.25 * torch.randn((n, 1, 12, 12), generator=g) + shift  # (n, 1, 12, 12)
    if shift > 0.15:
        x[..., :6] = x[..., :6].flip(-2)
    return split_domain(name, ArrayDataset(x.clamp(0, 1), labels, list(CLASSES)), fractions=(0.5, 0.25, 0.25), seed=seed)


def tiny_domains(k: int = 5, *, n: int = 96) -> list[Domain]:
    return [_domain(f"bin{i}", 0.1 * i, n, i) for i in range(k)]


def tiny_net(seed: int = 0, **kw) -> torch.nn.Module:
    from shiftkit import models

    torch.manual_seed(seed)
    return models.create("small_cnn", **{**MODEL_KWARGS, **kw})


def tiny_zoo(out: Path, k: int = 5) -> tuple[Path, list[Path]]:
    """Base + one source per domain but the last (the target); (base, sources in order)."""
    from shiftkit.transfer import ZooConfig, build_zoo, zoo_sources

    domains = tiny_domains(k)
    cfg = ZooConfig(model="small_cnn", model_kwargs={"width": 4}, base_epochs=2, source_epochs=1, batch_size=16)
    build_zoo(domains, out, cfg=cfg, dataset="tiny", exclude=(k - 1,))
    return zoo_sources(out)
