"""The structured-pruning benchmark end to end on a tiny registered dataset; the latency function on tiny nets
(it runs, interleaves and reports ratios; no timing is asserted)."""
from __future__ import annotations

import pytest
import torch
from prune_fixtures import make_data

from shiftkit import models
from shiftkit.bench import prune_structured as ps
from shiftkit.bench import _results
from shiftkit.bench.prune import BenchConfig
from shiftkit.errors import ConfigError
from shiftkit.prune.base import prunable_modules
from shiftkit.data import DATASETS, Domain, register_dataset
from shiftkit.prune.structured import StructuredConfig, prune_structured, widths

NAME = "structured_bench_tiny"
if NAME not in DATASETS:
    @register_dataset(NAME)
    def _tiny(root=None, *, seed: int = 0) -> list[Domain]:
        return [Domain("clean", make_data(160, classes=10, shape=(1, 16, 16)),
                       make_data(40, classes=10, shape=(1, 16, 16), seed=1), make_data(60, classes=10, shape=(1, 16, 16), seed=2))]


def test_bench_runs_resumes_and_summarizes(tmp_path):
    base = BenchConfig(model="small_cnn", seeds=(0, 1), dense_train=80, dense_epochs=1, ft_train=40, ft_epochs=1,
                       n_shift=20, calib_per_class=3, dataset=NAME, runs_dir=str(tmp_path / "runs"),
                       corruptions=("contrast",), severities=(3,), drift_bins=(7,))
    cfg = ps.StructuredBenchConfig(base=base, importances=("gcnet", "l2", "random"), speedups=(2.0,), step=0.05)
    jsonl = tmp_path / "results" / "runs.jsonl"
    records = ps.run(cfg, jsonl, progress=lambda m: None)
    assert len(records) == len(cfg.tasks()) == 2 * 4
    pruned = [r for r in records if r["importance"] != ps.DENSE]
    assert all(r["speedup"] >= 2.0 and r["macs_ratio"] <= 0.5 and r["params_ratio"] < 1 and r["file_ratio"] < 1
               for r in pruned)
    assert all(set(r["shift"]) == set(r["shift_adabn"]) == {"drift_bin7", "contrast@3"} for r in records)
    assert len(ps.run(cfg, jsonl, progress=lambda m: None)) == len(records)  # resumed: all cached
    rows = ps.summarize(records)
    gc = next(r for r in rows if r["importance"] == "gcnet")
    assert gc["seeds"] == 2 and gc["best_baseline"] in ("l2", "random") and len(gc["d_shift_vs_best"]) == 3
    md = ps.markdown(rows, cfg, ["shiftkit bench prune-structured ..."], records)
    assert "| 2.0x | gcnet | 2 |" in md
    # GC-Net against every baseline, clean and shifted, paired by seed
    (pair,) = ps.vs_every_baseline(records)
    by = {(r["importance"], r["seed"]): r for r in records}
    for b in ("l2", "random"):
        d = [100 * (by["gcnet", k]["clean"] - by[b, k]["clean"]) for k in (0, 1)]
        assert pair[f"clean_vs_{b}"][0] == pytest.approx(sum(d) / 2)
        d = [100 * (sum(by["gcnet", k]["shift"].values()) - sum(by[b, k]["shift"].values())) / 2 for k in (0, 1)]
        assert pair[f"shift_vs_{b}"][0] == pytest.approx(sum(d) / 2)
    assert "GC-Net vs every baseline, clean accuracy" in md and "| 2.0x | gcnet |" in md.split("every baseline")[1]


def _main_kwargs(**kw) -> dict:
    """`ps.main` on the tiny dataset, one seed, l1 only (tests change speedups and command)."""
    opts = dict(dense_train=80, dense_epochs=1, n_shift=20, calib_per_class=3, dataset=NAME, drift_bins=(7,),
                corruptions=("contrast",), severities=(3,))
    return dict(model="small_cnn", seeds=(0,), importances=("l1",), ft_train=40, ft_epochs=1, step=0.05,
                results="res", runs_dir="runs", base_options=opts, **kw)


