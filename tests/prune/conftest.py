"""Fixtures for the prune tests (seconds on 2 cores); the builders live in prune_fixtures.py."""
from __future__ import annotations

import pytest
import torch
from prune_fixtures import MixedNet, make_data
from torch import nn

from shiftkit import models
from shiftkit.data import ArrayDataset


@pytest.fixture
def data() -> ArrayDataset:
    return make_data()


@pytest.fixture
def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return models.create("small_cnn", num_classes=4, in_chans=1, width=4)


@pytest.fixture
def mixed_net() -> nn.Module:
    torch.manual_seed(0)
    return MixedNet()
