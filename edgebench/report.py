"""``python -m edgebench.report``: a table and Pareto plots of the runs in an MLflow store.

    python -m edgebench.report                          # every finished run of experiment "edgebench"
    python -m edgebench.report --sweep sw-1a2b3c4d5e    # one sweep (its parent run gets the plots too)
    python -m edgebench.report --device coral_dev_board --out results/coral

Reads the store with ``mlflow.search_runs`` (finished runs only; sweep parent runs are not rows; a method's
child run only while its parent is FINISHED), casts params to numbers, averages each replicate group (one run
per seed: the latest of duplicates; what is left out is named in the markdown and the console), and writes
``report.csv`` (one row per replicate group, the metric contract's columns), ``report.md``, and two frontier
plots: test accuracy against model bytes and against latency, one panel and one frontier per device (tag
``device``). A run is Pareto-optimal when it
fits its device and no other run on that device that fits is at least as accurate and at least as
small (or fast) and strictly better in one of them. Runs that do not fit (``device/fits`` = 0) are
drawn hollow and kept off the frontier; points are labelled by their swept values; the dense
baseline (method ``none``) is a star, or a dotted line at its accuracy when no dense run is in the set.

* **bytes** = the smallest of the run's ONNX file, its gzip, and the analytic encoding
  (``size/bytes_sparse``): the same denominator as ``size/compression_ratio``.
* **latency** on a target device = its estimate ``device/latency_ms_est``. On the host =
  the dense model's p50 divided by the run's ``latency/host_speedup`` (measured interleaved with
  the dense model in one process), so that runs timed at different moments compare fairly; a run
  without a speedup keeps its own ``latency/host_p50_ms`` and the axis then says the points were
  timed in different processes.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

COLUMNS = ["run_id", "run_name", "model", "data", "method", "device", "sweep_id", "test/acc", "delta/acc",
           "baseline/test_acc", "size/params", "size/params_nonzero", "size/sparsity", "size/bytes_artifact",
           "size/bytes_gzip", "size/bytes_sparse", "size/compression_ratio", "compute/macs", "compute/macs_nonzero",
           "compute/theoretical_speedup", "memory/peak_activation_bytes", "latency/host_p50_ms",
           "latency/host_speedup", "latency/host_iqr_ms", "latency/host_noisy", "device/fits", "device/flash_bytes", "device/ram_bytes", "device/latency_ms_est",
           "device/energy_mj_est", "quant.accuracy", "pipeline", "device.fit", "device.ram_source", "edgebench.child"]


def _number(v):
    try:
        f = float(v)
        return int(f) if f.is_integer() and "." not in str(v) and "e" not in str(v).lower() else f
    except (TypeError, ValueError):
        return v


def path_component(name: str) -> str:
    """``name`` (an experiment name, a sweep id) as one folder name that stays where it is put: kept as it is when
    plain (letters, digits, ``._-``, not starting with a dot or dash, at most 100 characters); otherwise every run
    of other characters (``/``, spaces, ``$``...) becomes ``_``, leading dots and dashes are dropped, and 8 hex
    characters of the name's SHA-256 are appended, so that no two names share a folder (``../../x`` ->
    ``_.._x-<hash>``: never ``..``, never a path)."""
    import hashlib
    import re

    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}", name):
        return name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".-")[:80]
    return f"{safe or 'name'}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _plain(v) -> str:
    """A param as text, a whole float without its ``.0`` (a seed column with gaps is float)."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(_number(v))


def load_runs(tracking_uri: str, experiment: str = "edgebench", sweep: str | None = None,
              device: str | None = None) -> pd.DataFrame:
    """Finished runs as a DataFrame: tags and metrics by their contract names, params cast to numbers.

    Besides: ``start_time`` and ``end_time`` (which of two runs of one seed is the latest), ``parent_run_id`` and
    ``parent_status`` (the status of the parent run, ``missing`` when it is not in the experiment: a method's child
    run counts only while its parent is FINISHED, :func:`group_replicates`), and a child run without a ``seed``
    param of its own gets its parent's (a lottery level is of its parent's seed)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in mlflow.search_experiments()]
        raise SystemExit(f"no MLflow experiment {experiment!r} in {tracking_uri}; experiments: {', '.join(names) or 'none'}")
    every = mlflow.search_runs([exp.experiment_id], max_results=50000)  # every status: the parents' status is needed
    if every.empty:
        return pd.DataFrame()
    status = dict(zip(every["run_id"], every["status"]))
    seed_of = dict(zip(every["run_id"], every["params.seed"])) if "params.seed" in every else {}
    runs = every[every["status"] == "FINISHED"]
    if device:
        runs = runs[runs.get("tags.device", pd.Series(np.nan, index=runs.index)) == device]
    if sweep:  # the sweep's children, and the earlier runs it reused (tags sweep.reused.* on its parent)
        parents = runs[runs.get("tags.edgebench.sweep_parent", pd.Series(dtype=str)) == sweep]
        reused = set()
        for _, p in parents.iterrows():
            reused |= {v for k, v in p.items() if str(k).startswith("tags.sweep.reused.") and isinstance(v, str)}
        runs = runs[(runs.get("tags.sweep_id", pd.Series(dtype=str)) == sweep) | runs["run_id"].isin(reused)]
    swept: list[str] = []
    if "tags.edgebench.sweep_parent" in runs:
        swept = _swept(runs[runs["tags.edgebench.sweep_parent"].notna()])
        runs = runs[runs["tags.edgebench.sweep_parent"].isna()]
    cols = {"run_id": runs["run_id"], "start_time": runs["start_time"], "end_time": runs["end_time"]}
    for col in runs.columns:
        if col.startswith("metrics."):
            cols[col[len("metrics."):]] = runs[col]
        elif col.startswith("tags.") and not col.startswith("tags.mlflow.") or col == "tags.mlflow.runName":
            cols["run_name" if col == "tags.mlflow.runName" else col[len("tags."):]] = runs[col]
        elif col.startswith("params."):
            cols[col[len("params."):]] = runs[col].map(_number)
    parent = runs.get("tags.mlflow.parentRunId", pd.Series(np.nan, index=runs.index, dtype=object))
    cols["parent_run_id"] = parent
    cols["parent_status"] = parent.map(lambda p: status.get(p, "missing") if isinstance(p, str) else np.nan)
    if "edgebench.child" in cols:
        child = cols["edgebench.child"] == "true"
        own = cols.get("seed", pd.Series(np.nan, index=runs.index)).astype(object)
        inherited = parent.map(lambda p: _number(seed_of.get(p, np.nan))).astype(object)
        cols["seed"] = own.where(own.notna() | ~child, inherited)
    out = pd.DataFrame(cols).reset_index(drop=True)
    out.attrs["swept_keys"] = swept  # what the sweep(s) varied: the plots' point labels
    return out


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


DENSE = "none"


def _swept(runs: pd.DataFrame) -> list[str]:
    """The keys a sweep varied, from its parents' ``sweep.swept_keys`` / ``sweep.overrides`` tags."""
    from edgebench.sweep import swept_from_overrides

    keys: list[str] = []
    for _, p in runs.iterrows():
        tag = p.get("tags.sweep.swept_keys")
        found = str(tag).split() if isinstance(tag, str) else swept_from_overrides(str(p.get("tags.sweep.overrides") or "").split())
        keys += [k.lstrip("+~") for k in found if k.lstrip("+~") not in keys]
    return keys


