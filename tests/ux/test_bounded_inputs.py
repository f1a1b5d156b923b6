"""Inputs that used to blow up, hang or crash (issue 22 §3): YAML alias bombs and duplicate keys, grids of
millions of points, and every JSON that `report`, sweeps, zoos and structured checkpoints read, through
the one bounded reader."""
from __future__ import annotations

import json
import os
import resource
import time
import warnings
from pathlib import Path

import pytest
import yaml

from shiftkit import _yaml, models
from shiftkit.checkpoints import save_checkpoint
from shiftkit.cli import main
from shiftkit.config import load_experiment, parse_experiment
from shiftkit.errors import CheckpointError, ConfigError, DataError
from shiftkit.report import collect, write_report
from shiftkit.sweep import _done, expand_grid

BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))  # 1.6 kB, 9^9 values


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("text, match", [
    (BOMB, "more than 200,000 values once its aliases"),
    ("data: {name: driftfmnist}\nseed: 0\nseed: 1\n", r"cfg.yaml:3: duplicate key 'seed' \(first at line 2\)"),
    ("data: &d {options: {self: *d}}\n", "cfg.yaml:1: a YAML alias refers to a value containing itself"),
    ("budget:\n  epochs: 1\n  lr: 0.1\n  epochs: 2\n", r"cfg.yaml:4: duplicate key 'epochs' \(first at line 2\)"),
    ("data: " + "[" * 80 + "]" * 80 + "\n", "nested more than 64 levels"),
    ("seed: [1,\n", r"cfg.yaml:2: not valid YAML \(did not find expected node content\)"),
])
def test_hostile_yaml_is_one_bounded_line(tmp_path, text, match):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    before = _peak_mib()
    with pytest.raises(ConfigError, match=match) as e:
        load_experiment(path)
    assert len(str(e.value)) < 400 and "\n" not in str(e.value)
    assert _peak_mib() - before < 200


