"""Replicates: the runs of one configuration that differ only in the seed, as one row with the mean and 95% t
interval of every figure (:func:`edgebench.stats.mean_ci`), one run per seed, and what was left out and why."""

from __future__ import annotations

import numpy as np
import pandas as pd

from edgebench.report.load import plain
from edgebench.stats import mean_ci

GROUP_TAG = "replicate_group"  # runs whose configs differ only in the seed (edgebench.sweep.replicate_group)
# figures averaged over a group's replicates, each with the half-width of its 95% t interval in <name>_ci
AVERAGED = ["test/acc", "delta/acc", "select/val_acc", "select/val_loss", "baseline/test_acc", "bytes", "latency_ms", "size/params_nonzero",
            "size/bytes_artifact", "compute/macs", "memory/peak_activation_bytes", "latency/host_p50_ms",
            "latency/host_speedup", "latency/host_iqr_ms", "latency/host_noisy", "device/flash_bytes", "device/ram_bytes", "device/latency_ms_est",
            "device/latency_ms_low", "device/latency_ms_high", "device/latency_calibrated", "device/energy_mj_est"]
BY_SEED = "test/acc_by_seed"  # a group's test accuracy per seed ({seed: acc}): what paired comparisons read
VAL_LOSS_BY_SEED = "select/val_loss_by_seed"  # its validation loss per seed: what the leaderboard's second rule reads


def _group_key(df: pd.DataFrame) -> pd.Series:
    """Each run's group: its ``replicate_group`` tag, else its own run id. A method's child run (a lottery level, a
    chain's intermediate step) is its own group; runs logged before children got their own tag carry their parent's,
    so the child's part of the run name is added."""
    key = df[GROUP_TAG] if GROUP_TAG in df else pd.Series(np.nan, index=df.index)
    key = key.where(key.notna(), df["run_id"])
    if "edgebench.child" in df:
        child = df["edgebench.child"] == "true"
        part = " / " + df["run_name"].astype(str).str.rsplit(" / ", n=1).str[-1]
        old = child & ~pd.Series([k.endswith(p) for k, p in zip(key.astype(str), part)], index=df.index)
        key = key.where(~old, key.astype(str) + part)
    return key


def _dropped(r: pd.Series, reason: str) -> dict:
    return {"run_id": r["run_id"], "run_name": r.get("run_name", ""), "reason": reason}


