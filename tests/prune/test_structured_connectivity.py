"""The two extra connectivity readings (per-position, pooled over classes) against straightforward computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from prune_fixtures import make_data
from torch import nn

from shiftkit import prune
from shiftkit.errors import ConfigError
from shiftkit.prune.connectivity import compute_connectivity, connectivity_reference

pytestmark = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # corrcoef of a constant channel


class _TwoConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 5, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(5, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean((2, 3)))


@pytest.fixture
def net_and_data():
    torch.manual_seed(0)
    return _TwoConv().eval(), make_data(45, classes=3, shape=(1, 8, 8))


def test_per_position_matches_a_direct_computation(net_and_data):
    net, data = net_and_data
    ghost = compute_connectivity(net, data, pooling="position", batch_size=16)
    with torch.no_grad():  # by hand: the conv's input pooled to its 4x4 output grid, one sample per position
        x = data.images.float()
        y1 = net.conv1(x)
        x2 = torch.relu(y1)
        y2 = net.conv2(x2)
    to_rows = lambda t: t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]).double().numpy()  # noqa: E731
    labels = data.labels.repeat_interleave(16).numpy()
    ref1 = connectivity_reference(to_rows(F.avg_pool2d(x, 2)), to_rows(y1), labels, 3)
    ref2 = connectivity_reference(to_rows(x2), to_rows(y2), data.labels.repeat_interleave(16).numpy(), 3)
    np.testing.assert_allclose(ghost["conv1.weight"].numpy(), ref1, atol=1e-5)
    np.testing.assert_allclose(ghost["conv2.weight"].numpy(), ref2, atol=1e-5)
    pooled = compute_connectivity(net, data, batch_size=16)
    assert not torch.allclose(pooled["conv2.weight"], ghost["conv2.weight"], atol=1e-3)  # a different reading


def test_pooled_over_classes_is_one_correlation_over_all_samples(net_and_data):
    net, data = net_and_data
    ghost = compute_connectivity(net, data, classwise=False, batch_size=16)
    acts = prune.pooled_activations(net, data, batch_size=16)
    for name, (x, y) in acts.items():
        ref = connectivity_reference(x.double().numpy(), y.double().numpy(), np.zeros(len(x), int), 1)
        np.testing.assert_allclose(ghost[name].numpy(), ref, atol=1e-5, err_msg=name)
    classwise = compute_connectivity(net, data, batch_size=16)
    assert not torch.allclose(classwise["conv2.weight"], ghost["conv2.weight"], atol=1e-3)


def test_per_position_parent_reading_and_options_through_gcnet(net_and_data):
    net, data = net_and_data
    ghost = compute_connectivity(net, data, reading="parent", pooling="position", batch_size=16)
    assert ghost["conv2.weight"].shape == (6, 5) and ghost["fc.weight"].shape == (3, 6)
    scores = prune.create("gcnet", pooling="position", classwise=False, calib_per_class=None).scores(net, data)
    assert scores["conv1.weight"].shape == (5, 1)
    with pytest.raises(ConfigError, match="pooling"):
        prune.create("gcnet", pooling="pixel")
    with pytest.raises(ConfigError, match="pooling"):
        compute_connectivity(net, data, pooling="pixel")