def test_main_writes_json_and_the_results_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kw = _main_kwargs(speedups=(1.5,), command="shiftkit bench prune-structured")
    md = ps.main(**kw, progress=str)
    assert "| 1.5x | l1 | 1 |" in md
    assert (tmp_path / "res" / "prune_structured_small_cnn.json").is_file()
    assert "<!-- prune_structured_small_cnn:begin -->" in (tmp_path / "benchmarks" / "RESULTS.md").read_text()
    again = ps.main(**kw, report_only=True)
    assert again == md


def test_layerwise_scope_is_its_own_table_and_prunes_every_layer_alike(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kw = _main_kwargs(speedups=(2.0,), command="c")
    ps.main(**kw, scope="global", progress=str)
    md = ps.main(**kw, scope="layerwise", progress=str)
    assert "same channel ratio in every layer" in md
    runs = {scope: [r for r in _results.read_jsonl(tmp_path / "res" / f"prune_structured_{tag}_runs.jsonl")
                    if r["importance"] == "l1"][0]
            for scope, tag in (("global", "small_cnn"), ("layerwise", "small_cnn_layerwise"))}
    dense = models.create("small_cnn", num_classes=10, in_chans=1)
    kept = {scope: [r["widths"][n][0] / m.weight.shape[0] for n, m in prunable_modules(dense).items()][1:-1]
            for scope, r in runs.items()}  # first layer and classifier are kept by both
    assert max(kept["layerwise"]) - min(kept["layerwise"]) < 0.1  # one ratio (up to rounding) in every layer
    assert max(kept["global"]) - min(kept["global"]) > max(kept["layerwise"]) - min(kept["layerwise"])
    with pytest.raises(ConfigError, match="--scope 'nope'"):
        ps.main(**kw, scope="nope")


def test_latency_interleaves_and_reports_ratios_to_the_dense_model():
    torch.manual_seed(0)
    dense = models.create("small_cnn", num_classes=4, in_chans=1).eval()
    data = make_data(40, classes=4, shape=(1, 16, 16))
    pruned = prune_structured(dense, data, StructuredConfig(speedup=2.0, step=0.05)).model
    torch.set_num_threads(1)
    rows = ps.latency({"dense": dense, "pruned": pruned}, data.images[:1].float(), batches=(1, 4), threads=(2,),
                      repeats=2, warmup=1)
    assert {(r["model"], r["batch"], r["threads"]) for r in rows} == {(m, b, 2) for m in ("dense", "pruned") for b in (1, 4)}
    assert all(r["median_s"] > 0 for r in rows)
    assert all(r["ratio_to_reference"] == 1.0 for r in rows if r["model"] == "dense")
    assert torch.get_num_threads() == 1  # the caller's thread count is restored
    record = {"model": "small_cnn", "speedup": 2.0, "importance": "l2", "seed": 0, "macs_ratio": 0.5, "params_ratio": 0.6,
              "command": "shiftkit bench prune-structured --latency", "rows": rows}
    md = ps.latency_markdown(record)
    pruned_rows = [r for r in rows if r["model"] == "pruned"]
    assert md.count("\n| 2 |") == len(pruned_rows) and f"({pruned_rows[0]['ratio_to_reference']:.3f})" in md


def test_latency_levers_prune_the_first_layer_and_round_widths():
    torch.manual_seed(0)
    dense = models.create("small_cnn", num_classes=4, in_chans=1).eval()
    data = make_data(40, classes=4, shape=(1, 16, 16))
    first = lambda net: net.features[0].out_channels  # noqa: E731
    nets = {name: prune_structured(dense, data, StructuredConfig(speedup=2.0, step=0.05, **opts)).model
            for name, opts in ps.LATENCY_VARIANTS.items()}
    assert first(nets["pruned"]) == first(dense) > first(nets["pruned, first layer cut too"])
    rounded = [o for n, (o, _) in widths(nets["pruned, widths rounded to 8"]).items() if n not in ("features.0", "classifier.3")]
    assert all(w % 8 == 0 for w in rounded)
