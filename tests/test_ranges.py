"""Issue 22 §2 / §3: every count, size, rate and seed is range-checked at validation (one line naming the key),
and what a config or a file may ask to allocate is capped before anything is allocated."""
import json
import re

import pytest

from shiftkit import models
from shiftkit.cli import main
from shiftkit.config import parse_experiment
from shiftkit.errors import CheckpointError, ConfigError

NAN, INF = float("nan"), float("inf")
TRANSFER = {"kind": "transfer", "name": "grasp"}


@pytest.mark.parametrize("raw, key", [
    ({"data": {"few_shot": -5}}, "data.few_shot"),
    ({"data": {"few_shot": 0}}, "data.few_shot"),
    ({"data": {"seed": -1}}, "data.seed"),
    ({"seed": 2**64}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"seed": -7}, "seed"),
    ({"budget": {"lr": NAN}}, "budget.lr"),
    ({"budget": {"lr": INF}}, "budget.lr"),
    ({"budget": {"lr_grid": [1e-3, NAN]}}, "budget.lr_grid.1"),
    ({"budget": {"lr_grid": [INF]}}, "budget.lr_grid.0"),
    ({"method": {**TRANSFER, "base_lr": NAN}}, "method.base_lr"),
    ({"method": {**TRANSFER, "source_lr": INF}}, "method.source_lr"),
    ({"method": {"kind": "prune", "structured": True, "name": "l2", "speedup": INF}}, "method.speedup"),
    ({"method": {"kind": "prune", "steps": 10**9}}, "method.steps"),
])
def test_config_values_out_of_range_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=re.escape(f"{key}: ")) as e:
        parse_experiment(raw, where="exp.yaml")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("options, match", [
    ({"lr": NAN}, "lr=nan"), ({"lr": INF}, "lr=inf"), ({"weight_decay": NAN}, "weight_decay=nan"),
    ({"seed": 2**40}, "seed=")])
def test_transfer_method_options_are_range_checked(options, match):
    with pytest.raises(ConfigError, match=match):
        parse_experiment({"method": {**TRANSFER, "options": options}})


def test_edges_stay_valid():
    exp = parse_experiment({"seed": 2**32 - 1, "data": {"few_shot": 1, "seed": 0}, "budget": {"lr_grid": [1e-4, 1.0]}})
    assert exp.seed == 2**32 - 1 and exp.data.few_shot == 1


@pytest.mark.parametrize("args, flag", [
    (["sweep", "x.yaml", "--threads", "0"], "--threads"),
    (["sweep", "x.yaml", "--workers", "0"], "--workers"),
    (["import", "x.pt", "--arch", "small_cnn", "--num-classes", "-3", "--out", "y"], "--num-classes"),
    (["import", "x.pt", "--arch", "small_cnn", "--in-chans", "0", "--out", "y"], "--in-chans"),
    (["eval", "x.safetensors", "--seed", "-1"], "--seed"),
    (["transfer", "--target", "7", "--few-shot", "-5"], "data.few_shot"),
    (["train", "--lr", "nan"], "budget.lr"),
])
def test_cli_options_out_of_range_are_one_line(args, flag, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and flag in err and len(err.splitlines()) == 1 and err.startswith("shiftkit: error:")


# ---- caps before allocating -----------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    ({"width": 0}, "empty layer 'features.0.weight'"),
    ({"width": 10**8}, "parameters .* over the limit"),
    ({"width": 200_000}, "parameters .* over the limit"),
    ({"width": -2}, "cannot be built"),
])
def test_model_size_is_checked_on_the_meta_device(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        models.create("small_cnn", **kwargs)


@pytest.mark.parametrize("num_classes, in_chans", [(0, 1), (-3, 1), (10, 0), (10**9, 1)])
def test_model_class_and_channel_counts(num_classes, in_chans):
    with pytest.raises(ConfigError, match="num_classes|in_chans|parameters"):
        models.create("small_cnn", num_classes=num_classes, in_chans=in_chans)


def test_run_with_a_huge_width_fails_before_data_or_training(tmp_path, fmnist_root, monkeypatch):
    from shiftkit.experiment import run_experiment

    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    exp = parse_experiment({"model": {"kwargs": {"width": 10**8}}, "out": str(tmp_path / "o")})
    with pytest.raises(ConfigError, match=r"model\.kwargs.*over the limit"):
        run_experiment(exp, progress=False)
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_images_too_small_for_the_model_name_the_size(tmp_path, monkeypatch):
    from PIL import Image

    from shiftkit.experiment import run_experiment

    for c in "ab":
        (tmp_path / "data" / "d0" / c).mkdir(parents=True)
        for i in range(10):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / "data" / "d0" / c / f"{i}.png")
    exp = parse_experiment({"data": {"name": "image_folder", "root": str(tmp_path / "data"), "options": {"size": 1}},
                            "out": str(tmp_path / "o")})
    with pytest.raises(ConfigError, match=r"cannot run on data image_folder.*\(3, 1, 1\) images.*data\.options\.size"):
        run_experiment(exp, progress=False)


