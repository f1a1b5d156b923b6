"""`shiftkit run` end to end on the tiny IDX fixture: train, prune, transfer write result.json via the library."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shiftkit import models
from shiftkit.checkpoints import load_checkpoint, read_metadata
from shiftkit.cli import main
from shiftkit.config import parse_experiment
from shiftkit.errors import ConfigError
from shiftkit.interop import export_checkpoint
from shiftkit.experiment import run_experiment


def test_run_train_from_yaml(ux_env, capsys):
    main(["run", "examples/train.yaml", "--epochs", "1", "--out", "runs/t"])
    r = json.loads(Path("runs/t/result.json").read_text())
    assert r["kind"] == "train" and r["experiment"]["budget"]["epochs"] == 1 and len(r["history"]) == 1
    assert set(r["domains"]) == {f"bin{i}" for i in range(8)} and 0 <= r["shifted_mean"] <= 1
    net = models.create("small_cnn", num_classes=10, in_chans=1, width=32)
    load_checkpoint("runs/t/model.safetensors", net)
    assert "runs/t/result.json" in capsys.readouterr().out.replace("\n", "")


def test_run_prune_matches_the_library(ux_env, trained):
    raw = {"method": {"kind": "prune", "name": "magnitude", "sparsity": 0.8, "checkpoint": trained["checkpoint"],
                      "options": {"keep_last": True}}, "budget": {"epochs": 1}, "out": "runs/p",
           "eval": {"corruptions": True}}
    r = run_experiment(parse_experiment(raw), progress=False)
    assert abs(r["true_sparsity"] - 0.8) < 0.01 and r["layers"][-1]["sparsity"] == 0.0  # classifier kept dense
    assert 0 <= r["corruption_mean"] <= 1 and all(k.endswith(("@1", "@2", "@3", "@4", "@5")) for k in r["corruptions"])
    meta = read_metadata("runs/p/model.safetensors")
    assert meta["method"] == "magnitude" and float(meta["sparsity"]) > 0.79


def test_run_transfer_builds_zoo_and_records_curve(ux_env):
    raw = {"data": {"target": 7, "few_shot": 30}, "model": {"kwargs": {"width": 8}},
           "method": {"kind": "transfer", "name": "grasp", "options": {"tau": 0.0}, "base_epochs": 1,
                      "source_epochs": 1, "order": "reverse"},
           "budget": {"epochs": 1, "lr": 1e-3}, "eval": {"domains": False}, "out": "runs/g"}
    r = run_experiment(parse_experiment(raw), progress=False)
    assert r["sources"] == [f"source_bin{i}" for i in range(6, -1, -1)]  # reverse temporal order, target left out
    assert [c["k"] for c in r["curve"]] == [1, 2, 3, 4, 5, 6, 7, 7] and r["curve"][-1]["source"] == "final"
    assert r["target"] == "bin7" and len(r["records"]) == 7 and Path("runs/g/zoo/zoo.json").is_file()
    # the merged model, exported, loads into a plain torch module with load_file + load_state_dict
    export_checkpoint(r["checkpoint"], "merged.safetensors")
    plain = models.create("small_cnn", num_classes=10, in_chans=1, width=8)
    plain.load_state_dict(load_file("merged.safetensors"), strict=True)
    merged = models.create("small_cnn", num_classes=10, in_chans=1, width=8)
    load_checkpoint(r["checkpoint"], merged)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), merged.eval()(x))
    # a deferred method (merge all, then fine-tune) has no per-source curve, only the final point
    raw["method"]["name"], raw["method"]["options"], raw["out"] = "fusion", {}, "runs/f"
    raw["method"]["zoo"] = "runs/g/zoo"
    r = run_experiment(parse_experiment(raw), progress=False)
    assert [c["source"] for c in r["curve"]] == ["final"] and r["finish"]["epochs"] == 7


def test_transfer_sources_can_be_pt_files(ux_env, trained):
    """Sources given as `.pt` state dicts (DataParallel-prefixed) are imported (weights_only) and merged."""
    net = models.create("small_cnn", num_classes=10, in_chans=1, width=32)
    load_checkpoint(trained["checkpoint"], net)
    paths = []
    for i in range(2):
        torch.save({"state_dict": {f"module.{k}": v + 0.01 * i if v.is_floating_point() else v
                                   for k, v in net.state_dict().items()}}, f"s{i}.pt")
        paths.append(f"s{i}.pt")
    raw = {"data": {"target": 3, "few_shot": 30}, "model": {"kwargs": {"width": 32}},
           "method": {"kind": "transfer", "name": "sequential_all", "sources": paths},
           "budget": {"epochs": 0}, "eval": {"domains": False}, "out": "runs/pt"}
    r = run_experiment(parse_experiment(raw), progress=False)
    assert r["sources"] == ["s0", "s1"] and Path("runs/pt/imported/s1.safetensors").is_file()
    assert read_metadata("runs/pt/imported/s0.safetensors")["imported_from"] == "s0.pt"


def test_domain_indices_are_checked(ux_env):
    with pytest.raises(ConfigError, match="data.target=9: the dataset has 8 domains"):
        run_experiment(parse_experiment({"method": {"kind": "transfer"}, "data": {"target": 9}, "out": "runs/x"}))
    with pytest.raises(ConfigError, match="data.domain=-9"):
        run_experiment(parse_experiment({"data": {"domain": -9}, "out": "runs/y"}))


def test_zoo_batch_size_and_learning_rates_from_flags_and_yaml(ux_env):
    import json

    from shiftkit.cli import main
    from shiftkit.config import parse_experiment
    from shiftkit.experiment import prepare, zoo_path

    main(["sources", "--width", "4", "--base-epochs", "1", "--source-epochs", "1", "--target", "7", "--batch-size", "32",
          "--base-lr", "0.003", "--source-lr", "0.002", "--out", "zoo_flags"])
    cfg = json.loads(Path("zoo_flags/zoo.json").read_text())["config"]
    assert (cfg["batch_size"], cfg["base_lr"], cfg["source_lr"]) == (32, 0.003, 0.002)
    exp = parse_experiment({"method": {"kind": "transfer", "zoo": "zoo_yaml", "base_epochs": 1, "source_epochs": 1,
                                       "zoo_batch_size": 16, "source_lr": 1e-4}, "model": {"kwargs": {"width": 4}},
                            "data": {"target": 7}})
    prepare(exp)
    cfg = json.loads((zoo_path(exp) / "zoo.json").read_text())["config"]
    assert (cfg["batch_size"], cfg["source_lr"], cfg["base_lr"]) == (16, 1e-4, 1e-3)


def test_pipeline_merges_then_prunes_structurally_on_the_target(ux_env):
    import json

    from shiftkit.api import load_model
    from shiftkit.config import parse_experiment
    from shiftkit.errors import ConfigError
    from shiftkit.experiment import run_experiment

    raw = {"data": {"target": 7, "few_shot": 30}, "model": {"kwargs": {"width": 8}}, "budget": {"epochs": 1},
           "pipeline": [{"kind": "transfer", "name": "grasp", "base_epochs": 1, "source_epochs": 1},
                        {"kind": "prune", "structured": True, "name": "l1", "speedup": 1.3,
                         "budget": {"epochs": 2, "lr": 1e-3}}], "out": "runs/pipe"}  # a longer recovery
    r = run_experiment(parse_experiment(raw), progress=False)
    merged, pruned = r["steps"]
    assert merged["kind"] == "transfer" and pruned["kind"] == "prune" and pruned["speedup"] >= 1.3
    assert pruned["experiment"]["method"]["checkpoint"] == merged["checkpoint"]  # the merged model was pruned
    # the prune step's own budget over the shared one; the merge keeps the shared one
    assert pruned["experiment"]["budget"] == {"epochs": 2, "lr": 1e-3, "batch_size": None, "lr_grid": None}
    assert merged["experiment"]["budget"] == {"epochs": 1, "lr": None, "batch_size": None, "lr_grid": None}
    assert pruned["domain"] == merged["target"]  # fine-tuned on the target's few labels, tested on its test pool
    assert pruned["test"]["n"] == merged["test"]["n"]
    assert json.loads(Path("runs/pipe/result.json").read_text())["test"] == pruned["test"]
    import torch

    from shiftkit.prune.structured import count_macs_params

    net = load_model(r["checkpoint"])  # the narrower model, rebuilt from its file alone
    macs, params = count_macs_params(net, torch.zeros(1, 1, 28, 28))
    assert [macs, params] == [pruned["macs"][1], pruned["params"][1]] and params < pruned["params"][0]
    with pytest.raises(ConfigError, match="pipeline"):
        parse_experiment({**raw, "pipeline": [raw["pipeline"][0], {"kind": "train"}]})
    with pytest.raises(ConfigError, match="method.budget is a pipeline step's own budget"):
        parse_experiment({"method": raw["pipeline"][1]})


def test_lr_grid_keeps_the_best_validation_fine_tune_and_replaces_the_shared_lr(ux_env, monkeypatch):
    from shiftkit import train
    from shiftkit.config import parse_experiment
    from shiftkit.experiment import run_experiment

    real_fit, seen = train.fit, []

    def recording_fit(net, tr, val, cfg, **kw):
        res = real_fit(net, tr, val, cfg, **kw)
        seen.append((cfg.lr, res.best_val_accuracy, {k: v.clone() for k, v in net.state_dict().items()}))
        return res

    monkeypatch.setattr(train, "fit", recording_fit)
    raw = {"data": {"target": 7, "few_shot": 30}, "model": {"kwargs": {"width": 4}}, "budget": {"epochs": 1, "lr": 5e-5},
           "pipeline": [{"kind": "transfer", "name": "greedy_soup", "base_epochs": 1, "source_epochs": 1},
                        {"kind": "prune", "structured": True, "name": "l1", "speedup": 1.3,
                         "budget": {"epochs": 2, "lr_grid": [1e-4, 3e-2]}}], "out": "runs/pipe_grid"}
    r = run_experiment(parse_experiment(raw), progress=False)
    merged, pruned = r["steps"]
    assert pruned["experiment"]["budget"] == {"epochs": 2, "lr": None, "batch_size": None, "lr_grid": [1e-4, 3e-2]}
    assert merged["experiment"]["budget"]["lr"] == 5e-5  # the merge keeps the shared lr
    grid_runs = seen[-2:]  # the prune step's fine-tunes, one per lr, in grid order
    assert [lr for lr, _, _ in grid_runs] == [1e-4, 3e-2]
    vals = {repr(lr): v for lr, v, _ in grid_runs}
    assert pruned["val_accuracy_by_lr"] == vals
    best = max(grid_runs, key=lambda t: (t[1], -t[0]))
    assert pruned["lr_chosen"] == best[0]
    saved = load_file(pruned["checkpoint"])
    assert all(torch.equal(saved[k], v) for k, v in best[2].items() if k in saved)  # the chosen run is what was saved
    with pytest.raises(ConfigError, match="lr or lr_grid"):
        parse_experiment({"budget": {"lr": 1e-3, "lr_grid": [1e-4]}})
    with pytest.raises(ConfigError, match="distinct positive"):
        parse_experiment({"budget": {"lr_grid": [1e-4, 1e-4]}})
    with pytest.raises(ConfigError, match="transfer method takes one lr"):
        run_experiment(parse_experiment({**raw, "pipeline": [], "method": {"kind": "transfer", "name": "greedy_soup"},
                                         "budget": {"lr_grid": [1e-4]}, "out": "runs/t_grid"}), progress=False)


def test_a_zoo_is_never_completed_with_other_settings(ux_env):
    from shiftkit.config import parse_experiment
    from shiftkit.errors import ConfigError
    from shiftkit.experiment import prepare

    def exp(target, seed):
        return parse_experiment({"method": {"kind": "transfer", "zoo": "zoo_mix", "base_epochs": 1, "source_epochs": 1},
                                 "model": {"kwargs": {"width": 4}}, "data": {"target": target}, "seed": seed})

    prepare(exp(7, 0))
    before = {p.name: p.read_bytes() for p in Path("zoo_mix").glob("*.safetensors")}
    prepare(exp(7, 1))  # complete for this target: used as built (its zoo.json records seed 0)
    with pytest.raises(ConfigError, match="other settings.*seed"):
        prepare(exp(6, 1))  # would add bin 7's source with seed 1 beside seed-0 sources
    assert {p.name: p.read_bytes() for p in Path("zoo_mix").glob("*.safetensors")} == before
