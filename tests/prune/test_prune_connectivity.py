"""Connectivity from running sums agrees with the lab's per-pair np.corrcoef loop; bad inputs fail clearly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from prune_fixtures import make_data
from torch import nn

from shiftkit import models, prune
from shiftkit.errors import ConfigError
from shiftkit.prune.connectivity import (Moments, compute_connectivity, connectivity_from_moments,
                                         connectivity_reference, pooled_activations)


def test_running_sums_match_corrcoef_loop_on_random_activations():
    g = torch.Generator().manual_seed(0)
    n, i, o, c = 150, 7, 5, 3
    labels = torch.arange(n) % c
    x = torch.randn(n, i, generator=g) * 3 + 10        # large mean: the shift keeps the variance exact
    y = x[:, :o] * 0.5 + torch.randn(n, o, generator=g)  # some real correlation
    x[:, 6] = 2.0                                       # a constant channel: corrcoef nan -> 0
    m = Moments.zeros(c, o, i)
    for s in range(0, n, 32):                            # in batches, as the hooks feed it
        m.update(x[s:s + 32], y[s:s + 32], labels[s:s + 32])
    ours = connectivity_from_moments(m).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = connectivity_reference(x.double().numpy(), y.double().numpy(), labels.numpy(), c)
    assert ours.shape == (o, i)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert (ours[:, 6] == 0).all()


@pytest.mark.parametrize("reading", ["input", "parent"])
@pytest.mark.parametrize("arch", ["small_cnn", "resnet20"])
def test_connectivity_matches_reference_on_a_real_net(arch, reading):
    torch.manual_seed(0)
    in_chans = 1 if arch == "small_cnn" else 3
    net = models.create(arch, num_classes=3, in_chans=in_chans, width=4)
    data = make_data(60, classes=3, shape=(in_chans, 12, 12))
    ghost = compute_connectivity(net, data, reading=reading, batch_size=16)
    acts = pooled_activations(net, data, reading=reading, batch_size=16)
    weights = prune.prunable_weights(net)
    assert list(ghost) == list(weights)
    for name, (x, y) in acts.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            ref = connectivity_reference(x.double().numpy(), y.double().numpy(), data.labels.numpy(), 3)
        assert ghost[name].shape == weights[name].shape[:2]
        np.testing.assert_allclose(ghost[name].numpy(), ref, atol=1e-5, err_msg=name)


def test_grouped_conv_connectivity_is_the_block_diagonal(mixed_net, data):
    ghost = compute_connectivity(mixed_net, data)
    x, y = pooled_activations(mixed_net, data)["group.weight"]
    with np.errstate(invalid="ignore", divide="ignore"):
        full = connectivity_reference(x.double().numpy(), y.double().numpy(), data.labels.numpy(), 4)  # (8, 8)
    assert ghost["group.weight"].shape == (8, 4)
    np.testing.assert_allclose(ghost["group.weight"][:4].numpy(), full[:4, :4], atol=1e-5)
    np.testing.assert_allclose(ghost["group.weight"][4:].numpy(), full[4:, 4:], atol=1e-5)


def test_calibration_data_missing_a_class_is_an_error(tiny_cnn):
    data = make_data(40, classes=4)
    sub = data.subset((data.labels != 2).nonzero().flatten())
    with pytest.raises(ConfigError, match=r"missing class\(es\) \[2\]"):
        compute_connectivity(tiny_cnn, sub)
    with pytest.raises(ConfigError, match="class"):
        prune.compute_masks(tiny_cnn, prune.create("gcnet"), 0.5, data=sub)


def test_model_without_prunable_layers_is_an_error():
    with pytest.raises(ConfigError, match="no prunable layers"):
        prune.prunable_weights(nn.Sequential(nn.Flatten(), nn.ReLU()))


def test_unsupported_module_is_named_or_skipped():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(2), nn.Conv1d(4, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ConfigError, match=r"'2' \(Conv1d\).*skip_unsupported"):
        prune.create("magnitude").scores(net)
    with pytest.warns(UserWarning, match="Conv1d"):
        mods = prune.prunable_modules(net, skip_unsupported=True)
    assert list(mods) == ["0", "4"]


def test_unknown_reading_is_an_error(tiny_cnn, data):
    with pytest.raises(ConfigError, match="reading"):
        compute_connectivity(tiny_cnn, data, reading="sideways")
    with pytest.raises(ConfigError, match="reading"):
        prune.create("gcnet", reading="sideways")
