"""Training-loop overhead: shiftkit.train.fit vs a bare PyTorch loop on the same model and batches."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .. import models
from ..data import load_domains
from ..train import TrainConfig, fit, iterate_batches


def _bare_loop(model, ds, cfg: TrainConfig) -> None:
    """What a user would write by hand: AdamW + cosine, shuffled batches, nothing else."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * -(-len(ds) // cfg.batch_size))
    model.train()
    for _ in range(cfg.epochs):
        for x, y in iterate_batches(ds, cfg.batch_size, shuffle=True, generator=gen):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


def run(*, model: str = "small_cnn", epochs: int = 2, repeats: int = 3, root=None) -> dict:
    """Time both loops `repeats` times, interleaved, with no validation (pure loop overhead)."""
    ds = load_domains("driftfmnist", root)[0].train
    cfg = TrainConfig(epochs=epochs, progress=False, select="last")
    times = {"bare": [], "fit": []}
    for _ in range(repeats):
        for name in ("bare", "fit"):
            torch.manual_seed(0)
            net = models.create(model, num_classes=10, in_chans=1)
            t0 = time.perf_counter()
            _bare_loop(net, ds, cfg) if name == "bare" else fit(net, ds, None, cfg)
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    imgs = epochs * len(ds)
    return {"model": model, "images": imgs, "epochs": epochs, "threads": torch.get_num_threads(), "seconds": times,
            "img_per_s": {k: imgs / v for k, v in best.items()}, "ratio_fit_over_bare": best["fit"] / best["bare"]}
