import pytest
import torch

from shiftkit import models
from shiftkit.errors import ConfigError
from shiftkit.train import TrainConfig, evaluate, fit

CFG = TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False)


def _net(seed=0):
    torch.manual_seed(seed)
    return models.create("small_cnn", num_classes=4, in_chans=1, width=4)


def test_fit_learns_and_metrics_are_sane(tiny_dataset):
    net = _net()
    before = evaluate(net, tiny_dataset)
    res = fit(net, tiny_dataset, tiny_dataset, CFG)
    after = evaluate(net, tiny_dataset)
    assert after["loss"] < before["loss"] and after["accuracy"] > 0.5
    assert 0 <= after["macro_f1"] <= 1 and 0.5 < after["auroc"] <= 1 and after["n"] == 200
    assert len(res.history) == 3 and res.best_epoch in (0, 1, 2)


def test_fit_is_deterministic(tiny_dataset):
    a, b = _net(), _net()
    fit(a, tiny_dataset, None, CFG)
    fit(b, tiny_dataset, None, CFG)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_masked_weights_stay_exactly_zero(tiny_dataset):
    net = _net()
    names = [n for n, p in net.named_parameters() if p.ndim > 1]
    g = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(dict(net.named_parameters())[n].shape, generator=g) > 0.5 for n in names}
    fit(net, tiny_dataset, None, CFG, masks=masks)
    params = dict(net.named_parameters())
    for n, m in masks.items():
        assert (params[n][~m] == 0).all(), n
        assert (params[n][m] != 0).float().mean() > 0.99, n


def test_best_val_epoch_is_kept(tiny_dataset):
    """The model must end at the state of its best validation epoch, not the last one."""
    states = []
    net = _net()
    res = fit(net, tiny_dataset, tiny_dataset, CFG, on_epoch=lambda e, r: states.append(
        {k: v.clone() for k, v in net.state_dict().items()}))
    best = states[res.best_epoch]
    assert all(torch.equal(best[k], v) for k, v in net.state_dict().items())
    assert res.best_val_accuracy == max(h["val_accuracy"] for h in res.history)


def test_bad_config_names_the_option():
    with pytest.raises(ConfigError, match="optimizer='adam'"):
        TrainConfig(optimizer="adam")
