"""Fixtures for the UX tests: the tiny IDX Fashion-MNIST as $SHIFTKIT_DATA, one trained checkpoint."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from shiftkit.config import parse_experiment
from shiftkit.experiment import run_experiment

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def ux_env(fmnist_root, monkeypatch, tmp_path) -> Path:
    """cwd = a fresh folder that sees the repo's examples/; data = the tiny IDX fixture."""
    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    return tmp_path


@pytest.fixture(scope="session")
def trained(fmnist_root, tmp_path_factory) -> dict:
    """small_cnn trained one epoch on bin0 of the tiny DriftFMNIST (result.json of `shiftkit run`)."""
    out = tmp_path_factory.mktemp("trained")
    old = os.environ.get("SHIFTKIT_DATA")
    os.environ["SHIFTKIT_DATA"] = str(fmnist_root)
    try:
        return run_experiment(parse_experiment({"budget": {"epochs": 1}, "out": str(out)}), progress=False)
    finally:
        if old is None:
            os.environ.pop("SHIFTKIT_DATA")
        else:
            os.environ["SHIFTKIT_DATA"] = old
