"""What GRASP copies with the authors' BN modes (source eval) vs both in train mode, per absorb and per layer.

    PYTHONPATH=src python benchmarks/grasp_bn_modes.py  ->  benchmarks/results/grasp_bn_modes.json
Setting of `shiftkit bench transfer`: small_cnn zoo (seed 0), DriftFMNIST target bin 7, 100 shots, seed 0, temporal order.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from shiftkit import models, transfer
from shiftkit.checkpoints import atomic_write_json, read_metadata
from shiftkit.data import few_shot, load_domains
from shiftkit.train import evaluate

torch.set_num_threads(1)
zoo = Path("runs/bench_zoo/driftfmnist_small_cnn")
base, sources = transfer.zoo_sources(zoo, exclude=(7, 0))
target = few_shot(load_domains("driftfmnist")[7], 100, seed=0)
target.test = target.test.subset(torch.arange(3000))
out = {"zoo_sha256": transfer.zoo.zoo_checksum(zoo), "sources": [p.name for p in sources], "modes": {}}
for mode in ("eval", "train"):
    meta = read_metadata(base)
    merger = transfer.create("grasp", models.create(meta["arch"], **json.loads(meta["config"])), target, seed=0,
                             source_bn_mode=mode)
    recs = [merger.absorb(p) for p in sources]
    later = recs[1:]
    names = list(later[0]["per_tensor_fraction"])
    out["modes"][mode] = {
        "fraction_per_absorb": [r["fraction_transferred"] for r in later],
        "copied_per_layer": {k: sum(r["per_tensor_fraction"][k] for r in later) / len(later) for k in names},
        "test_accuracy": evaluate(merger.model, target.test)["accuracy"]}
    print(mode, out["modes"][mode]["fraction_per_absorb"], out["modes"][mode]["test_accuracy"])
atomic_write_json("benchmarks/results/grasp_bn_modes.json", out)