def _varies(s: pd.Series) -> bool:
    return s.map(str).where(s.notna()).nunique() > 1


def labels(df: pd.DataFrame, swept: list[str] = ()) -> pd.Series:
    """Each run's swept values, e.g. ``sparsity=0.9`` or ``bits=4 seed=1``; ``dense`` for the dense baseline.

    The keys are the sweep's swept keys and the ``method.*`` params that differ between runs of one method
    (not ``method`` itself, which is the colour, nor ``device``, which is the panel)."""
    common = [k for k in swept if k in df and k not in ("method", "device") and not k.startswith("hydra")
              and _varies(df[k])]
    out = pd.Series("", index=df.index, dtype=object)
    for method, g in df.groupby("method", dropna=False):
        keys = common + sorted(c for c in g.columns if c.startswith("method.") and c != "method.name"
                               and c not in common and _varies(g[c]))
        for i, r in g.iterrows():
            parts = [f"{k.removeprefix('method.')}={r[k]:g}" if isinstance(r[k], float) else
                     f"{k.removeprefix('method.')}={r[k]}" for k in keys if pd.notna(r[k])]
            out[i] = " ".join((["dense"] if method == DENSE else []) + parts)
    return out


def _host_latency(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Host latency per run and whether it was timed side by side with the dense model.

    Per model and data: the reference is the dense runs' median p50 (or, without a dense run, the median of
    p50 x speedup, the dense p50 each run measured beside itself); a run's latency is reference / speedup."""
    lat = pd.Series(np.nan, index=df.index)
    side = pd.Series(False, index=df.index)
    p50, speedup = df["latency/host_p50_ms"], df["latency/host_speedup"]
    for _, g in df.groupby(["model", "data"], dropna=False):
        dense = g[(g["method"] == DENSE) & g["latency/host_p50_ms"].notna()]
        paired = g[g["latency/host_speedup"].notna() & g["latency/host_p50_ms"].notna()]
        if len(dense):
            ref = dense["latency/host_p50_ms"].median()
        elif len(paired):
            ref = (paired["latency/host_p50_ms"] * paired["latency/host_speedup"]).median()
        else:
            ref = np.nan
        for i in g.index:
            if pd.notna(speedup[i]) and pd.notna(ref):
                lat[i], side[i] = ref / speedup[i], True
            elif df.at[i, "method"] == DENSE and pd.notna(ref):
                lat[i], side[i] = ref, True  # the reference itself
            else:
                lat[i] = p50[i]
    return lat, side


def latency_label(df: pd.DataFrame, device: str) -> str:
    """The latency axis of one device's panel: what the numbers are and how they were timed."""
    if device != "host":
        return f"estimated {device} latency, device/latency_ms_est (ms)"
    rows = df[(df["device"] == device) & df["latency_ms"].notna()]
    if len(rows) and rows["latency_side_by_side"].all() and rows.groupby(["model", "data"], dropna=False).ngroups == 1:
        return "host latency (ms): dense p50 / speedup, timed side by side with the dense model"
    return "measured host latency, p50 (ms): points timed in different processes"


GROUP_BY = ["data", "model"]  # the report's sections: runs of another data set or model are not compared
GROUP_TAG = "replicate_group"  # runs whose configs differ only in the seed (edgebench.sweep.replicate_group)
# figures averaged over a group's replicates, each with the half-width of its 95% t interval in <name>_ci
AVERAGED = ["test/acc", "delta/acc", "select/val_acc", "baseline/test_acc", "bytes", "latency_ms", "size/params_nonzero",
            "size/bytes_artifact", "compute/macs", "memory/peak_activation_bytes", "latency/host_p50_ms",
            "latency/host_speedup", "latency/host_iqr_ms", "latency/host_noisy", "device/flash_bytes", "device/ram_bytes", "device/latency_ms_est",
            "device/energy_mj_est"]


def group_replicates(df: pd.DataFrame) -> pd.DataFrame:
    """One row per group of replicates (runs with the same ``replicate_group`` tag; a run without it is its own
    group): the first run's descriptive columns, ``replicates`` (n), ``seeds``, ``run_ids``, the mean of every
    :data:`AVERAGED` figure with the half-width of its 95% t interval in ``<figure>_ci`` (NaN for n = 1), and
    ``fits`` only when every replicate fits.

    A group holds one run per seed: of several runs with the same group and seed (a config rerun, a sweep launched
    twice) the latest finished (``end_time``; without it, the last row) is kept and the others are dropped, counted
    in ``duplicates_dropped`` and named in ``duplicate_run_ids``. The latest, not none of them: a rerun is the
    same experiment measured again by the current code, and dropping every copy would take a seed out of the
    group for no fault of its figures. Runs without a seed are never taken for duplicates. A method's child run
    (tag ``edgebench.child``) whose parent is not FINISHED (``parent_status``, :func:`load_runs`: KILLED, FAILED,
    RUNNING, missing) is left out: its parent's result does not stand. Sweep jobs are not such children: a
    killed sweep's finished jobs count. Every run left out is in ``attrs["dropped"]`` (run_id, run_name, reason)."""
    from edgebench.stats import mean_ci

    key = df[GROUP_TAG] if GROUP_TAG in df else pd.Series(np.nan, index=df.index)
    key = key.where(key.notna(), df["run_id"])
    if "edgebench.child" in df:  # a method's child run (a lottery level, a chain's intermediate step) is its own
        # group; runs logged before children got their own replicate_group tag carry their parent's: add the name
        child = df["edgebench.child"] == "true"
        part = " / " + df["run_name"].astype(str).str.rsplit(" / ", n=1).str[-1]
        old = child & ~pd.Series([k.endswith(p) for k, p in zip(key.astype(str), part)], index=df.index)
        key = key.where(~old, key.astype(str) + part)
    dropped: list[dict] = []

    def drop(r: pd.Series, reason: str) -> None:
        dropped.append({"run_id": r["run_id"], "run_name": r.get("run_name", ""), "reason": reason})

    if "edgebench.child" in df and "parent_status" in df:
        orphan = (df["edgebench.child"] == "true") & df["parent_status"].notna() & (df["parent_status"] != "FINISHED")
        for _, r in df[orphan].iterrows():
            drop(r, f"child of run {r.get('parent_run_id')}, which is {r['parent_status']} (not FINISHED)")
        df, key = df[~orphan], key[~orphan]
    rows = []
    for _, g in df.groupby(key, sort=False):
        dups: list[str] = []
        if "seed" in g:
            when = g["end_time"] if "end_time" in g else pd.Series(np.nan, index=g.index)
            for seed, same in g[g["seed"].notna()].groupby("seed", sort=False):
                if len(same) < 2:
                    continue
                order = sorted(same.index, key=lambda i: (pd.notna(when[i]), when[i] if pd.notna(when[i]) else 0,
                                                          g.index.get_loc(i)))  # latest last; no time: row order
                latest = same.loc[order[-1], "run_id"]
                for i in order[:-1]:
                    drop(same.loc[i], f"duplicate of run {latest} (same replicate group, seed {_plain(seed)})")
                    dups.append(same.loc[i, "run_id"])
            g = g[~g["run_id"].isin(dups)]
        row = g.iloc[0].copy()
        row["replicates"] = len(g)
        row["seeds"] = ",".join(_plain(v) for v in sorted(g["seed"].dropna())) if "seed" in g else ""
        row["run_ids"] = ",".join(g["run_id"])
        row["duplicates_dropped"] = len(dups)
        row["duplicate_run_ids"] = ",".join(dups)
        for col in AVERAGED:
            vals = g[col].dropna() if col in g else pd.Series(dtype=float)
            row[col], row[f"{col}_ci"] = mean_ci(list(vals)) if len(vals) else (np.nan, np.nan)
        if "fits" in g:
            row["fits"] = bool(g["fits"].all())
        rows.append(row)
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