def _latest_per_seed(g: pd.DataFrame, dropped: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """The group with one run per seed (the latest finished of duplicates), and the run ids dropped."""
    dups: list[str] = []
    if "seed" not in g:
        return g, dups
    when = g["end_time"] if "end_time" in g else pd.Series(np.nan, index=g.index)
    for seed, same in g[g["seed"].notna()].groupby("seed", sort=False):
        if len(same) < 2:
            continue
        order = sorted(same.index, key=lambda i: (pd.notna(when[i]), when[i] if pd.notna(when[i]) else 0,
                                                  g.index.get_loc(i)))  # latest last; no time: row order
        latest = same.loc[order[-1], "run_id"]
        for i in order[:-1]:
            dropped.append(_dropped(same.loc[i], f"duplicate of run {latest} (same replicate group, seed {plain(seed)})"))
            dups.append(same.loc[i, "run_id"])
    return g[~g["run_id"].isin(dups)], dups


def _summary(g: pd.DataFrame, dups: list[str]) -> dict:
    """One group's row: its first run's columns, the replicates, and the mean ± interval of each figure."""
    row = g.iloc[0].to_dict()
    row["replicates"] = len(g)
    row["seeds"] = ",".join(plain(v) for v in sorted(g["seed"].dropna())) if "seed" in g else ""
    row["run_ids"] = ",".join(g["run_id"])
    row["duplicates_dropped"] = len(dups)
    row["duplicate_run_ids"] = ",".join(dups)
    for col in AVERAGED:
        vals = g[col].dropna() if col in g else pd.Series(dtype=float)
        row[col], row[f"{col}_ci"] = mean_ci(list(vals)) if len(vals) else (np.nan, np.nan)
    row[BY_SEED] = {}  # without a seed there is nothing to pair by
    if "seed" in g and "test/acc" in g:
        seeded = g[g["seed"].notna() & g["test/acc"].notna()]
        row[BY_SEED] = {plain(s): float(a) for s, a in zip(seeded["seed"], seeded["test/acc"])}
    row[VAL_LOSS_BY_SEED] = {}
    if "seed" in g and "select/val_loss" in g:
        seeded = g[g["seed"].notna() & g["select/val_loss"].notna()]
        row[VAL_LOSS_BY_SEED] = {plain(s): float(v) for s, v in zip(seeded["seed"], seeded["select/val_loss"])}
    if "fits" in g:
        row["fits"] = bool(g["fits"].all())
    return row


def group_replicates(df: pd.DataFrame) -> pd.DataFrame:
    """One row per group of replicates (runs with the same ``replicate_group`` tag; a run without it is its own
    group): the first run's descriptive columns, ``replicates`` (n), ``seeds``, ``run_ids``, the mean of every
    :data:`AVERAGED` figure with the half-width of its 95% t interval in ``<figure>_ci`` (NaN for n = 1), the test
    accuracy per seed in :data:`BY_SEED`, and ``fits`` only when every replicate fits.

    A group holds one run per seed: of several runs with the same group and seed (a config rerun, a sweep launched
    twice) the latest finished (``end_time``; without it, the last row) is kept and the others are dropped, counted
    in ``duplicates_dropped`` and named in ``duplicate_run_ids``. The latest, not none of them: a rerun is the
    same experiment measured again by the current code, and dropping every copy would take a seed out of the
    group for no fault of its figures. Runs without a seed are never taken for duplicates. A method's child run
    (tag ``edgebench.child``) whose parent is not FINISHED (``parent_status``, :func:`edgebench.report.load_runs`:
    KILLED, FAILED, RUNNING, missing) is left out: its parent's result does not stand. Sweep jobs are not such
    children: a killed sweep's finished jobs count. Every run left out is in ``attrs["dropped"]`` (run_id, run_name,
    reason)."""
    key = _group_key(df)
    dropped: list[dict] = []
    if "edgebench.child" in df and "parent_status" in df:
        orphan = (df["edgebench.child"] == "true") & df["parent_status"].notna() & (df["parent_status"] != "FINISHED")
        for _, r in df[orphan].iterrows():
            dropped.append(_dropped(r, f"child of run {r.get('parent_run_id')}, which is {r['parent_status']} (not FINISHED)"))
        df, key = df[~orphan], key[~orphan]
    rows = []
    for _, g in df.groupby(key, sort=False):
        g, dups = _latest_per_seed(g, dropped)
        rows.append(_summary(g, dups))
    out = pd.DataFrame(rows).reset_index(drop=True)
    out.attrs["dropped"] = dropped
    return out


def dropped_summary(dropped: list[dict], limit: int = 5) -> list[str]:
    """What :func:`group_replicates` left out, in at most two lines (duplicates; children of unfinished parents),
    naming up to ``limit`` runs each; empty when nothing was."""
    lines = []
    dups = [d for d in dropped if d["reason"].startswith("duplicate")]
    orphans = [d for d in dropped if d["reason"].startswith("child")]
    for found, what in ((dups, "duplicate run{s} dropped (same replicate group and seed as a later finished run, "
                                "which is kept)"),
                        (orphans, "child run{s} left out (the parent run is not FINISHED)")):
        if found:
            named = "; ".join(f"{d['run_id']}: {d['reason']}" for d in found[:limit])
            more = f"; and {len(found) - limit} more" if len(found) > limit else ""
            lines.append(f"{len(found)} {what.format(s='' if len(found) == 1 else 's')}: {named}{more}")
    return lines
