"""Experiment YAML: validation errors name file, key and line; overrides; every command flag maps to a key."""
from __future__ import annotations

from pathlib import Path

import pytest
import typer

from shiftkit.cli import app, main
from shiftkit.cli._common import flag_keys, flag_overrides, from_flags
from shiftkit.config import (BudgetConfig, DataConfig, EvalConfig, Experiment, ModelConfig, PruneMethod, TrainMethod,
                             TransferMethod, apply_overrides, load_experiment, method_options, parse_experiment)
from shiftkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path, text: str):
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["train.yaml", "grasp.yaml", "prune.yaml"])
def test_examples_validate(name):
    exp = load_experiment(REPO / "examples" / name)
    assert isinstance(exp, Experiment) and exp.method.kind in name.replace("grasp", "transfer")


def test_pipeline_example_validates():
    exp = load_experiment(REPO / "examples" / "merge_then_prune.yaml")
    assert [s.kind for s in exp.pipeline] == ["transfer", "prune"] and exp.pipeline[1].structured
    assert parse_experiment(exp.dump()) == exp  # a dumped pipeline (sweeps, result.json) parses back
    with pytest.raises(ConfigError, match="either method or pipeline"):
        parse_experiment({**exp.dump(), "method": {"kind": "transfer"}})


def test_unknown_key_names_key_file_and_line(tmp_path):
    p = _write(tmp_path, "data:\n  name: driftfmnist\n  sed: 3\nbudget:\n  epochs: 1\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(p)
    assert f"{p}:3" in str(e.value) and "'data.sed'" in str(e.value) and "unknown key" in str(e.value)


def test_wrong_type_names_key_and_file(tmp_path):
    p = _write(tmp_path, "method:\n  kind: prune\n  sparsity: lots\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(p)
    msg = str(e.value)
    assert str(p) in msg and "method.sparsity" in msg and "'lots'" in msg and ":3" in msg


@pytest.mark.parametrize("text, key", [
    ("budget:\n  epochs: -1\n", "budget.epochs"),
    ("method:\n  kind: fancy\n", "method.kind"),
    ("model:\n  name: resnet21\n", "resnet21"),
    ("method:\n  kind: transfer\n  options: {tau: high}\n", "method.options.tau"),
    ("method:\n  kind: transfer\n  options: {taux: 0.1}\n", "taux"),
    ("method:\n  kind: prune\n  name: gcnet\n  options: {hybrid_split: [1]}\n", "method.options.hybrid_split"),
    ("seed: [0, 1]\n", "seed"),
    ("data: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "is a mapping"),
])
def test_bad_values_are_config_errors_naming_the_key(tmp_path, text, key):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_experiment(p)
    assert str(p) in str(e.value) and key in str(e.value)


def test_method_options_are_typed_by_the_method_dataclass():
    assert method_options(TransferMethod(kind="transfer", name="grasp", options={"tau": 1})) == {"tau": 1.0}
    opts = method_options(PruneMethod(kind="prune", name="gcnet", options={"hybrid_split": 2, "scope": "layerwise"}))
    assert opts == {"hybrid_split": 2, "scope": "layerwise"}
    with pytest.raises(ConfigError, match="scope"):
        method_options(PruneMethod(kind="prune", name="magnitude", options={"scope": "everywhere"}))


def test_overrides_and_flags(tmp_path):
    p = _write(tmp_path, "method:\n  kind: prune\nbudget:\n  epochs: 5\n")
    flags = flag_overrides(["--epochs", "1", "--keep-first", "--sparsity=0.5", "--set", "method.options.scope=layerwise",
                            "--no-keep-last", "--seed", "3"])
    exp = load_experiment(p, overrides=flags)
    assert exp.budget.epochs == 1 and exp.method.sparsity == 0.5 and exp.seed == 3 and exp.data.seed == 0
    assert exp.method.options == {"keep_first": True, "scope": "layerwise", "keep_last": False}
    with pytest.raises(ConfigError, match="unknown flag --epoch"):
        flag_overrides(["--epoch", "1"])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}
    assert flag_overrides(["--lr", "1e-3", "--root", "/data/x", "--dataset=cifar10"]) == {
        "budget.lr": 0.001, "data.root": "/data/x", "data.name": "cifar10"}


def _params(name: str) -> dict:
    """{python name: default} of a command's options and arguments."""
    cmd = typer.main.get_command(app).commands[name]
    return {p.name: p.default for p in cmd.params}


REQUIRED = {"prune": {"checkpoint": "runs/m.safetensors"}, "transfer": {"target": 7}}


@pytest.mark.parametrize("command", ["train", "prune", "transfer", "sources"])
def test_every_command_flag_maps_to_a_config_key(command):
    keys = flag_keys(command)
    params = _params(command)
    assert not [p for p in params if p not in keys], f"`shiftkit {command}` flags without a config key"
    # the command's own defaults describe a valid experiment
    exp = from_flags(command, **{**params, **REQUIRED.get(command, {})})
    assert exp.method.kind == ("transfer" if command == "sources" else command)
    for flag, dotted in keys.items():  # every mapped key exists in the schema
        for key in dotted:
            if key in ("method.options", "model.kwargs") or ".options." in key or ".kwargs." in key:
                continue
            section, _, leaf = key.rpartition(".")
            model = {"": Experiment, "data": DataConfig, "budget": BudgetConfig, "eval": EvalConfig,
                     "model": ModelConfig}.get(section)
            fields = set(model.model_fields) if model else (set(TransferMethod.model_fields) | set(PruneMethod.model_fields)
                                                            | set(TrainMethod.model_fields))
            assert leaf in fields, f"--{flag} maps to {key}, which is not a config key"


def test_from_flags_matches_the_commands_meaning():
    exp = from_flags("train", model="resnet20", epochs=2, seed=3, out=Path("runs/m.safetensors"))
    assert (exp.model.name, exp.budget.epochs, exp.seed, exp.data.seed) == ("resnet20", 2, 3, 3)
    assert exp.model_path == Path("runs/m.safetensors") and exp.out == "runs/m"
    exp = from_flags("transfer", method="grasp", target=7, tau=0.5, set_=["granularity=channel"], sources="runs/zoo")
    assert exp.method.options == {"tau": 0.5, "granularity": "channel"} and exp.method.zoo == "runs/zoo"
    exp = from_flags("prune", checkpoint="m.safetensors", method="gcnet", hybrid_split=2, finetune_epochs=1)
    assert exp.method.options == {"hybrid_split": 2} and exp.budget.epochs == 1
    with pytest.raises(ConfigError, match="tau"):
        from_flags("prune", checkpoint="m.safetensors", method="magnitude", tau=0.3)


def test_run_cli_errors_are_one_line(tmp_path, capsys):
    p = _write(tmp_path, "data:\n  name: driftfmnist\n  bogus: 1\n")
    with pytest.raises(SystemExit) as e:
        main(["run", str(p)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "data.bogus" in err and str(p) in err


def test_run_dry_run_prints_resolved_config(tmp_path, capsys):
    main(["run", str(REPO / "examples/prune.yaml"), "--dry-run", "--sparsity", "0.5", "--set", "out=runs/x"])
    out = capsys.readouterr().out
    assert "sparsity: 0.5" in out and "out: runs/x" in out and "kind: prune" in out
