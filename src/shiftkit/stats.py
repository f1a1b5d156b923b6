"""Summary statistics and their text form, shared by every report (runs, sweeps, benchmarks).

mean ± sample std over seeds, paired differences with a Student-t interval, and how both are printed.
"""
from __future__ import annotations

import math
import statistics
from typing import Iterable, NamedTuple

__all__ = ["MeanStd", "Interval", "mean_std", "paired_interval", "format_mean_std", "format_interval"]


class MeanStd(NamedTuple):
    mean: float
    std: float   # sample std (n - 1); 0 for one value
    n: int


class Interval(NamedTuple):
    mean: float
    lo: float    # nan below 2 pairs
    hi: float


def mean_std(xs: Iterable[float | None]) -> MeanStd:
    """Mean and sample std of the values that are not None or NaN (nan, nan, 0 if none are)."""
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return MeanStd(float("nan"), float("nan"), 0)
    return MeanStd(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0, len(xs))


def paired_interval(diffs: list[float], confidence: float = 0.95) -> Interval:
    """Mean of paired differences and its two-sided t-interval (nan bounds below 2 pairs)."""
    from scipy import stats  # imported here: only reports need it, and it is slow to import

    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return Interval(mean, float("nan"), float("nan"))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half)


def format_mean_std(ms: MeanStd, *, scale: float = 1.0, spec: str = ".1f", single_std: bool = False,
                    empty: str = "—") -> str:
    """`mean ± std` (scaled, e.g. 100 for percent); one value alone prints bare unless single_std."""
    if ms.n == 0:
        return empty
    if ms.n == 1 and not single_std:
        return f"{scale * ms.mean:{spec}}"
    return f"{scale * ms.mean:{spec}} ± {scale * ms.std:{spec}}"


def format_interval(iv: Interval | None, *, scale: float = 1.0, spec: str = "+.1f", marks: bool = False,
                    empty: str = "—") -> str:
    """`mean [lo, hi]`; the mean alone when the bounds are unknown; marks: ▲ / ▼ when the interval excludes 0."""
    if iv is None:
        return empty
    if math.isnan(iv.lo):
        return f"{scale * iv.mean:{spec}}"
    mark = (" ▲" if iv.lo > 0 else " ▼" if iv.hi < 0 else "") if marks else ""
    return f"{scale * iv.mean:{spec}} [{scale * iv.lo:{spec}}, {scale * iv.hi:{spec}}]{mark}"
