"""The transfer benchmark's RESULTS.md section: paired differences, per-architecture tables, legacy rows."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from shiftkit.bench.transfer import _order
from shiftkit.errors import ConfigError
from shiftkit.stats import paired_interval
from shiftkit.bench.transfer_report import _main_table, accuracy_section, paired_deltas


def _rows(model: str | None, acc: dict[str, float], seeds=(0, 1, 2), orders=("temporal", "reverse")) -> list[dict]:
    rng = random.Random(0)
    rows = []
    for m, base in acc.items():
        for s in seeds:
            for o in orders:
                r = {"dataset": "driftfmnist", "target": 7, "shots": 100, "seed": s, "order": o, "method": m,
                     "select": "best_val", "accuracy": base + 0.01 * rng.random(), "macro_f1": base, "auroc": 0.9,
                     "wall_s": 1.0, "target_epochs": 18, "curve": [], "fraction_transferred": [], "n_test": 3000,
                     "n_val": 20}
                if model is not None:
                    r["model"] = model
                rows.append(r)
    return rows


def test_paired_interval_matches_scipy():
    d = [0.1, 0.3, -0.05, 0.2, 0.15]
    mean, lo, hi = paired_interval(d)
    ref = stats.ttest_1samp(d, 0).confidence_interval(0.95)
    assert mean == pytest.approx(np.mean(d)) and (lo, hi) == pytest.approx((ref.low, ref.high))
    assert math.isnan(paired_interval([0.2])[1])


def _independent_deltas(rows: list[dict], method: str, ref: str) -> list[float]:
    """Δ per (target, seed), each side's orders averaged: written out here, independently of the report."""
    def means(m):
        by = {}
        for r in rows:
            if r["method"] == m:
                by.setdefault((r["target"], r["seed"]), []).append(r["accuracy"])
        return {u: sum(v) / len(v) for u, v in by.items()}
    mine, theirs = means(method), means(ref)
    return [mine[u] - theirs[u] for u in sorted(mine)]


def test_section_per_architecture_and_paired_delta(tmp_path):
    small = _rows(None, {"grasp": 0.40, "best_single_source": 0.60})   # legacy rows: no "model" key
    r20 = _rows("resnet20", {"grasp": 0.50, "best_single_source": 0.45})
    text = accuracy_section([{"commands": ["a"], "rows": small}, {"commands": ["b"], "rows": r20}], tmp_path)
    head_small = text.index("#### driftfmnist, small_cnn, 100 target images")
    head_r20 = text.index("#### driftfmnist, resnet20, 100 target images")
    part_small, part_r20 = text[head_small:head_r20], text[head_r20:]
    # the paired difference is computed within each architecture only, over the 3 (target, seed) units
    for part, rows, sign in ((part_small, small, "-"), (part_r20, r20, "+")):
        d, lo, hi = paired_interval(_independent_deltas(rows, "grasp", "best_single_source"))
        assert "| best_single_source | " in part and "| reference |" in part
        assert f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" in part and f"{100 * d:+.1f}".startswith(sign)
        assert ("| 0/0/3 |" if sign == "-" else "| 3/0/0 |") in part


def _row(method: str, seed: int, order: str, acc: float, target: int = 7) -> dict:
    return {"dataset": "driftfmnist", "model": "small_cnn", "target": target, "shots": 100, "seed": seed,
            "order": order, "method": method, "select": "best_val", "accuracy": acc, "macro_f1": acc, "wall_s": 1.0,
            "target_epochs": 18, "curve": [], "fraction_transferred": [], "n_test": 3000, "n_val": 20}


def test_orders_average_within_a_unit_before_pairing():
    # seed 0: grasp 0.50 / 0.70 on two orders (mean 0.60) vs an order-invariant 0.55 -> one unit, Δ = +0.05
    rows = [_row("grasp", 0, "temporal", 0.50), _row("grasp", 0, "reverse", 0.70),
            _row("best_single_source", 0, "temporal", 0.55), _row("best_single_source", 0, "reverse", 0.55),
            _row("grasp", 1, "temporal", 0.40), _row("grasp", 1, "reverse", 0.40),
            _row("best_single_source", 1, "temporal", 0.45), _row("best_single_source", 1, "reverse", 0.45)]
    deltas = paired_deltas(rows, "grasp", "best_single_source")
    assert deltas == pytest.approx({(7, 0): 0.05, (7, 1): -0.05})  # 2 units, not 4 (target, order, seed) pairs


def test_temporal_only_method_pairs_on_temporal_rows_and_ties_count():
    ref = "grasp"  # an order-dependent reference: a temporal-only method must meet its temporal rows only
    rows = [_row(ref, s, o, acc) for s in (0, 1, 2) for o, acc in (("temporal", 0.60), ("reverse", 0.90))]
    rows += [_row("grasp_channel", 0, "temporal", 0.60),     # tie with temporal grasp (not a loss vs the 0.75 mean)
             _row("grasp_channel", 1, "temporal", 0.65),     # win
             _row("grasp_channel", 2, "temporal", 0.55)]     # loss
    assert paired_deltas(rows, "grasp_channel", ref) == pytest.approx({(7, 0): 0.0, (7, 1): 0.05, (7, 2): -0.05})
    table = _main_table(rows, [ref, "grasp_channel"])  # no best_single_source: GRASP is the reference
    line = next(l for l in table.splitlines() if l.startswith("| grasp_channel †"))
    assert "| 1/1/1 | +0.0 (bin 7) |" in line and "Δacc vs grasp" in table
    assert "| grasp | " in table and "| reference |" in table


def test_worst_target_and_one_table_per_setting(tmp_path):
    rows = [_row(m, s, "temporal", acc + (0.1 if t == 3 else 0), target=t)
            for t in (3, 7) for s in (0, 1) for m, acc in (("best_single_source", 0.5), ("greedy_soup", 0.5))]
    for r in rows:  # the soup loses 2 points on target 7, ties on target 3
        if r["method"] == "greedy_soup" and r["target"] == 7:
            r["accuracy"] -= 0.02
    kfold = [{**r, "accuracy": r["accuracy"] + 0.05} for r in rows]
    text = accuracy_section([{"commands": ["ref"], "config": {}, "rows": rows},
                             {"commands": ["kf"], "config": {"val_folds": 5}, "rows": kfold}], tmp_path)
    ref_part, kfold_part = text.split("setting kfold5 (5-fold selection")
    assert "reference setting (selection on the val split" in ref_part and "    ref" in ref_part
    assert "    kf" in kfold_part and "    ref" not in kfold_part  # never pooled
    for part in (ref_part, kfold_part):
        assert "| -1.0 [-2.8, +0.8] | 0/2/2 | -2.0 (bin 7) |" in part  # scipy: t(3) interval of [0, 0, -.02, -.02]
    assert "55.0 ± 5.8" in ref_part and "60.0 ± 5.8" in kfold_part  # best_single_source over 4 units, per setting


def test_random_order_is_shared_by_methods_and_seeded():
    paths = list(range(6))
    assert _order(paths, "random", 3) == _order(paths, "random", 3)  # every method of a seed sees the same order
    assert sorted(_order(paths, "random", 3)) == paths
    assert _order(paths, "reverse", 0) == paths[::-1] and _order(paths, "temporal", 0) == paths
    with pytest.raises(ConfigError, match="bogus"):  # never silently a random order
        _order(paths, "bogus", 0)
    assert len({tuple(_order(paths, "random", s)) for s in range(5)}) > 1
