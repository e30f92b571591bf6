"""Pareto fronts: which configurations no other beats on both accuracy and cost, with measurement noise in the
cost taken as a tie."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pareto(acc: pd.Series, cost: pd.Series, noise: pd.Series | None = None) -> pd.Series:
    """True for the runs no other run dominates (higher-or-equal accuracy at lower-or-equal cost, one strictly).

    ``noise``: each cost's half-width (a latency's measurement noise, :func:`latency_noise`): two costs whose
    bands overlap (difference <= the sum of the half-widths) are equal, so neither leads on cost and the more
    accurate one dominates. Without it every difference counts."""
    a, c = acc.to_numpy(float), cost.to_numpy(float)
    n = np.zeros(len(c)) if noise is None else np.nan_to_num(noise.to_numpy(float), nan=0.0)
    ok = ~(np.isnan(a) | np.isnan(c))
    front = np.zeros(len(a), bool)
    for i in np.flatnonzero(ok):
        tie = np.abs(c - c[i]) <= n + n[i]
        dominated = ok & (a >= a[i]) & ((c <= c[i]) | tie) & ((a > a[i]) | ((c < c[i]) & ~tie))
        front[i] = not dominated.any()
    return pd.Series(front, index=acc.index)


def latency_noise(df: pd.DataFrame) -> pd.Series:
    """The half-width of each group's ``latency_ms`` within which another latency counts as equal: the larger of
    the replicates' 95% interval (``latency_ms_ci``) and, on the host, the interleaved timing's spread: half the
    IQR (``latency/host_iqr_ms``, scaled from the run's own p50 to its ``latency_ms``), the whole IQR when the
    measurement was flagged noisy (``latency/host_noisy``). 0 where neither is known (a device estimate)."""
    lat = df["latency_ms"]
    rel = df["latency/host_iqr_ms"] / df["latency/host_p50_ms"]
    iqr = (lat * rel).where(df["device"] == "host") * np.where(df["latency/host_noisy"].fillna(0) > 0, 1.0, 0.5)
    return pd.concat([iqr, df.get("latency_ms_ci", pd.Series(np.nan, index=df.index))], axis=1).max(axis=1).fillna(0.0)
