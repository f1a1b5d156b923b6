"""Channel importances: GC-Net's reduction checked against a straightforward computation; every importance
works inside a plain Torch-Pruning pruner."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch_pruning as tp
import torch.nn.functional as F
from prune_fixtures import make_data
from torch import nn

from shiftkit import models
from shiftkit.errors import ConfigError
from shiftkit.prune.channel_importance import IMPORTANCES, GCNetChannelImportance, create_importance
from shiftkit.prune.connectivity import connectivity_reference

pytestmark = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # corrcoef of a constant channel


class _Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 5, 3, stride=2, padding=1)
        self.fc = nn.Linear(5 * 4 * 4, 3)  # after a flatten: 16 input features per conv2 channel

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.bn1(self.conv1(x))))).flatten(1))


def _corr(x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return connectivity_reference(x.double().numpy(), y.double().numpy(), labels.numpy(), 3)  # per-pair loop


def test_gcnet_channel_importance_is_the_documented_reduction():
    torch.manual_seed(0)
    net = _Seq().eval()
    data = make_data(60, classes=3, shape=(1, 8, 8))
    with torch.no_grad():  # by hand: each layer's input and pre-activation output, conv maps averaged over space
        x = data.images.float()
        y1 = net.conv1(x)
        a1 = torch.relu(net.bn1(y1))
        y2 = net.conv2(a1)
        a2 = torch.relu(y2).flatten(1)
        y3 = net.fc(a2)
    conn1 = _corr(x.mean((2, 3)), y1.mean((2, 3)), data.labels)  # (6, 1)
    conn2 = _corr(a1.mean((2, 3)), y2.mean((2, 3)), data.labels)  # (5, 6)
    conn3 = _corr(a2, y3, data.labels)                            # (3, 80)
    imp = GCNetChannelImportance(data, calib_per_class=None, normalizer=None)
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=x[:1])
    g1 = graph.get_pruning_group(net.conv1, tp.prune_conv_out_channels, idxs=list(range(6)))
    g2 = graph.get_pruning_group(net.conv2, tp.prune_conv_out_channels, idxs=list(range(5)))
    # conv1's channel c: mean of (its row mean in conv1, its column mean in conv2); the BN does not count
    want1 = (conn1.mean(1) + conn2.mean(0)) / 2
    # conv2's channel c: mean of (row mean in conv2, mean over its 16 flattened fc columns of the column mean)
    want2 = (conn2.mean(1) + conn3.mean(0).reshape(5, 16).mean(1)) / 2
    np.testing.assert_allclose(imp(g1).numpy(), want1, atol=1e-5)
    np.testing.assert_allclose(imp(g2).numpy(), want2, atol=1e-5)
    normed = GCNetChannelImportance(data, calib_per_class=None)(g2)
    np.testing.assert_allclose(normed.numpy(), want2 / want2.mean(), atol=1e-5)
    # the reversed diagnostic: the same scores flipped within the group, so the order is exactly inverted
    flipped = want2.max() + want2.min() - want2
    reversed_ = create_importance("gcnet_reversed", data=data, calib_per_class=None)(g2)
    np.testing.assert_allclose(reversed_.numpy(), flipped / flipped.mean(), atol=1e-5)
    assert (np.argsort(-reversed_.numpy(), kind="stable") == np.argsort(want2, kind="stable")).all()


def test_hybrid_scores_early_groups_by_magnitude():
    torch.manual_seed(0)
    net = _Seq().eval()
    data = make_data(60, classes=3, shape=(1, 8, 8))
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=data.images[:1].float())
    g1 = graph.get_pruning_group(net.conv1, tp.prune_conv_out_channels, idxs=list(range(6)))
    g2 = graph.get_pruning_group(net.conv2, tp.prune_conv_out_channels, idxs=list(range(5)))
    hybrid = create_importance("gcnet_hybrid", data=data, hybrid_split=1, calib_per_class=None)
    plain = create_importance("gcnet", data=data, calib_per_class=None)
    assert torch.allclose(hybrid(g1), tp.importance.GroupMagnitudeImportance(p=2)(g1))
    assert torch.allclose(hybrid(g2), plain(g2))


def test_ghost_network_is_recomputed_after_pruning():
    torch.manual_seed(0)
    net = _Seq().eval()
    data = make_data(60, classes=3, shape=(1, 8, 8))
    imp = GCNetChannelImportance(data, calib_per_class=None)
    pruner = tp.pruner.BasePruner(net, data.images[:1].float(), imp, pruning_ratio=0.5, iterative_steps=2,
                                  ignored_layers=[net.fc])
    pruner.step()
    assert imp._conn[net.conv1].shape == (6, 1)  # scored on the dense net
    pruner.step()
    assert net.conv1.out_channels == 3 and imp._conn[net.conv1].shape == (4, 1)  # re-scored after step 1


@pytest.mark.parametrize("name", IMPORTANCES.names())
def test_every_importance_drives_a_plain_torch_pruning_pruner(name):
    torch.manual_seed(0)
    net = models.create("resnet20", num_classes=4, in_chans=1, width=8).eval()
    data = make_data(40, classes=4, shape=(1, 12, 12))
    imp = create_importance(name, data=data)
    x = data.images[:8].float()
    if name == "taylor":
        F.cross_entropy(net(x), data.labels[:8]).backward()
    macs0, _ = tp.utils.count_ops_and_params(net, x[:1])
    pruner = tp.pruner.MetaPruner(net, x[:1], imp, pruning_ratio=0.5, global_pruning=True, ignored_layers=[net.fc])
    pruner.step()
    macs1, _ = tp.utils.count_ops_and_params(net, x[:1])
    assert macs1 < macs0 and net(x).shape == (8, 4)


def test_bad_importance_names_and_options():
    data = make_data(40, classes=4)
    with pytest.raises(ConfigError, match="valid names"):
        create_importance("weight_norm")
    with pytest.raises(ConfigError, match="needs calibration data"):
        create_importance("gcnet")
    with pytest.raises(ConfigError, match="takes no options"):
        create_importance("l2", p=3)
    with pytest.raises(ConfigError, match="pooling"):
        create_importance("gcnet", data=data, pooling="pixel")
