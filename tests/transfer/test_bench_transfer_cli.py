"""`shiftkit bench transfer` settings flags: refused values name their option, a setting gets its own result
file, and every stored transfer result's command rebuilds exactly its file name and config."""
from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest
import torch

from shiftkit.bench import transfer as bench_transfer
from shiftkit.bench.transfer import AccuracyConfig, result_name
from shiftkit.cli import main

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """run_accuracy replaced by a recorder (the benchmark itself is hours of training): what the CLI asked for."""
    calls = []
    monkeypatch.setattr(bench_transfer, "run_accuracy", lambda cfg, out, **kw: calls.append((cfg, out, kw)))
    monkeypatch.chdir(tmp_path)  # the section update writes benchmarks/RESULTS.md here
    return calls


@pytest.mark.parametrize("flag, value", [("--val-folds", "0.5"), ("--val-folds", "1"), ("--orders", "bogus"),
                                         ("--orders", "temporal,temporal"), ("--lr-grid", "fast"),
                                         ("--lr-grid", "0,1e-3"), ("--zoo-seed", "-1")])
def test_bad_setting_is_one_line_naming_the_option(recorded, capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        main(["bench", "transfer", flag, value, "--results", "r"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and flag in err and len(err.strip().splitlines()) == 1, err
    assert not recorded


def test_settings_write_their_own_suffixed_file(recorded, tmp_path):
    main(["bench", "transfer", "--targets", "7", "--seeds", "0", "--methods", "best_single_source", "--val-folds", "5",
          "--lr-grid", "5e-5,3e-4", "--zoo-seed", "2", "--orders", "reverse,temporal", "--no-last-epoch",
          "--results", "r", "--tag", "x"])
    (cfg, out, kw), = recorded
    assert out == Path("r/transfer_accuracy_driftfmnist_100_kfold5_lrgrid_zoo2_x.json")
    assert (cfg.val_folds, cfg.lr_grid, cfg.zoo_seed, cfg.orders, cfg.last_epoch_methods) == (
        5, (5e-5, 3e-4), 2, ("reverse", "temporal"), ())
    main(["bench", "transfer", "--targets", "7", "--results", "r"])  # the reference setting: the plain name
    assert recorded[1][1] == Path("r/transfer_accuracy_driftfmnist_100.json")
    assert recorded[1][0].orders == ("temporal", "reverse", "random") and recorded[1][0].last_epoch_methods


def test_result_name_keeps_settings_apart():
    cfg = AccuracyConfig()
    names = {result_name("d", 100, dataclasses.replace(cfg, **kw))
             for kw in ({}, {"val_folds": 5}, {"val_folds": 3}, {"lr_grid": (1e-3,)}, {"zoo_seed": 1}, {"model": "resnet20"})}
    assert len(names) == 6 and "transfer_accuracy_d_100.json" in names
    # orders choose which rows run, not what a row is: they share the file
    assert result_name("d", 100, dataclasses.replace(cfg, orders=("temporal",))) == "transfer_accuracy_d_100.json"


@pytest.mark.parametrize("path", sorted(RESULTS.glob("transfer_accuracy_*.json")), ids=lambda p: p.name)
def test_stored_command_rebuilds_its_file_and_config(recorded, path):
    stored = json.loads(path.read_text())
    argv = shlex.split(stored["commands"][-1])
    assert argv[:3] == ["shiftkit", "bench", "transfer"]
    main([*argv[1:], "--results", "r"])
    (cfg, out, _), = recorded
    assert out.name == path.name
    assert json.loads(json.dumps(dataclasses.asdict(cfg))) == stored["config"]


def test_device_reaches_the_run_and_keeps_gpu_rows_in_their_own_file(recorded, capsys):
    main(["bench", "transfer", "--device", "cpu", "--results", "r"])
    (_, out, kw), = recorded
    assert kw["device"] == "cpu" and out.name == "transfer_accuracy_driftfmnist_100.json"
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as e:
            main(["bench", "transfer", "--device", "cuda", "--results", "r"])
        assert e.value.code == 2 and "no CUDA" in capsys.readouterr().err and len(recorded) == 1
    else:
        assert result_name("d", 100, AccuracyConfig(), device="cuda") == "transfer_accuracy_d_100_cuda.json"