def effect(a: float, a_ci: float, b: float, b_ci: float) -> str:
    """Whether ``a`` differs from ``b`` by their 95% intervals: ``higher`` / ``lower`` when the intervals do not
    overlap, ``none`` when they do, ``n/a`` when either has no interval (one replicate): a difference inside the
    intervals is not an effect."""
    if any(pd.isna(v) for v in (a, a_ci, b, b_ci)):
        return "n/a"
    if a - a_ci > b + b_ci:
        return "higher"
    if a + a_ci < b - b_ci:
        return "lower"
    return "none"


def build(runs: pd.DataFrame, swept: list[str] = (), children: bool = False) -> tuple[pd.DataFrame, str, str]:
    """Add the bytes, latency and label columns, average replicates (:func:`group_replicates`) and flag the
    Pareto frontier on the groups' means, one per data set, model and device (:data:`GROUP_BY` and ``device``).

    A method's child run (tag ``edgebench.child``: a distillation teacher, a chain's step, a lottery level) is not a
    row unless ``children``: how many were left out is ``attrs["children_left_out"]``.

    Returns (table, bytes label, latency label); the latency label names every device's latency."""
    df = runs.copy()
    for col in COLUMNS:
        if col not in df:
            df[col] = np.nan
    df["device"] = df["device"].fillna("unknown")
    size_cols = [c for c in ("size/bytes_artifact", "size/bytes_gzip", "size/bytes_sparse") if c in df]
    df["bytes"] = df[size_cols].min(axis=1)
    host_lat, side = _host_latency(df)
    on_host = df["device"] == "host"
    df["latency_ms"] = host_lat.where(on_host, df["device/latency_ms_est"])
    df["latency_side_by_side"] = side & on_host
    df["fits"] = df["device/fits"].fillna(1) != 0
    df["label"] = labels(df, [k for k in swept if k != "seed"])  # replicates differ in the seed only
    df = group_replicates(df)
    dropped = df.attrs["dropped"]
    left_out = 0
    if not children:
        child = df["edgebench.child"] == "true"
        left_out = int(df.loc[child, "replicates"].sum())
        df = df[~child]
    dense = df[df["method"] == DENSE]
    df["effect_vs_dense"] = "n/a"
    for i, r in df.iterrows():  # the accuracy difference to the dense group of the same model, data and device
        ref = dense[(dense["model"] == r["model"]) & (dense["data"] == r["data"]) & (dense["device"] == r["device"])]
        if r["method"] != DENSE and len(ref) == 1:
            d = ref.iloc[0]
            df.at[i, "effect_vs_dense"] = effect(r["test/acc"], r["test/acc_ci"], d["test/acc"], d["test/acc_ci"])
    df["pareto_bytes"] = df["pareto_latency"] = False
    df["latency_noise_ms"] = latency_noise(df)
    for _, g in df.groupby([*GROUP_BY, "device"], dropna=False):  # one frontier per group and device, of runs that fit
        acc = g["test/acc"].where(g["fits"])
        df.loc[g.index, "pareto_bytes"] = pareto(acc, g["bytes"])
        df.loc[g.index, "pareto_latency"] = pareto(acc, g["latency_ms"], g["latency_noise_ms"])
    extra = sorted(c for c in df.columns if c.startswith("method.") and c != "method.name"
                   and _varies(df[c]))  # the params that vary: what was swept
    order = COLUMNS[:7] + ["label", "steps", "replicates", "seeds"] + extra + [
        "bytes", "latency_ms", "latency_noise_ms", "latency_side_by_side", "fits", "pareto_bytes", "pareto_latency", "effect_vs_dense",
        "test/acc_ci", "delta/acc_ci", "select/val_acc", "select/val_acc_ci", "bytes_ci", "latency_ms_ci"] + COLUMNS[7:] + [
        "run_ids", "duplicates_dropped", "duplicate_run_ids"]
    df = df[[c for c in order if c in df]].sort_values([*GROUP_BY, "device", "method", "test/acc"],
                                                      ascending=[True, True, True, True, False], na_position="last")
    df = df.reset_index(drop=True)
    df.attrs = {"dropped": dropped, "children_left_out": left_out}  # what was left out: the report says so
    lat_label = "; ".join(f"{d}: {latency_label(df, d)}" for d in sorted(df["device"].unique()))
    return df, "bytes (smallest of file, gzip, analytic encoding)", lat_label


def _si_bytes(v: float) -> str:
    for div, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if v >= div:
            return f"{v / div:.3g} {suffix}"
    return f"{v:.3g} B"


