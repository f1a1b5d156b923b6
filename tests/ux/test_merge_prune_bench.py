"""`shiftkit bench merge-prune`: rows from the pipelines' result.json (the shapes `shiftkit sweep` writes), the
paired table, finished points reused (also ones stored before a schema key was added), and one tiny run end to end."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import yaml

from shiftkit import sweep
from shiftkit.bench import merge_prune as mp
from shiftkit.cli import main
from shiftkit.config import load_experiment
from shiftkit.errors import ConfigError

PIPELINE = [{"kind": "transfer", "name": "greedy_soup", "zoo": "zoo", "base_epochs": 1, "source_epochs": 1},
            {"kind": "prune", "structured": True, "name": "gcnet", "speedup": 2.0}]


def _config(path: Path, name: str, prune: dict | None = None) -> Path:
    raw = {"data": {"name": "driftfmnist", "target": 7, "few_shot": 100}, "model": {"name": "small_cnn"},
           "pipeline": [PIPELINE[0], {**PIPELINE[1], **(prune or {})}], "budget": {"epochs": 3, "lr": 5e-5, "batch_size": 32},
           "seed": 0, "out": f"runs/{name}"}
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    return path / f"{name}.yaml"


def _result(exp: dict, merged: tuple[float, float], pruned: tuple[float, float]) -> dict:
    """A pipeline's result.json as `shiftkit sweep` leaves it (the keys the bench reads): (target, other bins)
    accuracies of the merged and the pruned step; bin7 (the target) scores apart from the test pool."""
    def domains(other: float) -> dict:
        return {**{f"bin{i}": other + (0.01 if i % 2 else -0.01) for i in range(6)}, "bin6": other, "bin7": 0.99}

    step = exp["pipeline"][1]
    budget = {**exp["budget"], **{k: v for k, v in (step.get("budget") or {}).items() if v is not None}}
    m = {"kind": "transfer", "method": "greedy_soup", "dataset": "driftfmnist", "target": "bin7",
         "test": {"accuracy": merged[0], "n": 8630}, "domains": domains(merged[1]),
         "experiment": {"budget": exp["budget"], "method": exp["pipeline"][0]}}
    p = {"kind": "prune", "method": step["name"], "dataset": "driftfmnist", "domain": "bin7", "speedup": 2.01,
         "params": [1000, 260], "macs": [5000, 2490], "test": {"accuracy": pruned[0], "n": 8630}, "domains": domains(pruned[1]),
         "experiment": {"budget": budget, "method": {**step, "checkpoint": f"{exp['out']}/0_transfer/model.safetensors"}}}
    return {"kind": "pipeline", "method": f"greedy_soup -> {step['name']}", "model": "small_cnn", "seed": exp["seed"],
            "experiment": exp, "steps": [m, p], "test": p["test"]}


def _store(cfg: Path, seeds: list[int], accs: list[tuple]) -> list[dict]:
    """result.json of every point of the config's seed sweep; returns the results."""
    out = []
    for e, (merged, pruned) in zip(sweep.expand_grid(load_experiment(cfg), {"seed": seeds}), accs):
        r = _result(e.dump(), merged, pruned)
        Path(e.out).mkdir(parents=True, exist_ok=True)
        (Path(e.out) / "result.json").write_text(json.dumps(r))
        out.append(r)
    return out


def test_rows_and_the_table_pair_seeds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _store(_config(tmp_path / "c", "plain"), [0, 1], [((0.58, 0.60), (0.18, 0.20)), ((0.60, 0.62), (0.30, 0.40))])
    b = _store(_config(tmp_path / "c", "rec", {"options": {"scope": "layerwise"}, "bn_recalibrate": True,
                                               "budget": {"epochs": 20, "lr": 1e-3}}), [0], [((0.58, 0.60), (0.50, 0.55))])
    rows = [mp.point_row("plain", r) for r in a] + [mp.point_row("rec", r) for r in b]
    r0 = rows[0]
    assert (r0["config"], r0["seed"], r0["importance"], r0["scope"], r0["bn_recalibrate"]) == ("plain", 0, "gcnet", "global", False)
    assert (r0["speedup_target"], r0["speedup"], r0["params_kept"], r0["macs_ratio"]) == (2.0, 2.01, 0.26, 0.498)
    assert (r0["merged_target"], r0["pruned_target"]) == (0.58, 0.18)  # the test pool, not the domains' bin7
    assert r0["merged_other"] == pytest.approx(0.60) and r0["pruned_other"] == pytest.approx(0.20)  # bin7 left out
    assert rows[2]["scope"] == "layerwise" and rows[2]["budget"] == {"epochs": 20, "lr": 1e-3, "batch_size": 32}

    lines = mp.markdown(rows, "shiftkit bench merge-prune").splitlines()
    assert "Command: `shiftkit bench merge-prune`" in lines
    plain, rec = (next(x for x in lines if x.startswith(f"| {n} |")).split(" | ") for n in ("plain", "rec"))
    # Δ target per seed -40, -30: mean -35, t(0.975, 1) = 12.706 x sd 7.07 / sqrt 2 = 63.5; other bins -40, -22
    assert plain[1:] == ["small_cnn", "transfer budget (3 ep, lr 5e-5), no BN recal", "gcnet", "global", "2x → 2.01x", "0.26",
                         "59.0 ± 1.4", "24.0 ± 8.5", "-35.0 [-98.5, +28.5]", "-31.0 [-145.4, +83.4]", "–", "2 |"]
    assert rec[1:5] == ["small_cnn", "recovery (20 ep, lr 1e-3), BN recal", "gcnet", "layerwise"]
    assert rec[-4:] == ["-8.0", "-5.0", "–", "1 |"]  # one seed: the mean, no interval


