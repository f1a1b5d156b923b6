"""The README demo: train small_cnn on DriftFMNIST bin 0, test it on every bin, plot the drift."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from . import models
from .checkpoints import atomic_write_json, save_checkpoint
from .data import load_domains
from .render import bar_plot
from .train import TrainConfig, evaluate, fit


def run_demo(out: Path, *, epochs: int = 10, seed: int = 0, data_root=None) -> dict:
    """Train on bin 0 only; the accuracy drop across later bins is the drift the rest of shiftkit fights."""
    torch.manual_seed(seed)
    domains = load_domains("driftfmnist", data_root, seed=seed)
    model = models.create("small_cnn", num_classes=10, in_chans=1)
    t0 = time.perf_counter()
    result = fit(model, domains[0].train, domains[0].val, TrainConfig(epochs=epochs, seed=seed))
    train_s = time.perf_counter() - t0
    per_bin = {d.name: evaluate(model, d.test) for d in domains}
    report = {"model": "small_cnn", "trained_on": domains[0].name, "epochs": epochs,
              "best_epoch": result.best_epoch, "test": per_bin}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "small_cnn_bin0.safetensors", model, metadata={"domain": domains[0].name})
    atomic_write_json(out / "demo.json", report)  # reproducible: same seed, same bytes
    atomic_write_json(out / "timing.json", {"train_seconds": train_s})  # wall clock lives apart
    bar_plot({k: v["accuracy"] for k, v in per_bin.items()}, out / "demo_accuracy_per_bin.png",
             title="small_cnn trained on bin0: test accuracy per DriftFMNIST bin", ylabel="test accuracy",
             xlabel="DriftFMNIST bin (drift grows with time)", chance=1 / len(domains[0].classes),
             highlight=domains[0].name, highlight_label=f"training bin ({domains[0].name})")
    return {**report, "train_seconds": train_s}
