"""Contract over every registered criterion, plus options and errors of the registry."""
from __future__ import annotations

import pytest
import torch

from shiftkit import prune
from shiftkit.errors import ConfigError


@pytest.mark.parametrize("name", prune.names())
def test_amount_zero_prunes_nothing(name, mixed_net, data):
    masks = prune.compute_masks(mixed_net, prune.create(name), 0.0, data=data)
    weights = prune.prunable_weights(mixed_net)
    assert set(masks) == set(weights)
    for n, m in masks.items():
        assert m.dtype == torch.bool and m.shape == weights[n].shape and m.all(), n


@pytest.mark.parametrize("name", prune.names())
def test_every_criterion_reaches_the_asked_sparsity(name, mixed_net, data):
    masks = prune.compute_masks(mixed_net, prune.create(name), 0.6, data=data)
    total = sum(m.numel() for m in masks.values())
    assert abs(sum(int((~m).sum()) for m in masks.values()) - 0.6 * total) <= 4.5


@pytest.mark.parametrize("name", prune.names())
def test_unknown_option_lists_the_valid_ones(name):
    with pytest.raises(ConfigError, match="unknown option.*valid: .*scope"):
        prune.create(name, not_an_option=1)


def test_unknown_criterion_lists_valid_names():
    with pytest.raises(ConfigError, match="valid names: gcnet, kernel_l1, magnitude"):
        prune.create("lottery")


@pytest.mark.parametrize("name", [n for n in prune.names() if prune.PRUNE.get(n).needs_data])
def test_criteria_that_read_data_say_so_without_it(name, mixed_net):
    with pytest.raises(ConfigError, match="calibration data"):
        prune.compute_masks(mixed_net, prune.create(name), 0.5)


def test_bad_options_are_clear(mixed_net, data):
    with pytest.raises(ConfigError, match="scope"):
        prune.create("magnitude", scope="per-channel")
    with pytest.raises(ConfigError, match="max_layer_sparsity"):
        prune.create("magnitude", max_layer_sparsity=0.0)
    with pytest.raises(ConfigError, match="granularity"):
        prune.create("random", granularity="filter")
    with pytest.raises(ConfigError, match="hybrid_split=9"):
        prune.compute_masks(mixed_net, prune.create("gcnet", hybrid_split=9), 0.5, data=data)
    with pytest.raises(ConfigError, match="input_shape"):
        prune.compute_masks(mixed_net, prune.create("synflow"), 0.5)
    with pytest.raises(ConfigError, match="sparsity"):
        prune.compute_masks(mixed_net, prune.create("magnitude"), 1.0)


def test_connection_criteria_prune_whole_kernels(mixed_net, data):
    for crit in (prune.create("kernel_l1"), prune.create("random", granularity="connection"), prune.create("gcnet")):
        masks = prune.compute_masks(mixed_net, crit, 0.7, data=data)
        for n, m in masks.items():
            if m.ndim == 4:  # every kernel slice all kept or all pruned
                per_kernel = m.flatten(2)
                assert (per_kernel.all(-1) | ~per_kernel.any(-1)).all(), (crit, n)


def test_kernel_l1_scores_are_slice_sums(mixed_net):
    scores = prune.create("kernel_l1").scores(mixed_net)
    w = mixed_net.conv2.weight.detach()
    assert torch.allclose(scores["conv2.weight"], w.abs().sum((2, 3)))
    assert scores["fc.weight"].shape == mixed_net.fc.weight.shape


def test_random_is_seeded(mixed_net):
    a = prune.create("random", seed=3).scores(mixed_net)
    b = prune.create("random", seed=3).scores(mixed_net)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_synflow_reads_input_shape_from_option(mixed_net):
    scores = prune.create("synflow", input_shape=(1, 12, 12)).scores(mixed_net)
    assert all(torch.isfinite(s).all() and (s >= 0).all() for s in scores.values())
