"""The pruning benchmark end to end on a tiny registered dataset (fixtures, in-process)."""
from __future__ import annotations

import json

from prune_fixtures import make_data

from shiftkit.bench import prune as bp
from shiftkit.bench import prune_report
from shiftkit.data import DATASETS, Domain, register_dataset

NAME = "prune_bench_tiny"
if NAME not in DATASETS:
    @register_dataset(NAME)
    def _tiny(root=None, *, seed: int = 0) -> list[Domain]:
        return [Domain("clean", make_data(160, classes=10), make_data(40, classes=10, seed=1), make_data(60, classes=10, seed=2))]


def test_bench_runs_resumes_and_reports(tmp_path):
    cfg = bp.BenchConfig(model="small_cnn", model_kwargs=(("width", 4),), seeds=(0, 1), sparsities=(0.5, 0.9),
                         core_sparsities=(0.9,), arms=("magnitude", "gcnet", "kernel_l1@gcnet", "gcnet_hybrid1"),
                         dense_train=80, dense_epochs=1, ft_train=40, ft_epochs=1, n_shift=20, calib_per_class=3,
                         dataset=NAME, runs_dir=str(tmp_path / "runs"))
    jsonl = tmp_path / "results" / f"prune_{cfg.tag}_runs.jsonl"
    records = bp.run(cfg, jsonl, workers=1, progress=lambda m: None)
    assert len(records) == len(cfg.tasks()) == 2 * (3 * 2 + 1)
    assert all(abs(r["sparsity_reached"] - r["sparsity"]) < 0.01 for r in records)
    assert len(bp.run(cfg, jsonl, workers=1, progress=lambda m: None)) == len(records)  # all cached
    assert len(jsonl.read_text().splitlines()) == len(records)
    rows = prune_report.summarize(records)
    gc = next(r for r in rows if r["arm"] == "gcnet" and r["sparsity"] == 0.9)
    assert gc["n"] == 2 and gc["d_shift"]["n"] == 2
    plots = prune_report.write_plots(rows, tmp_path / "results" / f"prune_{cfg.tag}", prune_report.FULL_ARMS)
    hp = prune_report.hybrid_plot(rows, tmp_path / "results" / f"prune_{cfg.tag}", 0.9)
    assert all(p.exists() for p in plots) and hp.exists()
    md = prune_report.shift_markdown(records, bp.config_dict(cfg), "shiftkit bench prune ...", cfg.tag, plots)
    (tmp_path / "results" / f"prune_shift_{cfg.tag}.json").write_text(json.dumps({"markdown": md}))
    section = prune_report.render_section(tmp_path / "results")
    assert "| 0.90 | gcnet |" in section and "CIFAR-10" in section and "Severity sweep" in section


def test_bn_study_recalibrates_on_real_runs_and_resumes(tmp_path):
    from shiftkit.bench import prune_bn

    cfg = bp.BenchConfig(model="small_cnn", model_kwargs=(("width", 4),), seeds=(0, 1), dense_train=80, dense_epochs=1,
                         ft_train=40, ft_epochs=1, n_shift=20, calib_per_class=3, dataset=NAME, runs_dir=str(tmp_path / "runs"))
    out = tmp_path / "bn.jsonl"
    rows = prune_bn.run(cfg, ["magnitude", "gcnet", "dense_ft"], 0.9, out, progress=lambda m: None)
    assert len(rows) == 6 and {r["sparsity"] for r in rows if r["arm"] == "dense_ft"} == {0.0}
    assert all(set(r["shift"]) == set(prune_bn.STAGES) and r["bn_layers"] == 3 for r in rows)
    # the dense net's BN already describes clean data: re-estimating it there barely moves clean accuracy
    dense = [r for r in rows if r["arm"] == "dense_ft"]
    assert all(abs(r["clean"]["pruned+recal"] - r["clean"]["pruned"]) <= 0.1 for r in dense)
    assert len(prune_bn.run(cfg, ["magnitude", "gcnet", "dense_ft"], 0.9, out, progress=lambda m: None)) == 6
    md = prune_bn.markdown(rows, cfg, "shiftkit bench prune-bn")
    assert md.count("\n| ") == 1 + 3 and "| gcnet | 0.9 | 2 |" in md  # header + one row per arm
