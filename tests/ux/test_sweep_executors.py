"""Sweeps: grid expansion, the local executor, and Ray (2 CPUs) giving the same results as local."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from shiftkit.cli import main
from shiftkit.config import parse_experiment
from shiftkit.errors import ConfigError
from shiftkit.sweep import expand_grid, run_grid

BASE = {"model": {"kwargs": {"width": 8}}, "budget": {"epochs": 1}, "eval": {"domains": False}}


def _metrics(results: list[dict]) -> list[tuple]:
    return [(Path(r["experiment"]["out"]).name, r["test"]["accuracy"], r["test"]["macro_f1"],
             r["history"][-1]["train_loss"]) for r in results]


def test_grid_expansion_names_points_and_shares_zoos(tmp_path):
    raw = {**BASE, "out": str(tmp_path / "s"), "method": {"kind": "transfer", "name": "grasp"},
           "grid": {"method.name": ["grasp", "fusion"], "data.target": [6, 7], "seed": [0, 1]}}
    exps = expand_grid(parse_experiment(raw), {"model.name": ["small_cnn"]})
    assert len(exps) == 8 and len({e.out for e in exps}) == 8
    assert re.search(r"/name-grasp_target-6_seed-0_name-small_cnn-[0-9a-f]{8}$", exps[0].out)  # readable + hash
    assert len({e.method.zoo for e in exps}) == 2  # one zoo per (dataset, model, seed), shared by targets
    with pytest.raises(ConfigError, match="grid point"):
        expand_grid(parse_experiment({**raw, "grid": {"method.sparsity": [2.0]}}))
    with pytest.raises(ConfigError, match="executor"):
        run_grid(exps[:1], executor="dask")


def test_ray_grid_equals_local(ux_env):
    pytest.importorskip("ray")
    raw = {**BASE, "out": "runs/local", "grid": {"seed": [0, 1]}, "model": {"name": "small_cnn_nobn", "kwargs": {"width": 8}}}
    local = run_grid(expand_grid(parse_experiment(raw)), executor="local")
    raw["out"] = "runs/ray"
    remote = run_grid(expand_grid(parse_experiment(raw)), executor="ray", workers=2)
    assert len(local) == 2 and _metrics(local) == _metrics(remote)
    assert len(list(Path("runs/ray").glob("seed-1-*/result.json"))) == 1  # workers resolve relative paths like the driver


def test_sweep_cli_local_writes_results_and_report(ux_env, capsys):
    main(["sweep", "examples/train.yaml", "--grid", "seed=0,1", "--epochs", "1", "--width", "8", "--out", "runs/sw"])
    points = json.loads(Path("runs/sw/sweep.json").read_text())["points"]
    assert [Path(p).name[:-9] for p in points] == ["seed-0", "seed-1"]  # the readable slug, then -<hash>
    assert all((Path(p) / "result.json").is_file() for p in points)
    assert "Trained models" in Path("runs/sw/report.md").read_text()
    stamp = Path(points[0], "result.json").stat().st_mtime_ns
    Path(points[1], "result.json").unlink()  # as if the sweep had been killed before the last point
    main(["sweep", "examples/train.yaml", "--grid", "seed=0,1", "--epochs", "1", "--width", "8", "--out", "runs/sw"])
    assert Path(points[0], "result.json").stat().st_mtime_ns == stamp and Path(points[1], "result.json").is_file()


@pytest.mark.parametrize("kw, msg", [({"executor": "local", "gpus_per_point": 0.5}, "needs executor 'ray'"),
                                     ({"executor": "ray", "gpus_per_point": 1.5}, "a fraction in"),
                                     ({"executor": "ray", "gpus_per_point": float("nan")}, "a fraction in")])
def test_gpus_per_point_is_checked_before_any_point(tmp_path, kw, msg):
    exps = expand_grid(parse_experiment({"out": str(tmp_path / "s"), "grid": {"seed": [0, 1]}}))
    with pytest.raises(ConfigError, match=msg):
        run_grid(exps, **kw)
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_ray_gpus_per_point_without_a_gpu_is_one_line_not_a_hang(ux_env):
    pytest.importorskip("ray")
    exps = expand_grid(parse_experiment({"out": "runs/g", "grid": {"seed": [0]}, "budget": {"epochs": 1}}))
    with pytest.raises(ConfigError, match="has no GPU"):
        run_grid(exps, executor="ray", workers=1, gpus_per_point=0.25)


def test_a_point_done_on_another_device_runs_again(ux_env):
    exps = expand_grid(parse_experiment({**BASE, "out": "runs/dev", "grid": {"seed": [0]}}))
    first, = run_grid(exps)
    path = Path(first["experiment"]["out"]) / "result.json"
    stored = json.loads(path.read_text())
    assert run_grid(exps)[0]["provenance"] == stored["provenance"]  # same device: reused
    stored["provenance"]["device"] = "cuda"  # as if an earlier "auto" run had found a GPU
    path.write_text(json.dumps(stored))
    again, = run_grid(exps)
    assert again["provenance"]["device"] == torch.device("cpu" if not torch.cuda.is_available() else "cuda").type
    assert json.loads(path.read_text())["provenance"]["device"] == again["provenance"]["device"]
