"""Training-loop overhead: shiftkit.train.fit vs a bare PyTorch loop on the same model and batches."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .. import models
from ..data import load_domains
from ..device import autocast, model_device, place, provenance, resolve_device, synchronize
from ..train import TrainConfig, fit, iterate_batches


def _bare_loop(model, ds, cfg: TrainConfig, fmt: torch.memory_format = torch.contiguous_format) -> None:
    """What a user would write by hand: AdamW + cosine, shuffled batches, nothing else (in `fmt`), with the data
    already where the model is (on a GPU: resident there, as the issue's reference loop had it)."""
    model.to(memory_format=fmt)
    dev = model_device(model)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * -(-len(ds) // cfg.batch_size))
    model.train()
    for _ in range(cfg.epochs):
        for x, y in iterate_batches(ds, cfg.batch_size, shuffle=True, generator=gen, device=dev):
            with autocast(dev, cfg.precision):
                loss = F.cross_entropy(model(x.contiguous(memory_format=fmt)).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


def run(*, model: str = "small_cnn", epochs: int = 2, repeats: int = 3, root=None, device: str = "cpu",
        precision: str = "fp32") -> dict:
    """Time fit() and the bare loop in both memory formats `repeats` times, interleaved, with no
    validation (pure loop overhead); fit() is compared with the FASTER bare loop. On a GPU every loop runs
    once untimed first (CUDA context, cuDNN autotuning, the dataset's one copy to the device)."""
    dev = resolve_device(device)
    ds = load_domains("driftfmnist", root)[0].train
    cfg = TrainConfig(epochs=epochs, progress=False, select="last", precision=precision)
    loops = {"bare": lambda net: _bare_loop(net, ds, cfg),
             "bare_channels_last": lambda net: _bare_loop(net, ds, cfg, torch.channels_last),
             "fit": lambda net: fit(net, ds, None, cfg)}
    times: dict[str, list[float]] = {name: [] for name in loops}
    for r in range(repeats + (dev.type != "cpu")):
        for name, loop in loops.items():
            torch.manual_seed(0)
            net = place(models.create(model, num_classes=10, in_chans=1), dev)
            synchronize(dev)
            t0 = time.perf_counter()
            loop(net)
            synchronize(dev)
            if r or dev.type == "cpu":
                times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    best_bare = min(best["bare"], best["bare_channels_last"])
    imgs = epochs * len(ds)
    return {"model": model, "images": imgs, "epochs": epochs, "threads": torch.get_num_threads(), "seconds": times,
            **provenance(dev, precision), "img_per_s": {k: imgs / v for k, v in best.items()},
            "ratio_fit_over_bare": best["fit"] / best_bare,
            "ratio_channels_last_over_contiguous_bare": best["bare_channels_last"] / best["bare"]}


def render_section(results: list[dict], command: str) -> str:
    """The RESULTS.md section, from the stored JSON alone (regenerable)."""
    from ..render import markdown_table

    rows = [(r["model"], _where(r), r["images"], r["threads"], f"{r['img_per_s']['bare']:.0f}",
             f"{r['img_per_s']['bare_channels_last']:.0f}", f"{r['img_per_s']['fit']:.0f}",
             f"{r['ratio_channels_last_over_contiguous_bare']:.3f}", f"{r['ratio_fit_over_bare']:.3f}") for r in results]
    table = markdown_table(["model", "device", "images/run", "threads", "bare img/s", "bare channels_last img/s", "fit() img/s",
                            "channels_last / contiguous bare time", "fit / best bare time (target <= 1.3)"], rows)
    return (f"## Training loop overhead\n\n`{command}`\n\n{table}\n\nBest of the interleaved runs of each loop, all "
            "measured in one process, one thing at a time; fit() without validation (its best-val copy and evaluation "
            "are extra work a bare loop does not do) and compared with the FASTER of the two bare loops.")


def _where(r: dict) -> str:
    """cpu, or e.g. "cuda (NVIDIA H200) bf16"; results from before the device setting ran on the CPU."""
    name = f"{r.get('device', 'cpu')}" + (f" ({r['device_name']})" if r.get("device_name") else "")
    return name + (f" {r['precision']}" if r.get("precision", "fp32") != "fp32" else "")
