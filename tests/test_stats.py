"""shiftkit.stats: the one mean ± std, paired interval and their text form behind every report."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from shiftkit.stats import Interval, MeanStd, format_interval, format_mean_std, mean_std, paired_interval


def test_mean_std_skips_missing_values_and_uses_the_sample_std():
    assert mean_std([1.0, None, float("nan"), 3.0]) == MeanStd(2.0, 2 ** 0.5, 2)
    assert mean_std([0.5]) == (0.5, 0.0, 1)
    m = mean_std([])
    assert m.n == 0 and math.isnan(m.mean) and math.isnan(m.std)
    xs = [0.81, 0.79, 0.86, 0.9]
    assert mean_std(iter(xs)).std == pytest.approx(np.std(xs, ddof=1))


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_paired_interval_is_scipys_t_interval(confidence):
    d = [0.1, 0.3, -0.05, 0.2, 0.15]
    iv = paired_interval(d, confidence)
    ref = sps.ttest_1samp(d, 0).confidence_interval(confidence)
    assert iv.mean == pytest.approx(np.mean(d)) and (iv.lo, iv.hi) == pytest.approx((ref.low, ref.high))
    one = paired_interval([0.2])
    assert one.mean == 0.2 and math.isnan(one.lo) and math.isnan(one.hi)


def test_formats():
    assert format_mean_std(MeanStd(0.8123, 0.0149, 3), scale=100) == "81.2 ± 1.5"
    assert format_mean_std(MeanStd(0.8123, 0.0, 1), scale=100) == "81.2"
    assert format_mean_std(MeanStd(0.8123, 0.0, 1), scale=100, single_std=True) == "81.2 ± 0.0"
    assert format_mean_std(MeanStd(412.4, 3.2, 2), spec=".0f") == "412 ± 3"
    assert format_mean_std(mean_std([]), empty="–") == "–"
    assert format_interval(Interval(0.021, 0.004, 0.038), scale=100) == "+2.1 [+0.4, +3.8]"
    assert format_interval(Interval(0.021, 0.004, 0.038), scale=100, marks=True) == "+2.1 [+0.4, +3.8] ▲"
    assert format_interval(Interval(-0.05, -0.09, -0.01), scale=100, marks=True).endswith("] ▼")
    assert format_interval(Interval(-0.05, -0.09, 0.01), scale=100, marks=True) == "-5.0 [-9.0, +1.0]"
    assert format_interval(paired_interval([1.5])) == "+1.5"  # bounds unknown: the mean alone
    assert format_interval(None) == "—"