def test_structured_step_is_capped():
    from shiftkit.prune.structured import MAX_STEPS, StructuredConfig

    with pytest.raises(ConfigError, match=r"step=1e-09 means 9e\+08 pruning steps.*at most 1000"):
        StructuredConfig(speedup=2.0, step=1e-9)
    assert StructuredConfig(speedup=2.0, step=0.9 / MAX_STEPS).step  # the edge is accepted


def test_prune_rounds_are_capped():
    from shiftkit.prune.pruner import sparsity_schedule

    with pytest.raises(ConfigError, match="steps=1000000000 must be in 1..1000"):
        sparsity_schedule(0.5, 10**9)


@pytest.mark.parametrize("shape, match", [
    ([1, 3, 60000, 60000], "over the limit"), ([1, 1, -28, 28], "positive integers"), ("big", "positive integers"),
    ([2, 1, 28, 28], "positive integers"), ([1, 1, 28.5, 28], "positive integers"), ([1, 1, True, 28], "positive")])
def test_structured_file_input_shape_is_capped(shape, match, tmp_path):
    from safetensors.torch import save_file

    from shiftkit.checkpoints import model_metadata
    from shiftkit.prune.structured import META_KEY, load_structured

    net = models.create("small_cnn", num_classes=10, in_chans=1, width=4)
    meta = {**model_metadata(net), META_KEY: json.dumps({"history": [], "input_shape": shape})}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "s.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match=rf"s\.safetensors: 'structured' metadata input_shape .*{match}"):
        load_structured(tmp_path / "s.safetensors")


@pytest.mark.parametrize("size", [0, 10**6, 4097, 2.5, True])
def test_reader_resize_side_is_capped(size, tmp_path):
    from PIL import Image

    from shiftkit.data._images import read_images

    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(ConfigError, match=r"size=.* must be an integer in 1\.\.4096"):
        read_images([tmp_path / "a.png"], size=size)


@pytest.mark.parametrize("bins", [0, -3, 2.5])
def test_driftfmnist_bins_must_be_positive(bins, fmnist_root):
    from shiftkit.data import load_domains

    with pytest.raises(ConfigError, match=r"bins=.* must be an integer >= 1 \(data\.options\.bins\)"):
        load_domains("driftfmnist", fmnist_root, bins=bins)


@pytest.mark.parametrize("n", [-5, 0, 2.5, True])
def test_library_few_shot_refuses_non_positive_counts(n, tiny_dataset):
    from shiftkit.data.domains import few_shot, split_domain

    with pytest.raises(ConfigError, match=r"few-shot n_train=.* must be an integer >= 1"):
        few_shot(split_domain("d", tiny_dataset), n)


def test_training_batch_bytes_are_capped_and_eval_batches_shrink(tiny_dataset, monkeypatch):
    """tiny_dataset: 12x12 gray images (576 float32 bytes); a cap of 20 images a batch stands in for 4 GiB."""
    import torch

    from shiftkit import train

    net = models.create("small_cnn", num_classes=4, in_chans=1, width=4)
    full = train.predict_logits(net, tiny_dataset)
    monkeypatch.setattr(train, "MAX_BATCH_BYTES", 20 * 576)
    with pytest.raises(ConfigError, match=r"budget\.batch_size=32 of 1x12x12 images is .* GiB .*MAX_BATCH_BYTES"):
        train.fit(net, tiny_dataset, None, train.TrainConfig(epochs=1, batch_size=32, progress=False))
    seen, original = [], train.iterate_batches

    def recording(ds, batch_size, **kw):
        seen.append(batch_size)
        return original(ds, batch_size, **kw)

    monkeypatch.setattr(train, "iterate_batches", recording)
    assert torch.allclose(train.predict_logits(net, tiny_dataset), full, atol=1e-6) and seen == [5]  # (20*576/4)//576
