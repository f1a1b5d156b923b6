"""`shiftkit report`: tables and plots from run results and from the benchmarks' JSON rows."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from shiftkit.cli import main
from shiftkit.config import parse_experiment
from shiftkit.report import collect, write_report
from shiftkit.stats import mean_std
from shiftkit.sweep import expand_grid, run_grid


def _bench_files(root: Path) -> None:
    rows = [{"dataset": "driftfmnist", "target": 7, "shots": 100, "seed": s, "order": o, "method": m, "select": "best_val",
             "accuracy": 0.7 + 0.01 * s, "curve": [0.5, 0.6, 0.7] if m == "grasp" else []}
            for m in ("grasp", "fusion") for s in (0, 1) for o in ("temporal", "reverse")]
    (root / "transfer.json").write_text(json.dumps({"command": "shiftkit bench transfer", "rows": rows}))
    prune_rows = [{"method": m, "sparsity": sp, "seed": s, "clean": 0.9 - sp / 4, "shifted": 0.6 - sp / 3}
                  for m in ("gcnet", "magnitude") for sp in (0.5, 0.9) for s in (0, 1)]
    (root / "prune.json").write_text(json.dumps({"rows": prune_rows}))
    mem = [{"method": m, "K": k, "peak_rss_mib": 300 + (k if m == "fusion" else 0)} for m in ("grasp", "fusion") for k in (2, 8)]
    (root / "memory.json").write_text(json.dumps({"rows": mem}))


def test_report_from_bench_json(tmp_path, capsys):
    _bench_files(tmp_path)
    kinds = collect(tmp_path)
    assert (len(kinds["transfer"]), len(kinds["prune"]), len(kinds["memory"])) == (8, 8, 4)
    main(["report", str(tmp_path)])
    md = (tmp_path / "report.md").read_text()
    assert "| grasp | 0.705 ± 0.006 | 4 |" in md and "| gcnet | 0.775 ± 0.000 / 0.433 ± 0.000 |" in md
    assert "| fusion | 302 | 308 |" in md
    for png in ("transfer_curve_driftfmnist_7_100.png", "prune_accuracy_vs_sparsity.png", "memory_vs_k.png"):
        assert f"({png})" in md
        with Image.open(tmp_path / png) as im:
            assert im.size[0] >= 600 and im.size[1] >= 400 and len(set(im.convert("L").getdata())) > 20  # drawn
    assert mean_std([1.0, float("nan"), 3.0]) == (2.0, 2 ** 0.5, 2)


def test_report_reads_the_benchmarks_own_formats(tmp_path):
    """bench prune appends JSONL records (arm, shift per set); bench memory rows carry /proc status (VmHWM)."""
    recs = [{"model": "small_cnn", "seed": s, "arm": "gcnet_hybrid2", "sparsity": 0.9, "clean": 0.8,
             "shift": {"drift_bin2": 0.5, "noise@3": 0.7}} for s in (0, 1)]
    (tmp_path / "prune_small_cnn_runs.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    mem = [{"arch": "resnet20", "method": "grasp", "k": k, "end": {"VmHWM": 400.0, "RssAnon": 120.0}} for k in (2, 64)]
    (tmp_path / "transfer_memory.json").write_text(json.dumps({"command": "shiftkit bench memory", "rows": mem}))
    summary = [{"arm": "gcnet_hybrid2", "sparsity": 0.9, "n": 2, "clean": [0.8, 0.0], "shift": [0.6, 0.0]}]
    (tmp_path / "prune_shift_small_cnn.json").write_text(json.dumps({"rows": summary, "markdown": "..."}))
    md = write_report(tmp_path).read_text()
    assert "| gcnet_hybrid2 | 0.800 ± 0.000 / 0.600 ± 0.000 |" in md  # raw records, not counted twice
    assert "| grasp (resnet20) | 400 | 400 |" in md
    (tmp_path / "prune_small_cnn_runs.jsonl").unlink()  # the summary alone is enough
    assert "| gcnet_hybrid2 | 0.800 ± 0.000 / 0.600 ± 0.000 |" in write_report(tmp_path).read_text()


def test_report_from_sweep_of_prune_runs(ux_env, trained):
    raw = {"method": {"kind": "prune", "name": "magnitude", "checkpoint": trained["checkpoint"]}, "budget": {"epochs": 0},
           "out": "runs/ps", "grid": {"method.sparsity": [0.5, 0.8], "method.name": ["magnitude", "random"]}}
    run_grid(expand_grid(parse_experiment(raw)))
    md = write_report("runs/ps").read_text()
    assert "## Pruning: accuracy vs sparsity" in md and "| random |" in md and "80% clean / shifted" in md
    assert Path("runs/ps/prune_accuracy_vs_sparsity.png").stat().st_size > 10_000
