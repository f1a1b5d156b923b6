"""Every command that takes --seed, run twice with the same flags, writes the same bytes and prints the
same text; wall-clock time lives only in timing.json, the one file left out of the comparison.
Domain indices: -1 is the last domain for flags and config keys alike and never leaks into the sources."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shiftkit.cli import main
from shiftkit.config import parse_experiment
from shiftkit.data import domain_index, load_domains
from shiftkit.errors import ConfigError
from shiftkit.experiment import prepare, run_experiment

NOT_COMPARED = {"timing.json"}  # wall-clock seconds: the one file that may differ between two runs


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in NOT_COMPARED and not _lock(p)}


def _lock(p: Path) -> bool:
    """The output locks (`.<name>.lock`, empty, held until the writing process exits): not outputs."""
    return p.name.startswith(".") and p.name.endswith(".lock")


def _twice(argv: list[str], out: Path, capsys) -> tuple[dict, dict, str, str]:
    """Run `shiftkit argv` twice into the same (emptied) folder: (files 1, files 2, stdout 1, stdout 2)."""
    runs = []
    for _ in range(2):
        shutil.rmtree(out, ignore_errors=True)
        main(argv)
        runs.append((_files(out), capsys.readouterr().out))
    (f1, o1), (f2, o2) = runs
    return f1, f2, o1, o2


def _assert_same(f1: dict, f2: dict, o1: str, o2: str, *expected: str) -> None:
    for name in expected:
        assert name in f1, f"{name} not written: {sorted(f1)}"
    assert sorted(f1) == sorted(f2)
    assert [n for n in f1 if f1[n] != f2[n]] == []
    assert o1 == o2 and o1.strip()


@pytest.fixture()
def data_env(fmnist_root, monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("SHIFTKIT_DATA", str(fmnist_root))
    monkeypatch.chdir(tmp_path)
    return tmp_path


ZOO_FLAGS = ["--dataset", "driftfmnist", "--width", "4", "--base-epochs", "1", "--source-epochs", "1", "--seed", "3"]


@pytest.fixture()
def zoo(data_env) -> Path:
    main(["sources", *ZOO_FLAGS, "--target", "-1", "--out", "zoo"])
    return data_env / "zoo"


def test_train_twice_same_bytes(data_env, capsys):
    out = Path("t")
    f1, f2, o1, o2 = _twice(["train", "--epochs", "1", "--seed", "5", "--out", str(out / "m.safetensors")], out, capsys)
    _assert_same(f1, f2, o1, o2, "m.safetensors", "m/result.json")
    assert (out / "m" / "timing.json").is_file() and "seconds" not in json.loads(f1["m/result.json"])


def test_sources_twice_same_bytes(data_env, capsys):
    f1, f2, o1, o2 = _twice(["sources", *ZOO_FLAGS, "--target", "7", "--out", "z"], Path("z"), capsys)
    _assert_same(f1, f2, o1, o2, "base.safetensors", "source_bin0.safetensors", "zoo.json")


@pytest.mark.parametrize("method", ["target_only", "grasp"])
def test_transfer_twice_same_bytes(zoo, capsys, method):
    argv = ["transfer", "--method", method, "--dataset", "driftfmnist", "--target", "7", "--sources", str(zoo),
            "--few-shot", "40", "--seed", "1", "--set", "initial_epochs=1", "--set", "finetune_epochs=1", "--out", "tr"]
    capsys.readouterr()
    f1, f2, o1, o2 = _twice(argv, Path("tr"), capsys)
    _assert_same(f1, f2, o1, o2, "result.json", "model.safetensors")


def test_prune_twice_same_bytes(data_env, capsys):
    main(["train", "--epochs", "1", "--out", "dense.safetensors"])
    capsys.readouterr()
    f1, f2, o1, o2 = _twice(["prune", "dense.safetensors", "--method", "random", "--sparsity", "0.5", "--dataset",
                             "driftfmnist", "--finetune-epochs", "1", "--seed", "2", "--out", "p/p.safetensors"],
                            Path("p"), capsys)
    _assert_same(f1, f2, o1, o2, "p.safetensors", "p/result.json")


def test_run_twice_same_bytes(data_env, capsys):
    cfg = Path("exp.yaml")
    cfg.write_text("model: {kwargs: {width: 4}}\nbudget: {epochs: 1}\nseed: 4\n")
    f1, f2, o1, o2 = _twice(["run", str(cfg), "--out", "r"], Path("r"), capsys)
    _assert_same(f1, f2, o1, o2, "result.json", "model.safetensors", "experiment.json")
    assert f"{json.loads(f1['result.json'])['test']['accuracy']:.4f}" in o1


# ---- domain indices -------------------------------------------------------------------------------------
def test_domain_index_is_one_normalisation(fmnist_root):
    domains = load_domains("driftfmnist", fmnist_root)
    assert [domain_index(domains, i, "k") for i in (0, 7, -1, -8)] == [0, 7, 7, 0]
    for bad in (8, -9):
        with pytest.raises(ConfigError, match=f"k={bad}: the dataset has 8 domains.*out of range"):
            domain_index(domains, bad, "k")


def test_negative_target_never_leaks_into_the_sources(zoo, capsys):
    manifest = json.loads((zoo / "zoo.json").read_text())
    assert [e["domain"] for e in manifest["sources"]] == [f"bin{i}" for i in range(7)]  # bin7 = -1 left out
    main(["transfer", "--method", "sequential_all", "--dataset", "driftfmnist", "--target", "-1", "--sources", str(zoo),
          "--few-shot", "40", "--set", "initial_epochs=0", "--set", "finetune_epochs=0", "--out", "neg"])
    r = json.loads(Path("neg/result.json").read_text())
    assert r["target"] == "bin7" and r["target_index"] == 7 and "source_bin7" not in r["sources"]
    assert len(r["sources"]) == 7


def test_config_and_flag_agree_on_minus_one(zoo):
    """data.target: -1 in a config builds (and excludes) exactly what --target -1 did."""
    exp = parse_experiment({"data": {"target": -1}, "model": {"kwargs": {"width": 4}},
                            "method": {"kind": "transfer", "zoo": "zoo2", "base_epochs": 1, "source_epochs": 1}, "seed": 3})
    prepare(exp)
    flags = json.loads((zoo / "zoo.json").read_text())
    config = json.loads(Path("zoo2/zoo.json").read_text())
    assert flags["sources"] == config["sources"]
    assert (zoo / "base.safetensors").read_bytes() == Path("zoo2/base.safetensors").read_bytes()


def test_target_out_of_range_is_one_line(zoo, capsys):
    with pytest.raises(SystemExit) as e:
        main(["transfer", "--dataset", "driftfmnist", "--target", "-9", "--sources", str(zoo), "--out", "x"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "data.target=-9" in err and "out of range" in err and len(err.splitlines()) == 1


def test_run_experiment_result_has_no_wall_clock(data_env):
    r = run_experiment(parse_experiment({"model": {"kwargs": {"width": 4}}, "budget": {"epochs": 1}, "out": "w"}),
                       progress=False)
    assert r["seconds"] > 0 and "seconds" not in json.loads(Path("w/result.json").read_text())
    assert json.loads(Path("w/timing.json").read_text())["seconds"] == r["seconds"]


def test_demo_twice_same_files(data_env, capsys):
    f1, f2, _, _ = _twice(["demo", "--epochs", "1", "--seed", "2", "--out", "demo"], data_env / "demo", capsys)
    assert sorted(f1) == sorted(f2) == ["demo.json", "demo_accuracy_per_bin.png", "small_cnn_bin0.safetensors"]
    assert [n for n in f1 if f1[n] != f2[n]] == []
    assert "train_seconds" in json.loads((data_env / "demo" / "timing.json").read_text())
