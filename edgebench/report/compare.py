"""Comparisons with the dense model, paired by seed (:mod:`edgebench.stats`): a compressed configuration's test
accuracy minus its dense parent's (same model, data, device and seed, method ``none``), the mean of the per-seed
differences with its 95% t interval, and one verdict per comparison by the one effect rule, Holm-corrected when
one table holds several comparisons."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from edgebench import stats
from edgebench.report.load import DENSE
from edgebench.report.replicates import BY_SEED

COLUMNS = ["vs_dense", "vs_dense_ci", "vs_dense_n", "vs_dense_p", "vs_dense_p_holm", "effect_vs_dense"]


def word(d: stats.Paired, p_adjusted: float | None = None) -> str:
    """:func:`edgebench.stats.verdict` in the report's words: ``higher``, ``lower``, ``none`` (not distinguishable), ``n/a``."""
    v = stats.verdict(d, p_adjusted)
    return "none" if v == "not distinguishable" else v


def against(df: pd.DataFrame, refs: Mapping, by_seed: str = BY_SEED) -> pd.DataFrame:
    """The :data:`COLUMNS` of ``df``'s rows compared with their references: ``refs`` maps a row's index to the
    reference's test accuracy by seed (``{seed: acc}``), the row's own is its ``by_seed`` column. Per row: the mean
    paired difference (row minus reference), the half-width of its 95% interval, the seeds both have, the p value
    and, when several comparisons have one, Holm's adjusted p, which the verdict then also needs below 0.05
    (``attrs["comparisons"]``: how many). Rows without a reference: ``n/a``."""
    out = pd.DataFrame({c: np.nan for c in COLUMNS[:-1]} | {"effect_vs_dense": "n/a"}, index=df.index)
    found = {i: stats.paired(df.at[i, by_seed] if isinstance(df.at[i, by_seed], dict) else {}, ref)
             for i, ref in refs.items() if isinstance(ref, dict)}
    tested = [i for i, d in found.items() if not math.isnan(d.p)]
    adjusted = dict(zip(tested, stats.holm([found[i].p for i in tested])))
    several = len(tested) > 1
    for i, d in found.items():
        out.loc[i, COLUMNS[:-1]] = [d.mean, d.half, d.n, d.p, adjusted.get(i, np.nan)]
        out.at[i, "effect_vs_dense"] = word(d, adjusted.get(i) if several else None)
    out.attrs["comparisons"] = len(tested)
    return out


def vs_dense(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`against` each compressed group's dense parent: the one dense group (method ``none``) of the same
    model, data and device; none (``n/a``) when there is no such group or several."""
    dense = df[df["method"] == DENSE]
    refs = {}
    for i, r in df.iterrows():
        if r["method"] == DENSE:
            continue
        ref = dense[(dense["model"] == r["model"]) & (dense["data"] == r["data"]) & (dense["device"] == r["device"])]
        if len(ref) == 1:
            refs[i] = ref.iloc[0][BY_SEED]
    return against(df, refs)
