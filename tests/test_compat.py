"""Issue 22 §2: a checkpoint meeting data it was not built for (classes, channels) -> one line naming both,
for eval, prune, transfer and run, before any forward pass."""
import re

import pytest

from shiftkit import models
from shiftkit.checkpoints import save_checkpoint
from shiftkit.cli import main
from shiftkit.config import parse_experiment
from shiftkit.errors import ConfigError
from shiftkit.experiment import run_experiment


@pytest.fixture()
def ckpts(tmp_path):
    out = {}
    for name, classes, chans in (("c3", 3, 1), ("c12", 12, 1), ("rgb", 10, 3)):
        out[name] = tmp_path / f"{name}.safetensors"
        save_checkpoint(out[name], models.create("small_cnn", num_classes=classes, in_chans=chans, width=4))
    return out


def _cli(args, root, capsys, monkeypatch):
    monkeypatch.setenv("SHIFTKIT_DATA", str(root))
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code, capsys.readouterr().err


MATCH = {"c3": "3 classes but the data has 10", "c12": "12 classes but the data has 10",
         "rgb": "3 input channel.s. but the data's images have 1"}


@pytest.mark.parametrize("case", ["c3", "c12", "rgb"])
@pytest.mark.parametrize("command", ["eval", "prune"])
def test_cli_names_model_and_data(case, command, ckpts, tmp_path, fmnist_root, capsys, monkeypatch):
    args = [command, str(ckpts[case]), "--dataset", "driftfmnist"]
    args += ["--out", str(tmp_path / "p")] if command == "prune" else []
    code, err = _cli(args, fmnist_root, capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and len([l for l in lines if l.startswith("shiftkit: error:")]) == 1
    assert str(ckpts[case]) in err and "driftfmnist" in err
    assert re.search(MATCH[case], err)
    assert not (tmp_path / "p" / "model.safetensors").exists()


@pytest.mark.parametrize("case", ["c3", "rgb"])
def test_transfer_run_refuses_a_base_that_does_not_fit(case, ckpts, tmp_path, fmnist_root, monkeypatch):
    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    exp = parse_experiment({"method": {"kind": "transfer", "name": "grasp", "sources": [str(ckpts[case])] * 2},
                            "budget": {"epochs": 0}, "out": str(tmp_path / "t")})
    with pytest.raises(ConfigError, match=MATCH[case]):
        run_experiment(exp, progress=False)


def test_api_own_sets_may_lack_the_last_class(ckpts):
    """A user's set whose labels stop short of the model's classes is fine; more labels than outputs is not."""
    import torch

    from shiftkit.api import evaluate_under_shift
    from shiftkit.data import ArrayDataset

    net = models.create("small_cnn", num_classes=3, in_chans=1, width=4)
    few = ArrayDataset(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.tensor([0, 1, 1, 0]), [])
    assert evaluate_under_shift(net, {"few": few})["few"]["n"] == 4
    many = ArrayDataset(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.tensor([0, 1, 5, 0]), [])
    with pytest.raises(ConfigError, match="3 classes but the data has 6"):
        evaluate_under_shift(net, {"many": many})


def test_api_prune_and_merge_check_the_data(ckpts, tiny_dataset):
    """tiny_dataset: 4 classes, 1 channel; a 3-class model sees label 3, an RGB model gray images."""
    from shiftkit.api import load_model, merge, prune

    with pytest.raises(ConfigError, match="3 classes but the data has 4"):
        prune(load_model(ckpts["c3"]), "magnitude", 0.5, calibration=tiny_dataset)
    with pytest.raises(ConfigError, match=r"model 'small_cnn' does not fit data target: .*3 input channel"):
        merge([ckpts["rgb"]], (tiny_dataset, tiny_dataset))
