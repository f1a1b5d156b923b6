"""Tiny models for the GPU checks (the data: transfer_fixtures.make_domain, shared with tests/transfer)."""
from __future__ import annotations

import torch

from shiftkit import models
from transfer_fixtures import make_domain

__all__ = ["make_domain", "tiny_model"]


def tiny_model(**kw) -> torch.nn.Module:
    return models.create("small_cnn", num_classes=4, in_chans=1, width=4, **kw)
