"""Training-loop overhead: shiftkit.train.fit vs a bare PyTorch loop on the same model and batches."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .. import models
from ..data import load_domains
from ..train import TrainConfig, fit, iterate_batches


def _bare_loop(model, ds, cfg: TrainConfig, fmt: torch.memory_format = torch.contiguous_format) -> None:
    """What a user would write by hand: AdamW + cosine, shuffled batches, nothing else (in `fmt`)."""
    model.to(memory_format=fmt)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * -(-len(ds) // cfg.batch_size))
    model.train()
    for _ in range(cfg.epochs):
        for x, y in iterate_batches(ds, cfg.batch_size, shuffle=True, generator=gen):
            loss = F.cross_entropy(model(x.contiguous(memory_format=fmt)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


def run(*, model: str = "small_cnn", epochs: int = 2, repeats: int = 3, root=None) -> dict:
    """Time fit() and the bare loop in both memory formats `repeats` times, interleaved, with no
    validation (pure loop overhead); fit() is compared with the FASTER bare loop."""
    ds = load_domains("driftfmnist", root)[0].train
    cfg = TrainConfig(epochs=epochs, progress=False, select="last")
    loops = {"bare": lambda net: _bare_loop(net, ds, cfg),
             "bare_channels_last": lambda net: _bare_loop(net, ds, cfg, torch.channels_last),
             "fit": lambda net: fit(net, ds, None, cfg)}
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            torch.manual_seed(0)
            net = models.create(model, num_classes=10, in_chans=1)
            t0 = time.perf_counter()
            loop(net)
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    best_bare = min(best["bare"], best["bare_channels_last"])
    imgs = epochs * len(ds)
    return {"model": model, "images": imgs, "epochs": epochs, "threads": torch.get_num_threads(), "seconds": times,
            "img_per_s": {k: imgs / v for k, v in best.items()}, "ratio_fit_over_bare": best["fit"] / best_bare,
            "ratio_channels_last_over_contiguous_bare": best["bare_channels_last"] / best["bare"]}