class _Ran(Exception):
    pass


def test_finished_points_are_not_run_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def run_point(raw, *args, **kwargs):
        raise _Ran(raw["out"])

    monkeypatch.setattr(sweep, "_point", run_point)  # what run_grid runs each missing point with
    cfg = _config(tmp_path / "configs", "gc")
    argv = ["bench", "merge-prune", "--configs", "configs", "--seeds", "0,1", "--results", "res"]
    monkeypatch.setattr(sys, "argv", ["shiftkit", *argv])  # the command the table names
    results = _store(cfg, [0], [((0.58, 0.60), (0.18, 0.20))])
    with pytest.raises(_Ran, match="runs/gc/seed-1-"):  # seed 1 has no result: it would run, seed 0 not
        main(argv)
    results += _store(cfg, [0, 1], [((0.58, 0.60), (0.18, 0.20)), ((0.60, 0.62), (0.30, 0.40))])[1:]
    old = copy.deepcopy(results[1])  # stored before pipeline steps had a `budget:` key: the same experiment
    for step in old["experiment"]["pipeline"]:
        del step["budget"]
    Path(old["experiment"]["out"], "result.json").write_text(json.dumps(old))
    main(argv)
    stored = json.loads(Path("res/merge_prune.json").read_text())
    assert [(r["config"], r["seed"], r["pruned_target"]) for r in stored["rows"]] == [("gc", 0, 0.18), ("gc", 1, 0.30)]
    assert stored["command"] == "shiftkit " + " ".join(argv)
    md = Path("benchmarks/RESULTS.md").read_text()
    assert "<!-- merge_prune:begin -->" in md and "| gc | small_cnn | transfer budget" in md
    main(["bench", "merge-prune", "--report-only", "--results", "res"])  # from the JSON alone
    assert Path("benchmarks/RESULTS.md").read_text() == md


def test_configs_are_checked_before_anything_runs(tmp_path):
    cfg = _config(tmp_path, "one")
    raw = yaml.safe_load(cfg.read_text())
    with pytest.raises(ConfigError, match="structured prune"):
        mp.check_config(cfg, {**raw, "pipeline": [PIPELINE[0], {**PIPELINE[1], "structured": False}]})
    with pytest.raises(ConfigError, match=r"one\.yaml: grid: \['data.target'\]"):
        mp.check_config(cfg, {**raw, "grid": {"data.target": [6, 7], "seed": [0]}})
    with pytest.raises(ConfigError, match="neither a YAML file nor a folder"):
        mp.config_paths(f"{cfg},{tmp_path / 'missing.yaml'}")


def test_end_to_end_on_the_tiny_fixture(ux_env):
    """One real merge -> prune point through the command, then the same command again: nothing re-runs."""
    cfg = _config(ux_env / "configs", "tiny", {"name": "l1", "speedup": 1.3, "budget": {"epochs": 1, "lr": 1e-3}})
    raw = yaml.safe_load(cfg.read_text())
    raw.update(data={"name": "driftfmnist", "target": 7, "few_shot": 30}, model={"name": "small_cnn", "kwargs": {"width": 8}},
               budget={"epochs": 1})
    cfg.write_text(yaml.safe_dump(raw))
    argv = ["bench", "merge-prune", "--configs", str(cfg), "--seeds", "0", "--results", "res"]
    main(argv)
    (point,) = Path("runs/tiny").glob("seed-0-*/result.json")
    stamp = point.stat().st_mtime_ns
    (row,) = json.loads(Path("res/merge_prune.json").read_text())["rows"]
    result = json.loads(point.read_text())
    assert row["pruned_target"] == result["test"]["accuracy"] and row["speedup"] >= 1.3 and row["params_kept"] < 1
    assert row["budget"]["epochs"] == 1 and row["budget"]["lr"] == 1e-3 and row["merge_budget"]["lr"] is None
    assert row["target"] == "bin7" and 0 <= row["merged_other"] <= 1
    main(argv)
    assert point.stat().st_mtime_ns == stamp


def test_cuts_are_paired_with_the_no_cut_control_of_their_budget(tmp_path, monkeypatch):
    """A config whose prune step keeps >= 99% of the parameters is the control of the configs with the same model,
    merge and prune-step budget; configs with another budget have none."""
    monkeypatch.chdir(tmp_path)
    rec = {"bn_recalibrate": True, "budget": {"epochs": 20, "lr": 1e-3}}
    cut = _store(_config(tmp_path / "c", "cut", rec), [0, 1], [((0.60, 0.6), (0.40, 0.4)), ((0.60, 0.6), (0.46, 0.4))])
    ctl = _store(_config(tmp_path / "c", "none", rec), [0, 1], [((0.60, 0.6), (0.50, 0.5)), ((0.60, 0.6), (0.52, 0.5))])
    other = _store(_config(tmp_path / "c", "plain"), [0, 1], [((0.60, 0.6), (0.30, 0.3)), ((0.60, 0.6), (0.31, 0.3))])
    for r in ctl:
        r["steps"][1]["params"] = [1000, 995]  # tp rounds a 0.1% channel ratio to (almost) nothing
    rows = ([mp.point_row("cut", r) for r in cut] + [mp.point_row("none", r) for r in ctl]
            + [mp.point_row("plain", r) for r in other])
    lines = {x.split(" | ")[0].lstrip("| "): x.split(" | ") for x in mp.markdown(rows, "c").splitlines() if x.startswith("| ")}
    # cut - control per seed: -10, -6 -> mean -8, t(0.975, 1) 12.706 x sd 2.83 / sqrt 2 = 25.4
    assert lines["cut"][-2] == "-8.0 [-33.4, +17.4]"
    assert lines["none"][-2] == "control" and lines["plain"][-2] == "–"
