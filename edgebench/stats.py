"""The statistics every report, study and the leaderboard use: replicate means with a 95% t interval, paired
differences by seed, Holm's correction over a family of comparisons, and one rule for calling something an effect.

The effect rule: a difference is an effect only when its 95% interval excludes zero (after Holm's correction when
it is one of several comparisons in one file); compressed runs are compared with their seed's dense parent by
paired differences, never by whether two unpaired intervals overlap.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence


def t95(n: int) -> float:
    """The two-sided 95% t quantile for ``n`` replicates (n - 1 degrees of freedom)."""
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def mean_ci(xs: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% t interval); the half-width is NaN for a single replicate."""
    xs = [float(x) for x in xs]
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, math.nan
    return m, t95(len(xs)) * statistics.stdev(xs) / math.sqrt(len(xs))


@dataclass(frozen=True)
class Paired:
    """``a - b`` paired by seed: the mean difference, the half-width of its 95% t interval, the seeds it rests on,
    the two-sided p value of a one-sample t test against zero, and the per-seed differences."""

    mean: float
    half: float
    n: int
    p: float
    diffs: tuple[float, ...]
    seeds: tuple

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    def excludes_zero(self) -> bool:
        return self.n >= 2 and excludes_zero(self.mean, self.half)


def excludes_zero(mean: float, half: float) -> bool:
    """Whether the interval ``mean`` ± ``half`` excludes zero (False when either is NaN): the one place the
    effect rule's interval test is written."""
    return not (math.isnan(mean) or math.isnan(half)) and abs(mean) > half


def why_not_effect(mean: float, half: float, family: str = "") -> str:
    """Why a difference that the rule does not call an effect is not one: its interval covers zero, or it excludes
    zero and only Holm's correction (over ``family``, e.g. "the board") keeps it from being an effect."""
    if excludes_zero(mean, half):
        return f"the interval excludes zero, but not after Holm's correction{' over ' + family if family else ''} (family-wise 5%)"
    return "the interval covers zero"


def paired(a: Mapping, b: Mapping) -> Paired:
    """``a - b`` over the seeds both have (``{seed: value}`` each): mean, 95% t half-width and p value.

    Seeds only one side has are left out (and not counted in ``n``); with fewer than two common seeds the
    interval and p value are NaN."""
    seeds = tuple(sorted(set(a) & set(b), key=str))
    diffs = tuple(float(a[s]) - float(b[s]) for s in seeds)
    if not diffs:
        return Paired(math.nan, math.nan, 0, math.nan, (), ())
    m, h = mean_ci(diffs)
    p = math.nan
    if len(diffs) >= 2:
        sd = statistics.stdev(diffs)
        if sd == 0:
            p = 1.0 if m == 0 else 0.0
        else:
            from scipy.stats import t

            p = float(2 * t.sf(abs(m) / (sd / math.sqrt(len(diffs))), len(diffs) - 1))
    return Paired(m, h, len(diffs), p, diffs, seeds)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p values, in the order given (NaN stays NaN and is not counted): a comparison is
    significant at family-wise 5% when its adjusted p is below 0.05."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def verdict(d: Paired, p_adjusted: float | None = None, higher: str = "higher", lower: str = "lower") -> str:
    """The one effect rule: ``higher``/``lower`` when the paired 95% interval excludes zero (and, for one of
    several comparisons, Holm's adjusted p is below 0.05), ``not distinguishable`` when it covers zero (not "no effect": a wide
    interval may hide one), ``n/a`` with fewer
    than two paired seeds."""
    if d.n < 2 or math.isnan(d.half):
        return "n/a"
    significant = d.excludes_zero() and (p_adjusted is None or p_adjusted < 0.05)
    if not significant:
        return "not distinguishable"
    return higher if d.mean > 0 else lower


def within(d: Paired, tolerance: float) -> bool:
    """Whether the whole 95% interval of ``d`` lies within ``[-tolerance, +tolerance]`` (an equivalence check:
    "no worse than" needs the interval, not the mean, inside the tolerance)."""
    return d.n >= 2 and not math.isnan(d.half) and -tolerance <= d.low and d.high <= tolerance
