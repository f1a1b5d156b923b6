"""How much and how: sparsity reached = sparsity asked, allocation options, torch.nn.utils.prune, export."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils import prune as tprune

from shiftkit import models, prune
from shiftkit.checkpoints import load_checkpoint, read_metadata
from shiftkit.errors import ConfigError
from shiftkit.prune import PruneConfig, masks_from_scores


def _pruned(masks) -> int:
    return sum(int((~m).sum()) for m in masks.values())


def _conn_scores(weights, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(w.shape[:2] if w.ndim == 4 else w.shape, generator=g) for n, w in weights.items()}


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.7, 0.9, 0.95])
@pytest.mark.parametrize("granularity", ["element", "connection"])
def test_global_sparsity_reached_equals_asked(mixed_net, sparsity, granularity):
    weights = prune.prunable_weights(mixed_net)
    scores = _conn_scores(weights) if granularity == "connection" else {n: w.abs() for n, w in weights.items()}
    masks = masks_from_scores(scores, weights, sparsity)
    total = sum(w.numel() for w in weights.values())
    unit = 9 if granularity == "connection" else 1  # largest unit: one 3x3 kernel
    assert abs(_pruned(masks) - sparsity * total) <= unit / 2 + 1e-9


@pytest.mark.parametrize("sparsity", [0.3, 0.8, 0.9])
@pytest.mark.parametrize("granularity", ["element", "connection"])
def test_layerwise_sparsity_reached_per_layer(mixed_net, sparsity, granularity):
    weights = prune.prunable_weights(mixed_net)
    scores = _conn_scores(weights) if granularity == "connection" else {n: w.abs() for n, w in weights.items()}
    masks = masks_from_scores(scores, weights, sparsity, cfg=PruneConfig(scope="layerwise"))
    for n, m in masks.items():
        unit = weights[n][0, 0].numel() if granularity == "connection" and weights[n].ndim == 4 else 1
        assert abs(int((~m).sum()) - sparsity * m.numel()) <= unit / 2 + 1e-9, n


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_keep_first_last_dense_and_total_still_reached(tiny_cnn, scope):
    weights = prune.prunable_weights(tiny_cnn)
    names = list(weights)
    masks = masks_from_scores({n: w.abs() for n, w in weights.items()}, weights, 0.8,
                              cfg=PruneConfig(scope=scope, keep_first=True, keep_last=True))
    assert masks[names[0]].all() and masks[names[-1]].all()
    total = sum(w.numel() for w in weights.values())
    assert abs(_pruned(masks) - 0.8 * total) <= len(names)


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_max_layer_sparsity_caps_every_layer(tiny_cnn, scope):
    weights = prune.prunable_weights(tiny_cnn)
    masks = masks_from_scores({n: w.abs() for n, w in weights.items()}, weights, 0.7,
                              cfg=PruneConfig(scope=scope, max_layer_sparsity=0.75))
    assert all(1 - m.float().mean() <= 0.75 + 1e-6 for m in masks.values())
    assert abs(_pruned(masks) - 0.7 * sum(w.numel() for w in weights.values())) <= len(masks)


def test_unreachable_cap_is_a_clear_error(tiny_cnn):
    weights = prune.prunable_weights(tiny_cnn)
    with pytest.raises(ConfigError, match="max_layer_sparsity"):
        masks_from_scores({n: w.abs() for n, w in weights.items()}, weights, 0.9, cfg=PruneConfig(max_layer_sparsity=0.5))


def test_matched_allocation_reproduces_per_layer_sparsity(mixed_net):
    weights = prune.prunable_weights(mixed_net)
    ref = masks_from_scores(_conn_scores(weights, seed=1), weights, 0.8)
    alloc = prune.layer_sparsity(ref)
    matched = masks_from_scores(_conn_scores(weights, seed=2), weights, 0.8, allocation=alloc)
    for n in ref:
        assert int((~matched[n]).sum()) == int((~ref[n]).sum()), n


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_bad_sparsity_names_the_option(mixed_net, bad):
    weights = prune.prunable_weights(mixed_net)
    with pytest.raises(ConfigError, match="sparsity"):
        masks_from_scores({n: w.abs() for n, w in weights.items()}, weights, bad)
    with pytest.raises(ConfigError, match="--sparsity"):
        prune.check_fraction(bad, "--sparsity")


def test_scores_with_a_wrong_shape_name_the_layer(mixed_net):
    weights = prune.prunable_weights(mixed_net)
    scores = {n: w.abs() for n, w in weights.items()}
    scores["conv2.weight"] = torch.rand(3, 3)
    with pytest.raises(ConfigError, match="conv2.weight"):
        masks_from_scores(scores, weights, 0.5)


def test_masks_compose_with_torch_prune_and_permanence_keeps_zeros(mixed_net):
    tprune.l1_unstructured(mixed_net.conv2, "weight", amount=0.3)  # a mask from torch itself first
    before = mixed_net.conv2.weight_mask.bool().clone()
    weights = prune.prunable_weights(mixed_net)
    masks = masks_from_scores(_conn_scores(weights), weights, 0.5)
    prune.apply(mixed_net, masks)
    combined = prune.current_masks(mixed_net)["conv2.weight"]
    assert torch.equal(combined, before & masks["conv2.weight"])
    assert (mixed_net.conv2.weight[~combined] == 0).all()
    prune.make_permanent(mixed_net)
    assert not hasattr(mixed_net.conv2, "weight_orig") and "conv2.weight" in dict(mixed_net.named_parameters())
    assert (mixed_net.conv2.weight[~combined] == 0).all()
    assert prune.current_masks(mixed_net) == {}


def test_export_writes_sparse_safetensors_that_load_into_the_dense_arch(tiny_cnn, tmp_path):
    weights = prune.prunable_weights(tiny_cnn)
    masks = masks_from_scores({n: w.abs() for n, w in weights.items()}, weights, 0.75)
    prune.apply(tiny_cnn, masks)
    report = prune.export(tiny_cnn, tmp_path / "p.safetensors", metadata={"method": "magnitude"})
    assert prune.current_masks(tiny_cnn)  # the live model keeps its masks
    fresh = models.create("small_cnn", num_classes=4, in_chans=1, width=4)
    meta = load_checkpoint(tmp_path / "p.safetensors", fresh)
    assert abs(float(meta["sparsity"]) - 0.75) < 1e-3 and meta["method"] == "magnitude"
    rows = prune.sparsity_report(fresh)
    assert rows[-1]["layer"] == "total" and rows[-1]["sparsity"] == pytest.approx(report[-1]["sparsity"])
    for n, m in masks.items():
        assert (dict(fresh.named_parameters())[n][~m] == 0).all()
    assert read_metadata(tmp_path / "p.safetensors")["arch"] == "small_cnn"
