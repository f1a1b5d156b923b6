import torch
from torch import nn

from shiftkit.metrics import classification_metrics, conv_linear_flops, count_params


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def test_params_and_flops_count_pruned_weights_only_when_asked():
    net = _net()
    assert count_params(net) == (2 * 9 + 2) + (32 * 3 + 3)
    dense = conv_linear_flops(net, (1, 4, 4))
    assert dense == 2 * 9 * 16 + 32 * 3  # conv MACs per output position x 16 positions, then the linear layer
    with torch.no_grad():
        net[0].weight[0].zero_()  # prune one output channel's kernel (9 weights)
    assert count_params(net, nonzero=True) == count_params(net) - 9
    assert conv_linear_flops(net, (1, 4, 4), nonzero=True) == dense - 9 * 16


def test_classification_metrics_on_perfect_and_wrong_logits():
    labels = torch.tensor([0, 1, 2, 0])
    perfect = torch.nn.functional.one_hot(labels, 3).float() * 5
    m = classification_metrics(perfect, labels)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0 and m["auroc"] == 1.0
    assert classification_metrics(-perfect, labels)["accuracy"] == 0.0
