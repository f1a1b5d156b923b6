"""Device plumbing, tested on the CPU (CI has no GPU; tests/gpu runs the same paths on CUDA): resolving a
setting, data following the model, precision reaching the loop, and the one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from shiftkit import device as dv
from shiftkit import models
from shiftkit.cli import main
from shiftkit.config import parse_experiment
from shiftkit.errors import ConfigError
from shiftkit.train import TrainConfig, fit, iterate_batches

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")


@no_cuda
def test_auto_is_the_cpu_without_an_accelerator():
    assert dv.resolve_device("auto") == torch.device("cpu")
    assert dv.resolve_device(None) == torch.device("cpu")
    assert dv.resolve_device("CPU") == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_an_absent_gpu_is_one_line(spec):
    with pytest.raises(ConfigError, match=r"device='cuda.*use --device cpu"):
        dv.resolve_device(spec)


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu", "cuda:0;rm", ""])
def test_a_misspelled_device_lists_the_choices(spec):
    with pytest.raises(ConfigError, match="valid: auto | cpu"):
        dv.resolve_device(spec)


def test_config_keys_validate_syntax_and_name_the_key():
    exp = parse_experiment({"device": "CUDA:0", "precision": "bf16"})
    assert (exp.device, exp.precision) == ("cuda:0", "bf16")  # a config may name the GPU it will run on
    with pytest.raises(ConfigError, match="device"):
        parse_experiment({"device": "tpu"})
    with pytest.raises(ConfigError, match="precision"):
        parse_experiment({"precision": "fp8"})


def test_fp16_on_the_cpu_is_refused_bf16_is_not():
    with pytest.raises(ConfigError, match="fp16.*needs a GPU"):
        dv.check_precision("fp16", torch.device("cpu"))
    assert dv.check_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(ConfigError, match="precision="):
        TrainConfig(precision="fp8")


def test_batches_follow_the_order_and_scale_uint8(tiny_dataset):
    order = torch.randperm(len(tiny_dataset), generator=torch.Generator().manual_seed(0))
    got = list(dv.batches(tiny_dataset.images, tiny_dataset.labels, 64, order=order, device=torch.device("cpu")))
    assert [len(y) for _, y in got] == [64, 64, 64, 8]
    x = torch.cat([b[0] for b in got])
    assert x.dtype == torch.float32 and torch.equal(x, tiny_dataset.images[order].float() / 255)
    assert torch.equal(torch.cat([b[1] for b in got]), tiny_dataset.labels[order])


def test_model_device_and_place():
    net = models.create("small_cnn", num_classes=4, in_chans=1, width=4)
    assert dv.model_device(net) == torch.device("cpu")
    assert dv.model_device(torch.nn.ReLU()) == torch.device("cpu")  # no tensors: the host
    assert dv.place(net, None) is net and dv.place(net, "cpu") is net
    with torch.device("meta"):
        ghost = models.create("small_cnn", num_classes=4, in_chans=1, width=4)
    assert dv.model_device(ghost).type == "meta"  # data would follow it there


def test_bf16_reaches_the_training_loop(tiny_dataset):
    """The same seed in fp32 and bf16 gives different weights (autocast ran), both finite."""
    nets = []
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        net = models.create("small_cnn", num_classes=4, in_chans=1, width=4)
        fit(net, tiny_dataset, None, TrainConfig(epochs=1, batch_size=32, progress=False, precision=precision))
        nets.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert all(torch.isfinite(n).all() for n in nets)
    assert not torch.equal(nets[0], nets[1])


def test_iterate_batches_on_the_cpu_is_the_plain_index(tiny_dataset):
    gen = torch.Generator().manual_seed(3)
    a = list(iterate_batches(tiny_dataset, 50, shuffle=True, generator=gen, device=torch.device("cpu")))
    gen = torch.Generator().manual_seed(3)
    order = torch.randperm(len(tiny_dataset), generator=gen)
    assert all(torch.equal(y, tiny_dataset.labels[order[i * 50:(i + 1) * 50]]) for i, (_, y) in enumerate(a))


@pytest.fixture()
def data_env(fmnist_root, monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _train(out: str, *extra: str) -> None:
    main(["train", "--epochs", "1", "--batch-size", "64", "--out", out, *extra])


@no_cuda
def test_device_cpu_and_auto_give_the_same_bytes(data_env, capsys):
    _train("a.safetensors")
    _train("b.safetensors", "--device", "cpu")
    assert Path("a.safetensors").read_bytes() == Path("b.safetensors").read_bytes()
    ra, rb = (json.loads(Path(f"{n}/result.json").read_text()) for n in "ab")
    assert ra["provenance"] == rb["provenance"] == {"device": "cpu", "precision": "fp32", "deterministic": True}
    assert ra["test"] == rb["test"]


@no_cuda
def test_cli_cuda_without_a_gpu_fails_before_any_work(data_env, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", "1", "--device", "cuda", "--out", "m.safetensors"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CUDA" in err
    assert not Path("m.safetensors").exists() and not Path("m/result.json").exists()

