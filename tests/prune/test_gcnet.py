"""GC-Net: map-back zeroes exactly the ghost's pruned connections; hybrid, combined, inverse; real archs."""
from __future__ import annotations

import pytest
import torch
from prune_fixtures import make_data

from shiftkit import models, prune
from shiftkit.prune import PruneConfig, ghost_network, masks_from_scores


def test_map_back_zeroes_exactly_the_connections_the_ghost_pruned(mixed_net, data):
    ghost = ghost_network(mixed_net, data)
    # prune the ghost itself by magnitude, layer-wise: its "weights" are the connectivities (O, I)
    ghost_masks = masks_from_scores(ghost, ghost, 0.7, cfg=PruneConfig(scope="layerwise"))
    masks = {n: prune.expand_mask(gm, w) for (n, gm), w in zip(ghost_masks.items(), prune.prunable_weights(mixed_net).values())}
    assert all((w != 0).all() for w in prune.prunable_weights(mixed_net).values())  # so every zero below is ours
    prune.apply(mixed_net, masks)
    for name, w in prune.prunable_weights(mixed_net).items():
        zero = w.reshape(*w.shape[:2], -1).eq(0)  # (O, I, k*k)
        assert torch.equal(zero.all(-1), ~ghost_masks[name]), name  # pruned connections: whole kernel zero
        assert torch.equal(zero.any(-1), ~ghost_masks[name]), name  # nothing else has a single zero


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_gcnet_masks_are_the_ghost_pruned_and_mapped_back(mixed_net, data, scope):
    ghost = ghost_network(mixed_net, data)
    masks = prune.compute_masks(mixed_net, prune.create("gcnet", scope=scope), 0.7, data=data)
    if scope == "layerwise":  # same unit counts per layer -> the very same connections as pruning the ghost
        ghost_masks = masks_from_scores(ghost, ghost, 0.7, cfg=PruneConfig(scope=scope))
        for n, m in masks.items():
            assert torch.equal(m.reshape(*m.shape[:2], -1).all(-1), ghost_masks[n]), n
    for n, m in masks.items():
        per = m.reshape(*m.shape[:2], -1)
        assert (per.all(-1) | ~per.any(-1)).all(), n  # whole kernels, nothing partial


def test_map_back_global_ranks_like_the_ghost(mixed_net, data):
    """Globally, kept connections all score at least as high as every pruned one (sizes aside)."""
    ghost = ghost_network(mixed_net, data)
    masks = prune.compute_masks(mixed_net, prune.create("gcnet"), 0.6, data=data)
    kept = torch.cat([ghost[n][masks[n].flatten(2).all(-1) if masks[n].ndim == 4 else masks[n]] for n in ghost])
    gone = torch.cat([ghost[n][~masks[n].flatten(2).any(-1) if masks[n].ndim == 4 else ~masks[n]] for n in ghost])
    assert gone.max() <= kept.min()


def test_hybrid_uses_magnitude_on_the_first_layers(tiny_cnn, data):
    crit = prune.create("gcnet", hybrid_split=2)
    masks = prune.compute_masks(tiny_cnn, crit, 0.8, data=data)
    names = list(masks)
    mag = prune.compute_masks(tiny_cnn, prune.create("magnitude"), 0.8,
                              allocation={n: 1 - masks[n].float().mean().item() for n in names[:2]})
    for n in names[:2]:
        assert torch.equal(masks[n], mag[n]), n
    first = sum(int((~masks[n]).sum()) for n in names[:2]) / sum(masks[n].numel() for n in names[:2])
    assert abs(first - 0.8) < 0.01  # each part reaches the asked sparsity
    assert masks[names[2]].flatten(2).all(-1).sum() + (~masks[names[2]].flatten(2).any(-1)).sum() == masks[names[2]].shape[0] * masks[names[2]].shape[1]


def test_inverse_prunes_the_other_end(tiny_cnn, data):
    fwd = prune.compute_masks(tiny_cnn, prune.create("gcnet", scope="layerwise"), 0.5, data=data)
    inv = prune.compute_masks(tiny_cnn, prune.create("gcnet", scope="layerwise", inverse=True), 0.5, data=data)
    for n in fwd:
        overlap = (~fwd[n] & ~inv[n]).float().mean().item()
        assert overlap < 0.05, n


def test_combined_score_is_weight_times_connectivity(tiny_cnn, data):
    ghost = ghost_network(tiny_cnn, data)
    scores = prune.create("gcnet", combine=True).scores(tiny_cnn, data)
    w = tiny_cnn.features[0].weight.detach().abs()
    assert torch.allclose(scores["features.0.weight"], w * ghost["features.0.weight"][:, :, None, None])


def test_shifted_calibration_changes_the_ghost(tiny_cnn, data):
    shifted = make_data(120, seed=7)
    shifted.images = (shifted.images * 0.3 + torch.rand_like(shifted.images) * 0.7)
    a, b = ghost_network(tiny_cnn, data), ghost_network(tiny_cnn, shifted)
    assert any(not torch.allclose(a[n], b[n]) for n in a)


def test_calibration_is_class_balanced(tiny_cnn):
    data = make_data(400, classes=4)
    sub = prune.calibration_subset(data, 10, seed=0)
    assert torch.bincount(sub.labels).tolist() == [10, 10, 10, 10]


@pytest.mark.parametrize("arch,kw", [("resnet20", {"width": 4}), ("vgg11_bn", {"width": 0.125})])
def test_cifar_archs_with_residuals_and_bn(arch, kw):
    torch.manual_seed(0)
    net = models.create(arch, num_classes=3, in_chans=3, **kw)
    data = make_data(30, classes=3, shape=(3, 16, 16))
    for cfg in ({}, {"reading": "parent"}, {"hybrid_split": 2, "keep_last": True}):
        masks = prune.compute_masks(net, prune.create("gcnet", **cfg), 0.9, data=data)
        total = sum(m.numel() for m in masks.values())
        assert abs(sum(int((~m).sum()) for m in masks.values()) / total - 0.9) < 0.01


def test_timm_mobilevit_grouped_convs_and_attention_linears():
    torch.manual_seed(0)
    net = models.create("mobilevit_xxs", num_classes=2, in_chans=3)
    data = make_data(8, classes=2, shape=(3, 64, 64))
    crit = prune.create("gcnet", calib_per_class=4, max_layer_sparsity=0.95)
    masks = prune.compute_masks(net, crit, 0.5, data=data)
    prune.apply(net, masks)
    assert abs(prune.sparsity_report(net)[-1]["sparsity"] - 0.5) < 0.001
    assert any(m.groups > 1 for m in prune.prunable_modules(net).values() if isinstance(m, torch.nn.Conv2d))
    assert net(data.images[:2]).shape == (2, 2)


def test_hybrid_with_dense_ends_still_reaches_the_total(tiny_cnn, data):
    crit = prune.create("gcnet", hybrid_split=4, keep_first=True, keep_last=True)  # gcnet part = the dense last layer
    masks = prune.compute_masks(tiny_cnn, crit, 0.8, data=data)
    names = list(masks)
    assert masks[names[0]].all() and masks[names[-1]].all()
    total = sum(m.numel() for m in masks.values())
    assert abs(sum(int((~m).sum()) for m in masks.values()) / total - 0.8) < 0.001
