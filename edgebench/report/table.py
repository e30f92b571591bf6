"""The report's table: one row per configuration (replicates averaged), with the deployable's bytes and latency,
its point label, its comparison with the dense model (paired by seed) and its place on the Pareto fronts.

* **bytes** = the smallest of the run's ONNX file, its gzip, and the analytic encoding
  (``size/bytes_sparse``): the same denominator as ``size/compression_ratio``.
* **latency** on a target device = its estimate ``device/latency_ms_est``. On the host =
  the dense model's p50 divided by the run's ``latency/host_speedup`` (measured interleaved with
  the dense model in one process), so that runs timed at different moments compare fairly; a run
  without a speedup keeps its own ``latency/host_p50_ms`` and the axis then says the points were
  timed in different processes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from edgebench.report.compare import COLUMNS as COMPARED, vs_dense
from edgebench.report.load import DENSE
from edgebench.report.pareto import latency_noise, pareto
from edgebench.report.replicates import BY_SEED, VAL_LOSS_BY_SEED, group_replicates

COLUMNS = ["run_id", "run_name", "model", "data", "method", "device", "sweep_id", "test/acc", "delta/acc",
           "baseline/test_acc", "size/params", "size/params_nonzero", "size/sparsity", "size/bytes_artifact",
           "size/bytes_gzip", "size/bytes_sparse", "size/compression_ratio", "compute/macs", "compute/macs_nonzero",
           "compute/theoretical_speedup", "memory/peak_activation_bytes", "latency/host_p50_ms",
           "latency/host_speedup", "latency/host_iqr_ms", "latency/host_noisy", "device/fits", "device/flash_bytes", "device/ram_bytes", "device/latency_ms_est",
           "device/latency_ms_low", "device/latency_ms_high", "device/latency_calibrated",
           "device/energy_mj_est", "quant.accuracy", "chain", "device.fit", "device.ram_source", "device.runtime",
           "export.name", "device.calibration", "device.energy_source", "edgebench.child"]
GROUP_BY = ["data", "model"]  # the report's sections: runs of another data set or model are not compared
BYTES_LABEL = "bytes (smallest of file, gzip, analytic encoding)"


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
        rows = df[(df["device"] == device) & df["latency_ms"].notna()]
        cal = rows["device/latency_calibrated"] if "device/latency_calibrated" in rows else pd.Series(dtype=float)
        band = "" if len(rows) and (cal == 1).all() else ", UNCALIBRATED: no error band"
        rt = rows["device.runtime"].dropna().unique() if "device.runtime" in rows else []
        return (f"estimated {device} latency{' for ' + ', '.join(map(str, rt)) if len(rt) else ''}"
                f"{band}, device/latency_ms_est (ms)")
    rows = df[(df["device"] == device) & df["latency_ms"].notna()]
    if len(rows) and rows["latency_side_by_side"].all() and rows.groupby(["model", "data"], dropna=False).ngroups == 1:
        return "host latency (ms): dense p50 / speedup, timed side by side with the dense model"
    return "measured host latency, p50 (ms): points timed in different processes"


def _per_run(runs: pd.DataFrame, swept: list[str]) -> pd.DataFrame:
    """The runs with every contract column, and each run's bytes, latency, fit and label."""
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
    return df


def frontiers(df: pd.DataFrame, by: list[str] = GROUP_BY) -> None:
    """Flag ``pareto_bytes`` and ``pareto_latency``: one frontier per section (``by``: data set and model) and
    device, of the groups that fit, on **validation** accuracy (``select/val_acc``: choosing the frontier is a
    selection, which never reads the test split; runs logged before that metric existed fall back to their test
    accuracy)."""
    df["pareto_bytes"] = df["pareto_latency"] = False
    df["latency_noise_ms"] = latency_noise(df)
    for _, g in df.groupby([*by, "device"], dropna=False):
        val = g["select/val_acc"] if "select/val_acc" in g else pd.Series(np.nan, index=g.index)
        acc = val.fillna(g["test/acc"]).where(g["fits"])
        df.loc[g.index, "pareto_bytes"] = pareto(acc, g["bytes"])
        df.loc[g.index, "pareto_latency"] = pareto(acc, g["latency_ms"], g["latency_noise_ms"])


def build(runs: pd.DataFrame, swept: list[str] = (), children: bool = False) -> tuple[pd.DataFrame, str, str]:
    """Add the bytes, latency and label columns, average replicates (:func:`group_replicates`), compare each
    compressed group with its dense parent paired by seed (:func:`edgebench.report.compare.vs_dense`, Holm-corrected
    over the table) and flag the Pareto frontier on the groups' means, one per data set, model and device
    (:data:`GROUP_BY` and ``device``).

    A method's child run (tag ``edgebench.child``: a distillation teacher, a chain's step, a lottery level) is not a
    row unless ``children``: how many were left out is ``attrs["children_left_out"]``; ``attrs["comparisons"]`` is
    how many paired comparisons the verdicts were corrected over.

    Returns (table, bytes label, latency label); the latency label names every device's latency."""
    df = group_replicates(_per_run(runs, list(swept)))
    dropped = df.attrs["dropped"]
    left_out = 0
    if not children:
        child = df["edgebench.child"] == "true"
        left_out = int(df.loc[child, "replicates"].sum())
        df = df[~child].copy()
    compared = vs_dense(df)
    for col in COMPARED:
        df[col] = compared[col]
    frontiers(df)
    extra = sorted(c for c in df.columns if c.startswith("method.") and c != "method.name"
                   and _varies(df[c]))  # the params that vary: what was swept
    order = COLUMNS[:7] + ["label", "steps", "replicates", "seeds"] + extra + [
        "bytes", "latency_ms", "latency_noise_ms", "latency_side_by_side", "fits", "pareto_bytes", "pareto_latency",
        *COMPARED, "test/acc_ci", "delta/acc_ci", "select/val_acc", "select/val_acc_ci", "bytes_ci", "latency_ms_ci"] + \
        COLUMNS[7:] + ["run_ids", "duplicates_dropped", "duplicate_run_ids", BY_SEED, VAL_LOSS_BY_SEED]
    df = df[[c for c in order if c in df]].sort_values([*GROUP_BY, "device", "method", "test/acc"],
                                                      ascending=[True, True, True, True, False], na_position="last")
    df = df.reset_index(drop=True)
    df.attrs = {"dropped": dropped, "children_left_out": left_out,  # what was left out: the report says so
                "comparisons": compared.attrs["comparisons"]}
    lat_label = "; ".join(f"{d}: {latency_label(df, d)}" for d in sorted(df["device"].unique()))
    return df, BYTES_LABEL, lat_label


def sections(df: pd.DataFrame):
    """``(name, rows)`` per (data, model) group (:data:`GROUP_BY`), ``name`` as ``data / model``, in the frame's order."""
    for key, g in df.groupby(GROUP_BY, dropna=False, sort=False):
        yield " / ".join("?" if pd.isna(k) else str(k) for k in key), g