def _log_ticks(lo: float, hi: float) -> list[float]:
    """3 to 8 round ticks (1-2-5 and finer) between lo and hi, for a log axis that spans little."""
    exps = range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
    for subs in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0 ** e for e in exps for m in subs if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= 3:
            return ticks[::-(-len(ticks) // 8)]
    return [float(f"{t:.2g}") for t in np.geomspace(lo, hi, 4)]


def _log_axis(ax, values: pd.Series, fmt) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    lo, hi = float(values.min()) / 1.4, float(values.max()) * 1.4
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(_log_ticks(lo, hi)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _label_offsets() -> list[tuple[float, float, str]]:
    """Candidate label offsets (points) with their alignment, nearest first: around the marker, then further out."""
    near = [(8, -3, "left"), (-8, -3, "right"), (0, 9, "center"), (0, -17, "center"), (8, 4, "left"), (-8, 4, "right"),
            (8, -10, "left"), (-8, -10, "right")]
    grid = [(dx, dy, "left" if dx > 0 else "right" if dx < 0 else "center")
            for dx in range(-140, 141, 8) for dy in range(-90, 91, 5)]
    grid.sort(key=lambda o: (abs(o[0]) ** 2 + (2 * o[1]) ** 2))  # prefer beside the point to above or below it
    return near + grid


def _place_labels(fig, ax, points: list[tuple[float, float, str]], lines: list[tuple[list, list]] = ()) -> None:
    """Label points so that no two labels overlap and no label covers a marker or one of ``lines`` (the frontier,
    ``(xs, ys)`` in data coordinates, drawn as a post step): the nearest free offset around each point
    (:func:`_label_offsets`, measured before drawing); a label away from its point gets a leader line. Without a
    free spot inside the axes a label goes to the nearest free spot in the figure, still apart."""
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    scale = fig.dpi / 72
    markers = [ax.transData.transform((x, y)) for x, y, _ in points]
    r = 6.5 * scale  # a marker's radius, the frontier's ring included
    obstacles = [(px - r, py - r, px + r, py + r) for px, py in markers]
    for xs, ys in lines:  # the step's segments, as thin boxes
        if len(xs) < 2:
            continue
        pix = ax.transData.transform(np.column_stack([xs, ys]))
        for (x0, y0), (x1, y1) in itertools.pairwise(pix):
            obstacles += [(min(x0, x1), y0 - 1, max(x0, x1), y0 + 1), (x1 - 1, min(y0, y1), x1 + 1, max(y0, y1))]
    obs = np.array(obstacles, float).reshape(-1, 4)
    offsets = _label_offsets()
    for (x, y, text), (px, py) in sorted(zip(points, markers), key=lambda p: (p[0][0], -p[0][1])):
        probe = ax.text(0, 0, text, fontsize=7)
        ext = probe.get_window_extent(renderer)
        w, h = ext.width, ext.height
        probe.remove()
        cand = np.array([(px + dx * scale - {"left": 0, "right": w, "center": w / 2}[ha], py + dy * scale)
                         for dx, dy, ha in offsets])
        x0, y0 = cand[:, 0] - 2, cand[:, 1] - 2
        x1, y1 = x0 + w + 4, y0 + h + 4
        hit = ((x0[:, None] < obs[None, :, 2]) & (x1[:, None] > obs[None, :, 0]) &
               (y0[:, None] < obs[None, :, 3]) & (y1[:, None] > obs[None, :, 1])).any(axis=1)
        inside = (x0 >= frame.x0) & (x1 <= frame.x1) & (y0 >= frame.y0) & (y1 <= frame.y1)
        free = np.flatnonzero(~hit & inside)
        if not len(free):
            free = np.flatnonzero(~hit)
        k = int(free[0]) if len(free) else 0
        dx, dy, ha = offsets[k]
        far = abs(dx) > 10 or dy > 8 or dy < -16
        t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7, color="0.2", ha=ha,
                        va="bottom", annotation_clip=False,
                        arrowprops={"arrowstyle": "-", "color": "0.45", "lw": 0.6, "shrinkA": 0, "shrinkB": 3} if far else None)
        t.update_positions(renderer)
        obs = np.vstack([obs, [x0[k], y0[k], x1[k], y1[k]]])


def _accuracy_range(acc: pd.Series, ci: pd.Series) -> tuple[float, float, float]:
    """The accuracy axis of one panel: ``(bottom, top, cut)``, zoomed to the runs with a margin. A run that
    collapsed far below the others (a gap under it wider than twice the spread of the runs above it and than
    5 points, with at least half of the runs above it) is below ``cut``: drawn at the bottom edge, not stretching
    the axis down to it."""
    vals = np.sort(acc.dropna().to_numpy(float))[::-1]
    cut = -np.inf
    for k in range(max(2, -(-len(vals) // 2)), len(vals)):
        gap, spread = vals[k - 1] - vals[k], vals[0] - vals[k - 1]
        if gap > max(2 * spread, 0.05):
            cut = (vals[k - 1] + vals[k]) / 2
            break
    kept = acc >= cut
    e = ci.fillna(0)
    lo, hi = float((acc - e)[kept].min()), float((acc + e)[kept].max())
    margin = max(0.08 * (hi - lo), 0.005)
    return lo - margin * (2.2 if cut > -np.inf else 1), hi + 1.5 * margin, cut


def _panels(df: pd.DataFrame, x: str, flag: str, by: list[str]) -> list[tuple[str, list[str], pd.DataFrame]]:
    """``(group, devices, rows)`` per panel: one per group (``by``) and device, devices whose rows draw the same
    (method, label, cost, accuracy, interval, fit, frontier) sharing one panel that names them all."""
    def sig(d):
        return tuple(sorted((str(r["method"]), str(r["label"]), f"{r[x]:.6g}", f"{r['test/acc']:.6g}",
                             f"{r.get('test/acc_ci', np.nan):.4g}", bool(r["fits"]), bool(r[flag])) for _, r in d.iterrows()))

    panels: list = []
    for key, g in df.groupby(by, dropna=False, sort=True) if by else [((), df)]:
        key = key if isinstance(key, tuple) else (key,)
        name = " / ".join("?" if pd.isna(k) else str(k) for k in key)
        seen: dict = {}
        for device in sorted(g["device"].unique()):
            d = g[g["device"] == device]
            s = sig(d)
            if s in seen:
                seen[s][1].append(device)
            else:
                seen[s] = (name, [device], d)
                panels.append(seen[s])
    return panels


def plot(df: pd.DataFrame, x: str, xlabel: str, flag: str, path: Path, title: str,
         by: list[str] = GROUP_BY) -> Path | None:
    """:func:`figure` saved to ``path``; None (nothing written) when no run has ``x``."""
    from edgebench.plots import pyplot

    fig = figure(df, x, xlabel, flag, title, by)
    if fig is None:
        log.warning("no run has %s: %s not drawn", xlabel, path.name)
        return None
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path


def figure(df: pd.DataFrame, x: str, xlabel: str, flag: str, title: str, by: list[str] = GROUP_BY):
    """Accuracy against ``x``: one panel and one dashed frontier per group (``by``: data set and model) and device,
    devices whose panels would be identical in one panel naming them; one colour per method; points labelled by
    their swept values without overlaps; runs that do not fit drawn on top as an ``X``; the accuracy axis zoomed
    to the runs, a run that collapsed far below the others drawn as a triangle at the bottom edge with its
    accuracy written. None when no run has ``x``.

    ``xlabel`` is used as is, except for ``latency_ms``, whose label is each device's :func:`latency_label`."""
    import textwrap

    from matplotlib.lines import Line2D

    from edgebench.plots import pyplot

    plt = pyplot()

    full = df
    df = df[df[x].notna() & (df[x] > 0) & df["test/acc"].notna()]
    if df.empty:
        return None
    panels = _panels(df, x, flag, list(by))
    groups = len({p[0] for p in panels})
    methods = sorted(full["method"].dropna().unique(), key=lambda m: (m != DENSE, m))
    colour = {m: f"C{i}" for i, m in enumerate(methods)}
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.8 * ncols, 4.9 * nrows + 0.8), squeeze=False,
                             layout="constrained")
    fmt = _si_bytes if x == "bytes" else (lambda v: f"{v:.3g}")
    unfit_drawn = line_drawn = below_drawn = False
    labelled = []
    for ax, (group, devices, d) in zip(axes.flat, panels):
        ci = d.get("test/acc_ci", pd.Series(np.nan, index=d.index))
        bottom, top, cut = _accuracy_range(d["test/acc"], ci)
        low = d["test/acc"] < cut
        edge = bottom + 0.04 * (top - bottom)  # where a run below the axis is drawn
        shown = d["test/acc"].where(~low, edge)
        for method, g in d.groupby("method", dropna=False):
            c = colour.get(method, "grey")
            marker, size = ("*", 160) if method == DENSE else ("o", 32)
            inside = g[~low[g.index]]
            fit, unfit = inside[inside["fits"]], inside[~inside["fits"]]
            bars = inside[ci[inside.index].notna()]
            if len(bars):  # replicates: the 95% intervals of the mean accuracy (and of the cost, when it varied)
                xerr = bars[f"{x}_ci"].fillna(0).to_numpy() if f"{x}_ci" in bars else None
                ax.errorbar(bars[x], bars["test/acc"], yerr=bars["test/acc_ci"].to_numpy(), xerr=xerr, fmt="none",
                            ecolor=c, elinewidth=0.9, capsize=2.5, zorder=2.5)
            ax.scatter(fit[x], fit["test/acc"], color=c, marker=marker, s=size, zorder=3, gid="fits")
            if len(unfit):  # on top of everything, its own marker: never hidden behind a run that fits
                ax.scatter(unfit[x], unfit["test/acc"], color=c, marker="X", s=70, edgecolors="black",
                           linewidths=0.6, zorder=5, gid="does not fit")
                unfit_drawn = True
            under = g[low[g.index]]
            if len(under):
                ax.scatter(under[x], shown[under.index], color=c, marker="v", s=46, edgecolors="black",
                           linewidths=0.5, zorder=4, gid="below", clip_on=False)
                below_drawn = True
        if not (d["method"] == DENSE).any() and d["baseline/test_acc"].notna().any():
            ax.axhline(d["baseline/test_acc"].median(), color="0.4", ls=":", lw=1, zorder=1)
            line_drawn = True
        front = d[d[flag]].sort_values(x)
        ax.step(front[x], shown[front.index], where="post", color="black", lw=1, ls="--", zorder=2)
        ax.scatter(front[x], shown[front.index], facecolors="none", edgecolors="black", s=110, lw=0.8, zorder=2,
                   gid="frontier")
        _log_axis(ax, d[x], fmt)
        ax.set_ylim(bottom, top)
        if x == "latency_ms":
            xl = latency_label(full, devices[0]) if len(devices) == 1 or devices[0] == "host" else \
                "estimated latency on each, device/latency_ms_est (ms)"
        else:
            xl = xlabel
        ax.set_xlabel(xl, fontsize=9)
        name = ", ".join(devices) if groups == 1 else f"{group}: {', '.join(devices)}"
        ax.set_title(textwrap.fill(f"{title}: {name}" if len(panels) == 1 else name, 70), fontsize=10)
        ax.grid(alpha=0.3)
        labelled.append((ax, [(list(front[x]), list(shown[front.index]))], [(r[x], shown[i], f"{r['label'] or r['method']}: {r['test/acc']:.3f}" if low[i] else r["label"])
                              for i, r in d.iterrows() if r["label"] or low[i]]))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (mean of replicates, 95% CI bars)" if df["replicates"].max() > 1 else "test accuracy")
    present = set(df["method"])
    handles = [Line2D([], [], ls="", marker="*" if m == DENSE else "o", color=colour[m], markersize=10 if m == DENSE else 6,
                      label="dense baseline (none)" if m == DENSE else m) for m in methods if m in present]
    handles.append(Line2D([], [], color="black", ls="--", lw=1, marker="o", markersize=10, markerfacecolor="none",
                          markeredgewidth=0.8, label="Pareto frontier (runs that fit), ringed"))
    if unfit_drawn:
        handles.append(Line2D([], [], ls="", marker="X", color="0.5", markeredgecolor="black", markersize=7,
                              label="X: does not fit the device (never on the frontier)"))
    if below_drawn:
        handles.append(Line2D([], [], ls="", marker="v", color="0.5", markeredgecolor="black", markersize=7,
                              label="far below the axis: drawn at its edge, accuracy written"))
    if line_drawn:
        handles.append(Line2D([], [], color="0.4", ls=":", lw=1, label="dense baseline accuracy"))
    if len(panels) > 1:
        fig.suptitle(title)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3), fontsize=8, frameon=False)
    fig.canvas.draw()  # settle the layout, then freeze it and place the labels where they do not collide
    fig.set_layout_engine("none")
    for ax, lines, points in labelled:
        _place_labels(fig, ax, points, lines)
    return fig


def sections(df: pd.DataFrame):
    """``(name, rows)`` per (data, model) group (:data:`GROUP_BY`), ``name`` as ``data / model``, in the frame's order."""
    for key, g in df.groupby(GROUP_BY, dropna=False, sort=False):
        yield " / ".join("?" if pd.isna(k) else str(k) for k in key), g


def children_line(df: pd.DataFrame) -> str:
    """The sentence on the child runs :func:`build` left out, or ``""``."""
    n = int(df.attrs.get("children_left_out", 0) or 0)
    return (f"{n} child run{'' if n == 1 else 's'} (teachers, pipeline steps) left out: tag edgebench.child, "
            "not deployables of their own" if n else "")


def pt(v: float, ci: float = np.nan) -> str:
    """An accuracy difference (a fraction) in percentage points, signed, with its interval: ``-2.00 ± 0.41``."""
    if pd.isna(v):
        return ""
    return f"{v * 100:+.2f}" + ("" if pd.isna(ci) else f" ± {ci * 100:.2f}")


def _markdown(df: pd.DataFrame, title: str, bytes_label: str, lat_label: str, plots: list[str]) -> str:
    cols = ["run_name", "device", "method", "label", "replicates"] + [c for c in df.columns if c.startswith("method.")] + [
        "test/acc", "Δ acc (pt)", "effect_vs_dense", "select/val_acc", "bytes", "latency_ms", "fits",
        "pareto_bytes", "pareto_latency"]
    if "duplicates_dropped" in df and df["duplicates_dropped"].fillna(0).any():
        cols.insert(cols.index("replicates") + 1, "duplicates_dropped")

    def cell(r, c):
        if c == "Δ acc (pt)":
            return pt(r["delta/acc"], r.get("delta/acc_ci", np.nan))
        ci = r.get(f"{c}_ci", np.nan)
        if c in ("test/acc", "select/val_acc") and not pd.isna(r[c]) and not pd.isna(ci):
            return f"{r[c]:.4f} ± {ci:.4f}"
        if c == "fits":
            return "yes" if r["fits"] else "no"
        if c == "latency_ms" and pd.notna(r[c]) and r.get("latency_noise_ms", 0) > 0:
            return f"{r[c]:.4g} ± {r['latency_noise_ms']:.2g}"  # the band inside which latencies count as equal
        return fmt(r[c])

    def fmt(v):
        if isinstance(v, (bool, np.bool_)):
            return "**yes**" if v else ""
        if isinstance(v, float):
            return "" if np.isnan(v) else (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}")
        return str(v)

    n = int(df["replicates"].sum())
    kids = children_line(df)
    lines = [f"# {title}", "", f"{n} finished runs in {len(df)} groups (runs that differ only in the seed are the "
             "replicates of one group: mean ± the half-width of the 95% t interval), in one section per data set and "
             "model: runs of different data or models are never on one frontier. bytes = "
             f"{bytes_label}; latency = {lat_label}. Δ acc (pt): test accuracy minus the dense model's, in percentage "
             "points. effect_vs_dense: `higher`/`lower` only when the accuracy "
             "intervals of the group and of the dense group do not overlap, `none` when they do (a difference "
             "inside the intervals is not an effect), `n/a` with one replicate. Pareto, per data set, model and device, "
             "on the means: fits the device (every replicate) and is not beaten on both accuracy and cost by another "
             "group that fits it; groups that do not fit are never on the frontier. latency_ms ± its noise: the larger of "
             "the replicates' 95% interval and, on the host, half the interleaved timing's IQR (all of it when the "
             "measurement was flagged noisy); two latencies whose bands overlap are equal for the frontier, so the "
             "more accurate run dominates.", "",
             *([kids + ".", ""] if kids else []), *_dropped_markdown(df.attrs.get("dropped", []))]
    for name, g in sections(df):
        lines += [f"## {name}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(cell(r, c) for c in cols) + " |" for _, r in g.iterrows()]
        lines.append("")
    for name in plots:
        lines += [f"![{name[:-4].replace('_', ' ')}]({name})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _dropped_markdown(dropped: list[dict]) -> list[str]:
    """The paragraph on the runs :func:`group_replicates` left out (every one named), or nothing."""
    if not dropped:
        return []
    return ["**Runs left out.** " + " ".join(f"{line}." for line in dropped_summary(dropped, limit=len(dropped))), ""]


def print_dropped(dropped: list[dict], console=None) -> None:
    """The runs left out, as plain lines after a table (up to 5 named per kind; the report's markdown names all)."""
    from rich.console import Console

    for line in dropped_summary(dropped):
        (console or Console(width=None if sys.stdout.isatty() else 160)).print(
            line, soft_wrap=True, markup=False, highlight=False, emoji=False)


def report(tracking_uri: str, experiment: str = "edgebench", sweep: str | None = None, device: str | None = None,
           out: str | Path | None = None, log_to_parent: bool = True) -> pd.DataFrame:
    runs = load_runs(tracking_uri, experiment, sweep, device)
    if runs.empty:
        raise SystemExit(f"no finished runs in experiment {experiment!r}"
                         + (f" for sweep {sweep}" if sweep else "") + (f" on device {device}" if device else ""))
    df, bytes_label, lat_label = build(runs, runs.attrs.get("swept_keys", []))
    name = sweep or experiment
    out = Path(out or Path("results") / path_component(name))  # a name is not a path: never outside results/
    out.mkdir(parents=True, exist_ok=True)
    title = f"edgebench report: {name}" + (f" on {device}" if device else "")
    df.to_csv(out / "report.csv", index=False)
    files = [plot(df, "bytes", bytes_label, "pareto_bytes", out / "pareto_bytes.png", "Accuracy against size"),
             plot(df, "latency_ms", lat_label, "pareto_latency", out / "pareto_latency.png", "Accuracy against latency")]
    files = [f for f in files if f is not None]
    (out / "report.md").write_text(_markdown(df, title, bytes_label, lat_label, [f.name for f in files]))
    if sweep and log_to_parent:
        _log_to_parent(tracking_uri, experiment, sweep, [*files, out / "report.md", out / "report.csv"])
    print_frontier(df, title)
    print(f"wrote {out / 'report.md'}, {out / 'report.csv'} and the plots")
    return df


# ------------------------------------------------------------------------------------------- the leaderboard

QUANT_STEPS = {"ptq_int8", "qat_int8", "fp16", "bf16", "uniform_quant", "nonuniform_quant", "kure"}
FAMILY = {"magnitude_pruning": "pruning", "random_pruning": "pruning", "structured_pruning": "pruning",
          "lottery_ticket": "pruning", "low_rank": "low rank", "low_rank_sparse": "low rank",
          "distillation": "distillation"}


def family(chain: str) -> str:
    """A run's method family from its chain (tag ``pipeline``, e.g. ``structured_pruning->ptq_int8``): the family of
    its first compressing step (pruning, low rank, distillation), ``quantisation`` for quantisation alone, ``dense``
    for none. A final quantisation step is how the model is deployed, not its family."""
    steps = [s for s in str(chain or "none").split("->") if s and s != "none"]
    rest = [s for s in steps if s not in QUANT_STEPS]
    if not rest:
        return "quantisation" if steps else "dense"
    return FAMILY.get(rest[0], rest[0])


def device_profiles() -> list[str]:
    from edgebench.config import config_dir

    return sorted(p.stem for p in (config_dir() / "device").glob("*.yaml"))


def chain_text(row: pd.Series) -> str:
    """A short name for what a run did: its steps with the settings that were set, e.g.
    ``structured_pruning(ratio=0.5, retrain_epochs=2) -> ptq_int8``, from the run's ``steps`` param when it has one
    (a chain), else its chain and label; ``dense`` for none."""
    import ast

    steps = row.get("steps")
    if isinstance(steps, str) and steps.startswith("["):
        try:
            items = ast.literal_eval(steps)
        except (ValueError, SyntaxError):
            items = None
        if isinstance(items, list) and items:
            parts = []
            for it in items:
                if isinstance(it, dict):
                    knobs = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in it.items() if k != "name" and v is not None)
                    parts.append(f"{it.get('name', '?')}({knobs})" if knobs else str(it.get("name", "?")))
                else:
                    parts.append(str(it))
            return " -> ".join(parts)
    chain = str(row.get("chain") or row.get("pipeline") or row.get("method") or DENSE)
    if chain in (DENSE, "nan"):
        return "dense"
    label = str(row.get("label") or "").split("steps=")[0]  # a chain's steps are shown above, when parsed
    label = " ".join(p for p in label.split() if not p.startswith("model="))
    return f"{chain} {label}".strip()


def leaderboard(df: pd.DataFrame, devices: list[str] | None = None) -> pd.DataFrame:
    """Per device profile and method family, the group (replicates averaged, :func:`build`) with the highest mean
    validation accuracy (``select/val_acc``: never the test split) among those that fit the device, plus the most
    accurate dense group as the reference whether it fits or not. A family with runs of which none fits gets a row
    saying so, with the reason the device gave; a profile without runs gets one row saying that."""
    if "edgebench.child" in df:  # a chain's intermediate steps are not deployables of their own
        df = df[df["edgebench.child"] != "true"]
    chain_col = "pipeline" if "pipeline" in df else "method"
    df = df.assign(family=df[chain_col].map(family), chain=df[chain_col].fillna("none"))
    rows = []
    for device in devices or device_profiles():
        d = df[df["device"] == device]
        if d.empty:
            rows.append({"device": device, "family": "", "status": "no runs for this device"})
            continue
        for fam in ["dense"] + sorted(f for f in d["family"].unique() if f != "dense"):
            g = d[d["family"] == fam]
            if g.empty:
                continue
            fit = g[g["fits"] & g["select/val_acc"].notna()]
            if fam == "dense":  # the reference: the most accurate dense model, fitting or not
                pick, status = g.sort_values("select/val_acc", ascending=False).iloc[0], "reference"
                status = "reference, fits" if pick["fits"] else "reference, does not fit"
            elif len(fit):
                pick, status = fit.sort_values("select/val_acc", ascending=False).iloc[0], "best that fits"
            else:
                reasons = g.get("device.fit", pd.Series(dtype=object)).dropna()
                why = reasons.mode().iloc[0] if len(reasons) else "no replicate fits"
                rows.append({"device": device, "family": fam, "status": f"nothing fits ({len(g)} tried): {why}"})
                continue
            rows.append({"device": device, "family": fam, "status": status, "model": pick["model"],
                         "chain": chain_text(pick), "label": pick["label"], "replicates": pick["replicates"],
                         "val_acc": pick["select/val_acc"], "test_acc": pick["test/acc"],
                         "test_acc_ci": pick["test/acc_ci"], "bytes_artifact": pick["size/bytes_artifact"],
                         "ram_bytes": pick["device/ram_bytes"],
                         "ram_source": pick.get("device.ram_source", np.nan),
                         "latency_ms_est": pick["device/latency_ms_est"], "energy_mj_est": pick["device/energy_mj_est"],
                         "fits": bool(pick["fits"]), "run_ids": pick["run_ids"]})
    return pd.DataFrame(rows)


def answer(g: pd.DataFrame) -> str:
    """One device's answer in a sentence: the most accurate model (by validation accuracy) that fits, with its method
    and cost, and whether its test accuracy differs from the dense reference's by the intervals (:func:`effect`)."""
    fits = g[g["status"].isin(["best that fits", "reference, fits"])] if "status" in g else g.iloc[0:0]
    if fits.empty or "val_acc" not in fits:
        return "**Answer:** nothing edgebench made fits this device in its own format (reasons below)."
    best = fits.sort_values("val_acc", ascending=False).iloc[0]
    dense = g[g["family"] == "dense"]
    vs = ""
    if len(dense) and best["family"] != "dense" and pd.notna(dense.iloc[0].get("test_acc")):
        d = dense.iloc[0]
        e = effect(best["test_acc"], best["test_acc_ci"], d["test_acc"], d["test_acc_ci"])
        vs = {"higher": "; test accuracy above the dense reference's (intervals apart)",
              "lower": "; test accuracy below the dense reference's (intervals apart)",
              "none": "; test accuracy not distinguishable from the dense reference's (intervals overlap)",
              "n/a": ""}[e]
        vs += f", at {best['bytes_artifact'] / d['bytes_artifact']:.0%} of its bytes" if d["bytes_artifact"] else ""
    if best["family"] == "dense" and len(fits) > 1:  # a smaller model as good by the intervals is worth naming
        same = [r for _, r in fits[fits["family"] != "dense"].iterrows()
                if effect(r["test_acc"], r["test_acc_ci"], best["test_acc"], best["test_acc_ci"]) in ("none", "higher")]
        if same:
            small = min(same, key=lambda r: r["bytes_artifact"])
            vs = (f"; {small['family']} ({small['chain']}) is not distinguishable from it by test accuracy "
                  f"({small['test_acc']:.4f} ± {small['test_acc_ci']:.4f}) at {small['bytes_artifact'] / best['bytes_artifact']:.0%} "
                  "of its bytes")
    ram = (f", RAM {best['ram_bytes']:,.0f} B ({best['ram_source']})" if pd.notna(best.get("ram_bytes")) else "")
    lat = f", about {best['latency_ms_est']:.3g} ms (estimate)" if pd.notna(best.get("latency_ms_est")) else ""
    ci = "" if pd.isna(best["test_acc_ci"]) else f" ± {best['test_acc_ci']:.4f}"
    what = "dense, uncompressed" if best["family"] == "dense" else f"{best['family']}: {best['chain']}"
    return (f"**Answer:** {best['model']}, {what}: test accuracy {best['test_acc']:.4f}{ci}, "
            f"{best['bytes_artifact']:,.0f} B{ram}{lat}{vs}.")


def _leaderboard_markdown(board: pd.DataFrame, title: str, plots: list[str], dropped: list[dict] = ()) -> str:
    def num(v, f="{:,.0f}"):
        return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f.format(v)

    lines = [f"# {title}", "",
             "Per device profile and method family: the model with the highest mean **validation** accuracy among "
             "those that fit the device in its own format (every replicate fits), with its **test** accuracy (mean ± "
             "95% t interval over the replicates), the artifact's bytes, its RAM (`tflm_arena`: TFLite Micro's "
             "measured arena; `estimate`: estimated peak activations, plus weights where the device loads them), and "
             "the device's estimated latency and energy (estimates: see the README's *Device estimates*). The dense "
             "row is the reference, whether it fits or not. A dash: no figure, because the profile has none to "
             "estimate from (no sourced power figure for energy, no peak compute for latency; the host's latency is "
             "measured, not estimated, and only when `measure.latency` is on).", "", *_dropped_markdown(list(dropped))]
    for device, g in board.groupby("device", sort=False):
        lines += [f"## {device}", "", answer(g), "", "| family | status | model | chain | n | val acc | test acc | bytes | RAM (B) | "
                  "latency est (ms) | energy est (mJ) |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for _, r in g.iterrows():
            if pd.isna(r.get("model", np.nan)):
                lines.append(f"| {r['family']} | {r['status']} | | | | | | | | | |")
                continue
            test = f"{r['test_acc']:.4f}" + ("" if pd.isna(r["test_acc_ci"]) else f" ± {r['test_acc_ci']:.4f}")
            ram = num(r["ram_bytes"]) + (f" ({r['ram_source']})" if isinstance(r["ram_source"], str) else "")
            lines.append(f"| {r['family']} | {r['status']} | {r['model']} | {r['chain']} | "
                         f"{int(r['replicates'])} | {r['val_acc']:.4f} | {test} | {num(r['bytes_artifact'])} | {ram} | "
                         f"{num(r['latency_ms_est'], '{:.3g}')} | {num(r['energy_mj_est'], '{:.3g}')} |")
        lines.append("")
    lines += [f"![{p[:-4]}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def report_leaderboard(tracking_uri: str, experiment: str = "edgebench", sweep: str | None = None,
                       out: str | Path | None = None) -> pd.DataFrame:
    """``python -m edgebench.report --leaderboard``: :func:`leaderboard` of the store (or one sweep) written to
    ``<out>/leaderboard.md`` and ``.csv`` with an accuracy-against-bytes plot (one panel per device), and printed."""
    runs = load_runs(tracking_uri, experiment, sweep)
    if runs.empty:
        raise SystemExit(f"no finished runs in experiment {experiment!r}" + (f" for sweep {sweep}" if sweep else ""))
    df, bytes_label, _ = build(runs, runs.attrs.get("swept_keys", []))
    board = leaderboard(df)
    out = Path(out or "results")
    out.mkdir(parents=True, exist_ok=True)
    board.to_csv(out / "leaderboard.csv", index=False)
    # points named by their model only: the colour is the chain, and the table names its settings
    png = plot(df.assign(label=df["model"]), "bytes", bytes_label, "pareto_bytes", out / "leaderboard.png",
               "Accuracy against size, per device", by=["data"])  # the models side by side: which one fits
    title = f"edgebench leaderboard: {sweep or experiment}"
    dropped = df.attrs.get("dropped", [])
    (out / "leaderboard.md").write_text(_leaderboard_markdown(board, title, [png.name] if png else [], dropped))
    print_leaderboard(board, title)
    print_dropped(dropped)
    print(f"wrote {out / 'leaderboard.md'} and {out / 'leaderboard.csv'}")
    return board


def print_leaderboard(board: pd.DataFrame, title: str, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    for col in ("device", "family", "model / chain", "test acc", "bytes", "RAM", "latency est ms", "status"):
        table.add_column(col)
    for _, r in board.iterrows():
        if pd.isna(r.get("model", np.nan)):
            table.add_row(escape(str(r["device"])), escape(str(r["family"])), "", "", "", "", "", escape(str(r["status"])))
            continue
        acc = f"{r['test_acc']:.4f}" + ("" if pd.isna(r["test_acc_ci"]) else f" ± {r['test_acc_ci']:.4f}")
        table.add_row(*map(escape, (str(r["device"]), str(r["family"]), f"{r['model']} / {r['chain']}", acc,
                                    f"{r['bytes_artifact']:,.0f}", "" if pd.isna(r["ram_bytes"]) else f"{r['ram_bytes']:,.0f}",
                                    "" if pd.isna(r["latency_ms_est"]) else f"{r['latency_ms_est']:.3g}", str(r["status"]))))
    (console or Console(width=None if sys.stdout.isatty() else 160)).print(table)


def _log_to_parent(tracking_uri: str, experiment: str, sweep: str, files: list[Path]) -> None:
    from edgebench.sweep import PARENT_TAG
    from edgebench.tracking import Tracker

    tracker = Tracker(tracking_uri, None, experiment)
    parents = tracker.search(f"tags.`{PARENT_TAG}` = '{sweep}'")
    for p in parents:
        for f in files:
            tracker.client.log_artifact(p.info.run_id, str(f), "report")


def print_frontier(df: pd.DataFrame, title: str, console=None) -> None:
    """The Pareto-optimal runs as one rich table per (data, model) group, each with its devices' frontiers, then
    what was left out (child runs, duplicates)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 140)
    for name, g in sections(df):
        table = Table(title=escape(f"{title}: {name}: Pareto-optimal runs (per device, among runs that fit)"),
                      title_justify="left")
        for col in ("device", "run", "swept", "method", "test acc", "Δ acc (pt)", "bytes", "latency ms", "frontier"):
            table.add_column(col)
        front = g[g["pareto_bytes"] | g["pareto_latency"]].sort_values(["device", "bytes"])
        for _, r in front.iterrows():
            which = " + ".join(k for k, f in (("size", r["pareto_bytes"]), ("latency", r["pareto_latency"])) if f)
            lat = "" if pd.isna(r["latency_ms"]) else f"{r['latency_ms']:.3g}"
            table.add_row(*map(escape, (str(r["device"]), str(r["run_name"]), str(r["label"]), str(r["method"]),
                                        f"{r['test/acc']:.4f}" + (f" ± {r['test/acc_ci']:.4f}" if pd.notna(r.get("test/acc_ci", np.nan)) else ""),
                                        pt(r["delta/acc"], r.get("delta/acc_ci", np.nan)), f"{r['bytes']:,.0f}", lat, which)))
        console.print(table)
    if children_line(df):
        console.print(children_line(df), soft_wrap=True, markup=False, highlight=False, emoji=False)
    print_dropped(df.attrs.get("dropped", []), console)


_print_frontier = print_frontier


def main(argv: list[str] | None = None) -> None:
    import os

    ap = argparse.ArgumentParser(prog="python -m edgebench.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///results/mlflow.db"),
                    help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db)")
    ap.add_argument("--experiment", default="edgebench", help="MLflow experiment name (default: edgebench)")
    ap.add_argument("--sweep", help="only this sweep id (the sweep_id tag, e.g. sw-1a2b3c4d5e)")
    ap.add_argument("--device", help="only runs for this device profile (tag device)")
    ap.add_argument("--out", help="output folder (default: results/<sweep id or experiment, made one safe folder "
                                  "name>; results/ with --leaderboard)")
    ap.add_argument("--leaderboard", action="store_true",
                    help="per device profile and method family, the most accurate model (by validation accuracy) that "
                         "fits, with test accuracy ± CI, bytes, RAM and estimated latency and energy -> leaderboard.md")
    args = ap.parse_args(argv)
    from edgebench.tracking import require_store

    require_store(args.tracking_uri)
    if args.leaderboard:
        report_leaderboard(args.tracking_uri, args.experiment, args.sweep, args.out)
        return
    report(args.tracking_uri, args.experiment, args.sweep, args.device, args.out)


if __name__ == "__main__":
    main()