def test_yaml_uses_the_c_loader_and_parses_once_for_every_error(tmp_path, monkeypatch):
    if hasattr(yaml, "CSafeLoader"):
        assert _yaml._LOADER is yaml.CSafeLoader
    calls = []
    compose = _yaml._compose
    monkeypatch.setattr(_yaml, "_compose", lambda text, where: calls.append(where) or compose(text, where))
    path = tmp_path / "cfg.yaml"
    path.write_text("seed: x\nbudget: {epochs: y, batch_size: z, lr: w}\ndata: {seed: v, domain: u}\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(path)
    assert str(e.value).count("cfg.yaml:") >= 5 and "more)" in str(e.value)  # five named, the rest counted
    assert len(calls) <= 2  # the load, and once more (cached) for every error's line


def test_error_messages_are_capped(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("seed: [" + ", ".join(["123456789"] * 50_000) + "]\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(path)
    assert len(str(e.value)) < 300 and "seed" in str(e.value)


def test_grids_are_counted_before_they_are_built():
    exp = parse_experiment({"grid": {"seed": list(range(300)), "data.seed": list(range(300)), "data.domain": list(range(300))}})
    t0, before = time.perf_counter(), _peak_mib()
    with pytest.raises(ConfigError, match="300 x 300 x 300 values: more than the 10000 points"):
        expand_grid(exp)
    assert time.perf_counter() - t0 < 2 and _peak_mib() - before < 100


def test_sweep_points_get_one_folder_each(tmp_path):
    exp = parse_experiment({"out": str(tmp_path / "s")})
    roots = [f"{tmp_path}/a-b", f"{tmp_path}/a/b", f"{tmp_path}/a b", f"{tmp_path}/a-b "]
    exps = expand_grid(exp, {"data.root": roots})
    assert len({e.out for e in exps}) == 4
    long = expand_grid(exp, {"data.root": ["x" * 400, "x" * 400 + "y"], "seed": [0]})
    names = [Path(e.out).name for e in long]
    assert len(set(names)) == 2 and all(len(n) < 120 for n in names)


def _valid_train_result(tmp_path: Path) -> Path:
    r = {"kind": "train", "method": "train", "model": "small_cnn", "dataset": "d", "seed": 0, "domain": "bin0",
         "test": {"accuracy": 0.5}, "domains": {"bin0": 0.5}}
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "result.json").write_text(json.dumps(r))
    return tmp_path / "ok" / "result.json"


def test_report_skips_what_it_cannot_read_with_one_warning_each(tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    _valid_train_result(res)
    os.mkfifo(res / "a.json")
    (res / "b.json").symlink_to("/dev/zero")
    (res / "c.json").write_text("[" * 100_000 + "]" * 100_000)
    (res / "d.json").write_text(json.dumps({"kind": "train", "test": {"accuracy": 1}}))  # keys missing
    (res / "e.json").write_text(json.dumps({"rows": [{"method": "m", "sparsity": "high", "clean": 0.5}]}))
    (res / "f.jsonl").write_text('{"method": "m", "sparsity": 0.5, "clean": {"x": 1}}\n{"torn')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        md = write_report(res).read_text()
    assert time.perf_counter() - t0 < 30 and "bin0" in md  # the valid result is in the report
    said = [str(w.message) for w in caught]
    for name in ("a.json", "b.json", "c.json", "d.json", "e.json", "f.jsonl"):
        assert sum(name in m for m in said) == 1, (name, said)
    assert any("a FIFO" in m for m in said) and any("character device" in m for m in said)
    assert any("nested 100000 levels" in m for m in said)


def test_report_on_a_missing_folder_is_an_error_and_creates_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["report", str(tmp_path / "nope")])
    assert e.value.code == 2 and "nope: results folder not found" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()
    with pytest.raises(ConfigError, match="not found"):
        collect(tmp_path / "nope")


def test_sweep_done_log_reads_through_the_bounded_reader(tmp_path):
    point = tmp_path / "p"
    point.mkdir()
    os.mkfifo(point / "result.json")
    with pytest.warns(UserWarning, match="a FIFO"):
        assert _done({"out": str(point)}) is None  # no hang: the point simply runs again
    (point / "result.json").unlink()
    (point / "result.json").write_text("[" * 50_000 + "]" * 50_000)
    with pytest.warns(UserWarning, match="nested"):
        assert _done({"out": str(point)}) is None


@pytest.mark.parametrize("manifest, match", [
    ({"base": "../../etc/passwd", "sources": []}, "base file name"),
    ({"base": "b.safetensors", "sources": [{"index": "0", "domain": "d", "path": "s.safetensors"}]}, "source entry"),
    ({"base": "b.safetensors", "sources": [{"index": 0, "domain": "d", "path": "/etc/passwd"}]}, "source entry"),
    ({"base": "b.safetensors", "sources": [], "config": [1]}, "config is not an object"),
    ([1, 2], "base file name"),
])
def test_zoo_manifests_are_type_checked(tmp_path, manifest, match):
    from shiftkit.transfer.zoo import read_manifest, zoo_sources

    (tmp_path / "zoo.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=match):
        read_manifest(tmp_path)
    with pytest.raises(ConfigError, match="zoo.json"):
        zoo_sources(tmp_path)


def test_zoo_manifest_fifo_is_refused(tmp_path):
    from shiftkit.transfer.zoo import read_manifest

    os.mkfifo(tmp_path / "zoo.json")
    with pytest.raises(ConfigError, match="a FIFO"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("info", [{"history": [], "input_shape": [1, 3, 60000, 60000]}, {"history": {}, "input_shape": [1, 1, 8, 8]},
                                  {"history": [], "input_shape": [1, 1, "8", 8]}, [1], "[" * 1000 + "]" * 1000])
def test_structured_metadata_is_bounded_and_type_checked(tmp_path, info):
    from shiftkit.prune.structured import META_KEY, load_structured

    path = tmp_path / "s.safetensors"
    save_checkpoint(path, models.create("small_cnn", num_classes=4, in_chans=1, width=4),
                    metadata={META_KEY: info if isinstance(info, str) else json.dumps(info)})
    before = _peak_mib()
    with pytest.raises(CheckpointError, match="s.safetensors"):
        load_structured(path)
    assert _peak_mib() - before < 200


def test_duplicate_check_of_class_ids_is_linear(tmp_path):
    from shiftkit.data.tinyimagenet import _read_wnids

    path = tmp_path / "wnids.txt"
    path.write_text("".join(f"n{i:08d}\n" for i in range(150_000)) + "n00000001\n")  # ~1.5 MB
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="more than once: \\['n00000001'\\]"):
        _read_wnids(path)
    assert time.perf_counter() - t0 < 5


def test_sweep_done_log_type_checks_a_finished_point(tmp_path):
    exp = expand_grid(parse_experiment({"out": str(tmp_path / "s")}), {"seed": [0]})[0]
    raw = exp.dump()
    Path(exp.out).mkdir(parents=True)
    for bad in ({"experiment": raw, "test": [1]}, {"experiment": raw, "test": {"accuracy": 0.5}, "provenance": [1]}):
        (Path(exp.out) / "result.json").write_text(json.dumps(bad))
        with pytest.warns(UserWarning, match="not a finished point's result"):
            assert _done(raw) is None
    (Path(exp.out) / "result.json").write_text(json.dumps({"experiment": raw, "test": {"accuracy": 0.5}}))
    assert _done(raw)["test"]["accuracy"] == 0.5
