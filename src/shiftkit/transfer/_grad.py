"""Gradient mechanics shared by the transfer methods: target-loss gradients, grouped cosines, masks.

A "group" is the unit a transfer decision is made for: the whole tensor, one output channel
(row of the tensor seen as (out, -1)), or one element.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.base import ArrayDataset
from ..device import batches
from ..errors import ConfigError

__all__ = ["GRANULARITIES", "BN_MODES", "alignment_batches", "target_gradients", "groups", "grouped_cosine", "tau_mask",
           "expand_mask", "taylor_scores"]

GRANULARITIES = ("tensor", "channel", "element")


def alignment_batches(ds: ArrayDataset, n: int, batch_size: int, *, seed: int,
                      device: torch.device | None = None) -> list[tuple[Tensor, Tensor]]:
    """n batches of target training data, drawn without replacement (with wrap-around) from `seed`, on `device`.

    A batch never exceeds the dataset: wrapping inside one batch would weight a random subset twice.
    """
    batch_size = min(batch_size, len(ds))
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    need = n * batch_size
    order = order.repeat(-(-need // len(ds)))[:need] if need > len(ds) else order[:need]
    return list(batches(ds.images, ds.labels, batch_size, order=order, device=device))


BN_MODES = ("train", "eval")


def target_gradients(model: nn.Module, batches: list[tuple[Tensor, Tensor]], *, bn_mode: str = "train") -> dict[str, Tensor]:
    """∇ of the mean target cross-entropy over all batches, per parameter.

    Args:
        bn_mode: "train" normalises with the batch's statistics (the GRASP authors' mode for the
            target model); "eval" uses the model's running statistics and no dropout (their mode for
            the source model: `source_model.eval()`).

    Buffers (BN running statistics) are restored afterwards: computing a gradient changes nothing.
    """
    if bn_mode not in BN_MODES:
        raise ConfigError(f"bn_mode={bn_mode!r}; valid: {', '.join(BN_MODES)}")
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    train = bn_mode == "train"
    saved = {k: b.clone() for k, b in model.named_buffers()} if train else {}  # eval mode never writes them
    was_training = model.training
    model.train(train)
    model.zero_grad(set_to_none=True)
    total = sum(len(y) for _, y in batches)
    for x, y in batches:
        (F.cross_entropy(model(x), y, reduction="sum") / total).backward()
    # take the .grad tensors themselves (no clone) and detach them from the model
    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in params.items()}
    model.zero_grad(set_to_none=True)
    if saved:
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(saved[k])
    model.train(was_training)
    return grads


def groups(t: Tensor, granularity: str) -> Tensor:
    """View a tensor as (G, n): one row per decision group."""
    if granularity == "element":
        return t.reshape(-1, 1)
    if granularity == "channel" and t.ndim > 1:
        return t.reshape(t.shape[0], -1)  # (out_channels, in*k*k)
    if granularity in GRANULARITIES:
        return t.reshape(1, -1)
    raise ConfigError(f"granularity={granularity!r}; valid: {', '.join(GRANULARITIES)}")


def grouped_cosine(a: Tensor, b: Tensor, granularity: str) -> Tensor:
    """Cosine between a and b per group, (G,); 0 where either is all zeros."""
    a, b = groups(a, granularity), groups(b, granularity)  # (G, n)
    num = (a * b).sum(1)
    den = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.zeros_like(num))


def tau_mask(cos: Tensor, tau: float) -> Tensor:
    """Groups to transfer: cos > τ; τ = -1 transfers every group, τ = +1 none (the two ablations)."""
    if tau <= -1:
        return torch.ones_like(cos, dtype=torch.bool)
    if tau >= 1:
        return torch.zeros_like(cos, dtype=torch.bool)
    return cos > tau


def expand_mask(group_mask: Tensor, like: Tensor, granularity: str) -> Tensor:
    """Broadcast a (G,) group mask back to the shape of `like`."""
    n = groups(like, granularity).shape[1]
    return group_mask[:, None].expand(-1, n).reshape(like.shape)


def taylor_scores(grad: Tensor, theta: Tensor, theta_s: Tensor, granularity: str) -> Tensor:
    """First-order predicted change of the target loss if θ ← θ_s, per group: g·(θ_s − θ), (G,)."""
    return (groups(grad, granularity) * groups(theta_s - theta, granularity)).sum(1)
