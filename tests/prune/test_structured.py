"""Structural pruning through torch-pruning: channels removed, targets reached, bad input refused, files
that load in a fresh process."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from prune_fixtures import make_data
from safetensors.torch import load_file
from torch import nn

from shiftkit import models
from shiftkit.checkpoints import read_metadata, save_checkpoint
from shiftkit.errors import CheckpointError, ConfigError
from shiftkit.train import TrainConfig
from shiftkit.prune.structured import (StructuredConfig, count_macs_params, load_structured, prune_structured,
                                       save_structured, structured_prune_checkpoint, widths)


@pytest.fixture(scope="module")
def data16():
    return make_data(80, classes=4, shape=(1, 16, 16))


def _net(arch: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    return models.create(arch, num_classes=4, in_chans=1, **kw)


@pytest.mark.parametrize("arch", ["small_cnn", "resnet20", "resnet56", "vgg11_bn"])
def test_speedup_removes_channels_and_reaches_the_target(arch, data16):
    dense = _net(arch)
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    res = prune_structured(dense, data16, StructuredConfig(speedup=2.0, step=0.02))
    example = data16.images[:2].float()
    macs, params = count_macs_params(res.model, example[:1])
    assert res.speedup >= 2.0 and res.macs_before / macs >= 2.0 and params == res.params_after < res.params_before
    w0, w1 = widths(dense), widths(res.model)
    names = list(w0)
    assert w1[names[-1]][0] == w0[names[-1]][0] == 4         # classifier outputs never pruned
    assert w1[names[0]][0] == w0[names[0]][0]                # first layer's outputs kept
    assert sum(w[0] for w in w1.values()) < sum(w[0] for w in w0.values())
    assert res.model(example).shape == (2, 4)
    assert all(torch.equal(before[k], v) for k, v in dense.state_dict().items())  # the dense net is untouched


def test_channel_sparsity_layerwise_and_per_layer_budgets(data16):
    dense = _net("vgg11_bn")
    w0 = widths(dense)
    names = list(w0)
    res = prune_structured(dense, data16, StructuredConfig(channel_sparsity=0.5, scope="layerwise"))
    w1 = widths(res.model)
    for n in names[1:-1]:  # every hidden layer loses half its channels, the ends are kept
        assert w1[n][0] == int(w0[n][0] * (1 - 0.5)), n  # torch-pruning keeps int(n * (1 - ratio))
    budget = prune_structured(dense, data16, StructuredConfig(channel_sparsity=0.1, scope="layerwise",
                                                              layer_sparsity=((names[2], 0.75),)))
    wb = widths(budget.model)
    assert wb[names[2]][0] == int(w0[names[2]][0] * 0.25)
    assert wb[names[3]][0] == int(w0[names[3]][0] * 0.9)


def test_global_scope_ranks_across_layers(data16):
    dense = _net("vgg11_bn")
    g = widths(prune_structured(dense, data16, StructuredConfig(channel_sparsity=0.5, importance="lamp")).model)
    w0 = widths(dense)
    kept = [g[n][0] / w0[n][0] for n in list(w0)[1:-1]]
    assert max(kept) - min(kept) > 0.1  # a global ranking does not cut every layer alike


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3)
        self.conv2 = nn.Conv2d(8, 8, 3)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        h = self.conv2(self.conv1(x)).mean((2, 3))
        return self.fc(torch.as_tensor(h.detach().numpy()))  # leaves autograd: conv2 -> fc is invisible


@pytest.mark.parametrize("cfg, match", [
    (dict(speedup=1.0), "speedup=1.0 must be > 1"),
    (dict(speedup=0.5), "speedup"),
    (dict(channel_sparsity=1.0), "channel_sparsity"),
    (dict(speedup=2.0, channel_sparsity=0.5), "exactly one"),
    (dict(channel_sparsity=0.3, layer_sparsity=(("features.4", 1.0),)), "every channel of 'features.4'"),
    (dict(channel_sparsity=0.3, scope="everywhere"), "scope"),
    (dict(speedup=2.0, layer_sparsity=(("features.4", 0.5),)), "layer_sparsity"),
])
def test_bad_options_name_the_option(cfg, match):
    with pytest.raises(ConfigError, match=match):
        StructuredConfig(**cfg)


def test_bad_layers_and_models_are_refused_and_nothing_is_written(tmp_path, data16):
    dense = _net("small_cnn")
    src = tmp_path / "dense.safetensors"
    save_checkpoint(src, dense)
    out = tmp_path / "pruned.safetensors"
    with pytest.raises(ConfigError, match="unreachable"):
        structured_prune_checkpoint(src, out, data16, StructuredConfig(speedup=1000.0, step=0.1))
    with pytest.raises(ConfigError, match="unknown layer"):
        structured_prune_checkpoint(src, out, data16, StructuredConfig(channel_sparsity=0.3, layer_sparsity=(("nope", 0.5),)))
    first = next(iter(widths(dense)))
    with pytest.raises(ConfigError, match=f"every channel of layer '{first}'"):
        prune_structured(dense, data16, StructuredConfig(channel_sparsity=0.3, layer_sparsity=((first, 0.99),)))
    with pytest.raises(ConfigError, match="cannot trace model '_Untraceable'"):
        prune_structured(_Untraceable(), data16, StructuredConfig(channel_sparsity=0.5))
    with pytest.raises(ConfigError, match="cannot trace model 'resnet20'.*RuntimeError"):  # 3-channel net, 1-channel data
        prune_structured(models.create("resnet20", num_classes=4, in_chans=3), data16, StructuredConfig(speedup=2.0))
    with pytest.raises(ConfigError, match="importance"):
        prune_structured(dense, data16, StructuredConfig(channel_sparsity=0.5, importance="weight_norm"))
    written = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")]  # output locks are not outputs
    assert not out.exists() and written == ["dense.safetensors"]


def test_saved_model_loads_in_a_fresh_process_and_is_plain_safetensors(tmp_path, data16):
    dense = _net("resnet20")
    src, out = tmp_path / "dense.safetensors", tmp_path / "pruned.safetensors"
    save_checkpoint(src, dense)
    res = structured_prune_checkpoint(src, out, data16, StructuredConfig(speedup=2.0, importance="gcnet", step=0.05),
                                      train=data16, val=data16, finetune=TrainConfig(epochs=1, progress=False))
    x = data16.images[:4].float()
    with torch.no_grad():
        want = res.model(x)
    torch.save(x, tmp_path / "x.pt")
    code = ("import sys, torch; from shiftkit.prune.structured import load_structured; "
            "m = load_structured(sys.argv[1]); x = torch.load(sys.argv[2], weights_only=True); "
            "torch.save(m(x).detach(), sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")], check=True)
    got = torch.load(tmp_path / "y.pt", weights_only=True)
    assert torch.equal(got, want)
    assert out.stat().st_size < 0.7 * src.stat().st_size
    tensors = load_file(out)  # plain safetensors: the pruned shapes, widths in the metadata
    meta_widths = json.loads(read_metadata(out)["widths"])
    for name, (o, i) in meta_widths.items():
        assert tensors[f"{name}.weight"].shape[0] == o
    with pytest.raises(CheckpointError, match="not a structurally pruned"):
        load_structured(src)


def test_reproducible_same_seed_same_tensors(tmp_path, data16):
    dense = _net("small_cnn")
    files = []
    for k in range(2):
        res = prune_structured(dense, data16, StructuredConfig(speedup=1.5, importance="random", seed=3, step=0.05))
        save_structured(tmp_path / f"{k}.safetensors", res.model)
        files.append(tmp_path / f"{k}.safetensors")
    # safetensors writes the metadata map in hash order, so the header bytes vary; its content and tensors do not
    assert read_metadata(files[0]) == read_metadata(files[1])
    a, b = load_file(files[0]), load_file(files[1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = prune_structured(dense, data16, StructuredConfig(speedup=1.5, importance="random", seed=4, step=0.05))
    assert widths(other.model) != widths(load_structured(files[0]))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet50", "mobilevit_xxs"])
def test_timm_models_prune(arch):
    torch.manual_seed(0)
    net = models.create(arch, num_classes=4, in_chans=3)
    data = make_data(16, classes=4, shape=(3, 64, 64))
    res = prune_structured(net, data, StructuredConfig(channel_sparsity=0.3, calib_per_class=2))
    assert res.params_after < res.params_before and res.macs_after < res.macs_before
    assert res.model(data.images[:2].float()).shape == (2, 4)


def test_bn_recalibration_after_removal_uses_the_shared_helper(data16):
    from shiftkit.prune.connectivity import calibration_subset
    from shiftkit.train import recalibrate_bn

    dense = _net("vgg11_bn")
    stale = prune_structured(dense, data16, StructuredConfig(channel_sparsity=0.5)).model
    fresh = prune_structured(dense, data16, StructuredConfig(channel_sparsity=0.5, bn_recalibrate=True)).model
    bn = lambda m: [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]  # noqa: E731
    assert not torch.allclose(bn(stale)[1].running_var, bn(fresh)[1].running_var)
    recalibrate_bn(stale, calibration_subset(data16, 64, seed=0))
    for a, b in zip(bn(stale), bn(fresh)):
        assert torch.allclose(a.running_mean, b.running_mean, atol=1e-6) and torch.allclose(a.running_var, b.running_var, atol=1e-5)
