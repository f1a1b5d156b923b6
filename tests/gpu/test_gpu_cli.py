"""The command line on a GPU: --device dev reaches the run and the result records where it ran."""
from __future__ import annotations

import json
from pathlib import Path

from shiftkit.cli import main


def test_train_device_cuda_records_the_device(dev, fmnist_root, monkeypatch, tmp_path):
    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    monkeypatch.chdir(tmp_path)
    main(["train", "--epochs", "1", "--device", str(dev), "--precision", "bf16", "--out", "m.safetensors"])
    r = json.loads(Path("m/result.json").read_text())
    assert r["provenance"]["device"] == dev.type and r["provenance"]["precision"] == "bf16"
    main(["eval", "m.safetensors", "--device", "cpu"])  # written on the GPU, scored on the CPU
