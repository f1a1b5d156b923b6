"""The transfer benchmark's RESULTS.md section: paired differences, per-architecture tables, legacy rows."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from shiftkit.bench.transfer import _order
from shiftkit.stats import paired_interval
from shiftkit.bench.transfer_report import accuracy_section


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


def test_section_per_architecture_and_paired_delta(tmp_path):
    small = _rows(None, {"grasp": 0.40, "best_single_source": 0.60})   # legacy rows: no "model" key
    r20 = _rows("resnet20", {"grasp": 0.50, "best_single_source": 0.45})
    text = accuracy_section([{"commands": ["a"], "rows": small}, {"commands": ["b"], "rows": r20}], tmp_path)
    head_small = text.index("#### driftfmnist, small_cnn, 100 target images")
    head_r20 = text.index("#### driftfmnist, resnet20, 100 target images")
    part_small, part_r20 = text[head_small:head_r20], text[head_r20:]
    # the paired difference is computed within each architecture only
    for part, rows, sign in ((part_small, small, "+"), (part_r20, r20, "-")):
        ref = {(r["seed"], r["order"]): r["accuracy"] for r in rows if r["method"] == "grasp"}
        diffs = [r["accuracy"] - ref[(r["seed"], r["order"])] for r in rows if r["method"] == "best_single_source"]
        d, lo, hi = paired_interval(diffs)
        assert f"| best_single_source | " in part
        assert f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" in part and f"{100 * d:+.1f}".startswith(sign)
        assert f"{sum(x > 0 for x in diffs)}/6" in part


def test_random_order_is_shared_by_methods_and_seeded():
    paths = list(range(6))
    assert _order(paths, "random", 3) == _order(paths, "random", 3)  # every method of a seed sees the same order
    assert sorted(_order(paths, "random", 3)) == paths
    assert _order(paths, "reverse", 0) == paths[::-1] and _order(paths, "temporal", 0) == paths
    assert len({tuple(_order(paths, "random", s)) for s in range(5)}) > 1
