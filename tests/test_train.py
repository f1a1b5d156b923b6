import pytest
import torch

from shiftkit import models
from shiftkit.errors import ConfigError
from shiftkit.data import ArrayDataset
from shiftkit.train import TrainConfig, adapt_bn, evaluate, fit, recalibrate_bn

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


def test_recalibrate_bn_estimates_the_data_statistics_and_leaves_weights():
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.rand((64, 2, 6, 6), generator=g)  # to_float keeps float images as they are
    ds = ArrayDataset(x, torch.zeros(64, dtype=torch.long), ["a"])
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    net(x[:2])
    bn = net[1]
    bn.momentum = 0.3
    net.eval()
    weights = {k: v.clone() for k, v in net.named_parameters()}
    assert recalibrate_bn(net, ds, batch_size=16) == 1  # four batches: still the mean over all of them
    with torch.no_grad():
        h = net[0](x)
    assert torch.allclose(bn.running_mean, h.mean((0, 2, 3)), atol=1e-5)
    per_batch_var = torch.stack([h[i:i + 16].var((0, 2, 3)) for i in range(0, 64, 16)]).mean(0)
    assert torch.allclose(bn.running_var, per_batch_var, rtol=1e-4)
    assert bn.momentum == 0.3 and not net.training and not bn.training  # options and modes restored
    assert all(torch.equal(v, weights[k]) for k, v in net.named_parameters())
    assert recalibrate_bn(torch.nn.Linear(2, 2), ds) == 0


def test_adapt_bn_returns_an_adapted_copy_and_leaves_the_model():
    net = _net()
    ds = ArrayDataset(torch.rand((32, 1, 12, 12)) + 2.0, torch.zeros(32, dtype=torch.long), ["a", "b", "c", "d"])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    adapted = adapt_bn(net, ds)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert not torch.equal(adapted.features[1].running_mean, net.features[1].running_mean)


def test_fit_trains_conv_nets_in_channels_last_and_hands_back_a_plain_model(tiny_dataset, tmp_path):
    from shiftkit.checkpoints import load_checkpoint, save_checkpoint
    from shiftkit.train import _memory_format

    nets = {}
    for fmt in ("auto", "contiguous"):
        torch.manual_seed(0)
        net = models.create("small_cnn", num_classes=4, in_chans=1, width=4)
        assert _memory_format(net, TrainConfig(memory_format=fmt)) == (
            torch.channels_last if fmt == "auto" else torch.contiguous_format)
        fit(net, tiny_dataset, None, TrainConfig(epochs=1, batch_size=32, memory_format=fmt, progress=False))
        assert all(p.is_contiguous() for p in net.state_dict().values())
        save_checkpoint(tmp_path / f"{fmt}.safetensors", net)  # safetensors refuses non-contiguous tensors
        nets[fmt] = net
    # the same training in another layout: the same model up to float reordering
    for (k, a), b in zip(nets["auto"].state_dict().items(), nets["contiguous"].state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), k
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 4))
    assert _memory_format(mlp, TrainConfig()) == torch.contiguous_format
    with pytest.raises(ConfigError, match="memory_format"):
        TrainConfig(memory_format="nhwc")
    load_checkpoint(tmp_path / "auto.safetensors", models.create("small_cnn", num_classes=4, in_chans=1, width=4))
