"""A pruned connection stays exactly zero through fine-tuning; iterative pruning is monotone."""
from __future__ import annotations

import pytest
import torch

from shiftkit import prune
from shiftkit.train import TrainConfig, fit

CFG = TrainConfig(epochs=2, batch_size=32, lr=1e-2, progress=False)


@pytest.mark.parametrize("method", ["gcnet", "magnitude"])
def test_torch_prune_masks_stay_zero_through_fit(tiny_cnn, data, method):
    masks = prune.compute_masks(tiny_cnn, prune.create(method, scope="layerwise"), 0.8, data=data)
    prune.apply(tiny_cnn, masks)
    before = {n: w.detach().clone() for n, w in prune.prunable_weights(tiny_cnn).items()}
    fit(tiny_cnn, data, data, CFG)  # the pruned model, fit() unaware of the masks
    for n, w in prune.prunable_weights(tiny_cnn).items():
        assert (w[~masks[n]] == 0).all(), n
        assert not torch.equal(w[masks[n]], before[n][masks[n]]), n  # the rest did train
    prune.make_permanent(tiny_cnn)
    for n, w in prune.prunable_weights(tiny_cnn).items():
        assert (w[~masks[n]] == 0).all(), n


def test_fit_masks_argument_keeps_zeros_on_a_plain_model(tiny_cnn, data):
    masks = prune.compute_masks(tiny_cnn, prune.create("gcnet", hybrid_split=1), 0.9, data=data)
    fit(tiny_cnn, data, data, CFG, masks=masks)  # masks through shiftkit.train.fit, no torch hooks
    for n, w in prune.prunable_weights(tiny_cnn).items():
        assert (w[~masks[n]] == 0).all(), n


def test_iterative_pruning_reaches_the_target_and_never_revives(tiny_cnn, data):
    seen = []
    crit = prune.create("magnitude")
    orig = prune.compute_masks

    def spy(*a, **k):
        m = orig(*a, **k)
        seen.append(m)
        return m

    prune.pruner.compute_masks, saved = spy, prune.pruner.compute_masks
    try:
        masks = prune.prune_model(tiny_cnn, crit, 0.9, steps=3, train=data, val=data, train_cfg=CFG)
    finally:
        prune.pruner.compute_masks = saved
    assert len(seen) == 3
    for a, b in zip(seen, seen[1:]):
        assert all((b[n] <= a[n]).all() for n in a)  # pruned stays pruned
    total = sum(m.numel() for m in masks.values())
    assert abs(sum(int((~m).sum()) for m in masks.values()) / total - 0.9) < 1e-3
    assert prune.sparsity_schedule(0.9, 3)[-1] == pytest.approx(0.9)
