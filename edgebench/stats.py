"""Replicate statistics: mean and a two-sided 95% confidence interval from the t distribution."""

from __future__ import annotations

import math
import statistics


def t95(n: int) -> float:
    """The two-sided 95% t quantile for ``n`` replicates (n - 1 degrees of freedom)."""
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def mean_ci(xs: list[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% t interval); the half-width is NaN for a single replicate."""
    xs = [float(x) for x in xs]
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, math.nan
    return m, t95(len(xs)) * statistics.stdev(xs) / math.sqrt(len(xs))
