"""Every path on a CUDA device: training, evaluation, BN, each transfer method, connectivity, pruning, checkpoints,
mixed precision and reproducibility. Skipped without CUDA (see conftest.py)."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from shiftkit import prune, transfer
from shiftkit.checkpoints import load_checkpoint, save_checkpoint
from shiftkit.device import max_memory_allocated, model_device, reset_peak_memory
from shiftkit.prune.connectivity import compute_connectivity
from shiftkit.prune.structured import StructuredConfig, prune_structured
from shiftkit.train import TrainConfig, evaluate, fit, recalibrate_bn

from gpu_fixtures import make_domain, tiny_model

FAST = {"initial_epochs": 1, "finetune_epochs": 1, "batch_size": 16}


def _weights(net) -> torch.Tensor:
    return torch.cat([t.detach().float().flatten().cpu() for t in net.state_dict().values()])


def test_fit_evaluate_and_bn_run_on_the_gpu_and_agree_with_the_cpu(dev):
    d = make_domain("d", 0.0, n=256)
    net = tiny_model().to(dev)
    fit(net, d.train, d.val, TrainConfig(epochs=2, batch_size=32, progress=False))
    assert model_device(net) == dev and torch.isfinite(_weights(net)).all()
    on_gpu = evaluate(net, d.test)
    on_cpu = evaluate(copy.deepcopy(net).cpu(), d.test)
    assert on_gpu["accuracy"] == pytest.approx(on_cpu["accuracy"], abs=1 / len(d.test) + 1e-9)
    assert on_gpu["loss"] == pytest.approx(on_cpu["loss"], rel=1e-3)
    assert recalibrate_bn(net, d.train) > 0 and model_device(net) == dev


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_finite_weights(dev, precision):
    if precision == "fp16" and dev.type == "cpu":
        pytest.skip("fp16 autocast needs a GPU")
    d = make_domain("d", 0.0, n=256)
    net = tiny_model().to(dev)
    fit(net, d.train, d.val, TrainConfig(epochs=5, lr=1e-2, batch_size=32, progress=False, precision=precision))
    assert torch.isfinite(_weights(net)).all() and evaluate(net, d.test)["accuracy"] > 0.6  # fp32 and bf16 reach > 0.9 on the CPU


def test_same_seed_same_weights_on_the_gpu(dev):
    d = make_domain("d", 0.0, n=256)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        net = tiny_model().to(dev)
        fit(net, d.train, d.val, TrainConfig(epochs=2, batch_size=32, progress=False))
        runs.append(_weights(net))
    assert torch.equal(runs[0], runs[1])


def test_saved_on_the_gpu_loads_on_the_cpu(dev, tmp_path):
    net = tiny_model().to(dev)
    save_checkpoint(tmp_path / "m.safetensors", net)
    cpu = tiny_model()
    load_checkpoint(tmp_path / "m.safetensors", cpu)
    assert model_device(cpu).type == "cpu" and torch.equal(_weights(cpu), _weights(net))


def test_masks_stay_zero_after_fine_tuning_on_the_gpu(dev):
    d = make_domain("d", 0.0, n=256)
    net = tiny_model().to(dev)
    masks = prune.prune_model(net, prune.create("magnitude"), 0.7)
    fit(net, d.train, d.val, TrainConfig(epochs=1, batch_size=32, progress=False), masks=masks)
    params = dict(net.named_parameters())
    assert all(float(params[n].detach()[~m.to(dev)].abs().sum()) == 0.0 for n, m in masks.items())


@pytest.mark.parametrize("method", ["gcnet", "snip", "synflow", "random", "kernel_l1"])
def test_pruning_criteria_on_the_gpu(dev, method):
    d = make_domain("d", 0.0, n=256)
    net = tiny_model().to(dev)
    masks = prune.prune_model(net, prune.create(method), 0.5, data=d.train)
    assert masks and all(m.dtype == torch.bool for m in masks.values())
    assert evaluate(net, d.test)["n"] == len(d.test)


def test_connectivity_on_the_gpu_equals_the_cpu(dev):
    d = make_domain("d", 0.0, n=256)
    net = tiny_model().eval()
    cpu = compute_connectivity(net, d.train)
    gpu = compute_connectivity(copy.deepcopy(net).to(dev), d.train)
    assert cpu.keys() == gpu.keys()
    assert all(torch.allclose(cpu[k], gpu[k].cpu(), atol=1e-5) for k in cpu)


@pytest.mark.parametrize("importance", ["l2", "gcnet", "taylor"])
def test_structured_pruning_on_the_gpu(dev, importance):
    d = make_domain("d", 0.0, n=256)
    net = tiny_model().to(dev)
    res = prune_structured(net, d.train, StructuredConfig(importance=importance, channel_sparsity=0.5))
    assert model_device(res.model) == dev and res.macs_after < res.macs_before
    assert evaluate(res.model, d.test)["n"] == len(d.test)


@pytest.mark.parametrize("method", transfer.names())
def test_every_transfer_method_on_the_gpu(dev, gpu_zoo, tmp_path, method):
    _, target, base, sources = gpu_zoo
    net = tiny_model().to(dev)
    fields = {f.name for f in dataclasses.fields(transfer.config_class(method))}
    opts = {k: v for k, v in FAST.items() if k in fields}
    if "base" in fields:
        opts["base"] = str(base)
    merger = transfer.create(method, net, target, run_dir=tmp_path, **opts)
    model = transfer.run_sources(merger, [str(s) for s in sources])
    m = evaluate(model, target.test)
    assert m["n"] == len(target.test) and m["accuracy"] >= 0
    assert model_device(model) == dev


@pytest.mark.parametrize("method", ["grasp", "grasp_taylor"])
def test_grasp_gpu_memory_is_flat_in_k(dev, gpu_zoo, method):
    """Peak memory torch allocated on the GPU absorbing 2 vs 6 sources (no fine-tuning): within 5%."""
    if dev.type != "cuda":
        pytest.skip("torch's allocator statistics are CUDA's")
    _, target, _, sources = gpu_zoo
    peaks = []
    for k in (2, 6):
        net = tiny_model().to(dev)
        reset_peak_memory(dev)
        merger = transfer.create(method, net, target, initial_epochs=0, finetune_epochs=0, batch_size=16)
        transfer.run_sources(merger, [str(s) for s in (sources * 2)[:k]])
        peaks.append(max_memory_allocated(dev))
    assert peaks[1] <= 1.05 * peaks[0]
