"""Runs from an MLflow store as a DataFrame: one row per finished run (one seed of one configuration).

Tags and metrics keep their contract names, params are cast to numbers; ``seed`` and ``replicate_group`` stay
columns so that statistics can pair runs by seed. Sweep parent runs are not rows (what they varied is
``attrs["swept_keys"]``); a method's child run is, with its parent's status for the report to judge, unless the
caller asks for top-level runs only (``children=False``, a study's report).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from edgebench.naming import PARENT_TAG, RENAMED_TAGS, REUSED_TAG, swept_from_overrides

DENSE = "none"  # the method tag of a dense (uncompressed) run
CHILD_TAG = "edgebench.child"  # "true" on a method's child run (edgebench.record.CHILD_TAG)


def number(v):
    """A param's text as an int or float when it is one, else as it is."""
    try:
        f = float(v)
        return int(f) if f.is_integer() and "." not in str(v) and "e" not in str(v).lower() else f
    except (TypeError, ValueError):
        return v


def plain(v) -> str:
    """A param as text, a whole float without its ``.0`` (a seed column with gaps is float)."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(number(v))


def _search(tracking_uri: str, experiment: str, missing_ok: bool = False) -> pd.DataFrame:
    """Every run of the experiment, of every status (the parents' status is needed); no experiment of that name
    exits naming the store's experiments, or is no runs with ``missing_ok``."""
    import os

    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)  # which also sets MLFLOW_TRACKING_URI: put back below, so that a config
    try:  # composed later in this process (paths.mlflow_tracking_uri reads it) or a child process does not inherit it
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is None:
            if missing_ok:
                return pd.DataFrame()
            names = [e.name for e in mlflow.search_experiments()]
            raise SystemExit(f"no MLflow experiment {experiment!r} in {tracking_uri}; experiments: "
                             f"{', '.join(names) or 'none'}")
        return mlflow.search_runs([exp.experiment_id], max_results=50000)
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def _select(every: pd.DataFrame, sweep: str | None, device: str | None) -> pd.DataFrame:
    """The FINISHED runs, of one device and one sweep when given: a sweep's children and the earlier runs it reused
    (tags ``sweep.reused.*`` on its parent)."""
    runs = every[every["status"] == "FINISHED"]
    if device:
        runs = runs[runs.get("tags.device", pd.Series(np.nan, index=runs.index)) == device]
    if sweep:
        parents = runs[runs.get(f"tags.{PARENT_TAG}", pd.Series(dtype=str)) == sweep]
        reused = set()
        for _, p in parents.iterrows():
            reused |= {v for k, v in p.items() if str(k).startswith(f"tags.{REUSED_TAG}.") and isinstance(v, str)}
        runs = runs[(runs.get("tags.sweep_id", pd.Series(dtype=str)) == sweep) | runs["run_id"].isin(reused)]
    return runs


def _columns(runs: pd.DataFrame, every: pd.DataFrame) -> dict[str, pd.Series]:
    """The runs' columns by their contract names, with ``parent_run_id``, ``parent_status`` and a child's seed."""
    status = dict(zip(every["run_id"], every["status"]))
    seed_of = dict(zip(every["run_id"], every["params.seed"])) if "params.seed" in every else {}
    cols = {"run_id": runs["run_id"], "start_time": runs["start_time"], "end_time": runs["end_time"]}
    for col in runs.columns:
        if col.startswith("metrics."):
            cols[col[len("metrics."):]] = runs[col]
        elif col.startswith("tags.") and not col.startswith("tags.mlflow.") or col == "tags.mlflow.runName":
            cols["run_name" if col == "tags.mlflow.runName" else col[len("tags."):]] = runs[col]
        elif col.startswith("params."):
            cols[col[len("params."):]] = runs[col].map(number)
    for new, old in RENAMED_TAGS.items():  # a run logged before a tag's rename: its old tag under the new name
        if old in cols:
            cols[new] = cols[new].where(cols[new].notna(), cols[old]) if new in cols else cols[old]
    parent = runs.get("tags.mlflow.parentRunId", pd.Series(np.nan, index=runs.index, dtype=object))
    cols["parent_run_id"] = parent
    cols["parent_status"] = parent.map(lambda p: status.get(p, "missing") if isinstance(p, str) else np.nan)
    if CHILD_TAG in cols:  # a child run without a seed of its own is of its parent's seed
        child = cols[CHILD_TAG] == "true"
        own = cols.get("seed", pd.Series(np.nan, index=runs.index)).astype(object)
        inherited = parent.map(lambda p: number(seed_of.get(p, np.nan))).astype(object)
        cols["seed"] = own.where(own.notna() | ~child, inherited)
    return cols


def load_runs(tracking_uri: str, experiment: str = "edgebench", sweep: str | None = None,
              device: str | None = None, *, children: bool = True, tagged: tuple[str, ...] = (),
              missing_ok: bool = False) -> pd.DataFrame:
    """Finished runs as a DataFrame, one row per run: tags and metrics by their contract names, params cast to
    numbers (``seed`` among them, and the tag ``replicate_group``: what pairs and groups runs).

    Besides: ``start_time`` and ``end_time`` (which of two runs of one seed is the latest), ``parent_run_id`` and
    ``parent_status`` (the status of the parent run, ``missing`` when it is not in the experiment: a method's child
    run counts only while its parent is FINISHED, :func:`edgebench.report.replicates.group_replicates`), and a child
    run without a ``seed`` param of its own gets its parent's (a lottery level is of its parent's seed).
    ``attrs["swept_keys"]``: what the sweep(s) varied, the plots' point labels.

    ``children=False`` leaves out a method's child runs (tag ``edgebench.child``: a chain's earlier step, a lottery
    level, a teacher; each carries its parent's tags); ``tagged`` keeps only the runs that carry every one of these
    tags (a study's ``study.arm``); ``missing_ok`` reads an experiment that does not exist yet as no runs instead of
    exiting."""
    every = _search(tracking_uri, experiment, missing_ok)
    if every.empty:
        return pd.DataFrame()
    runs = _select(every, sweep, device)
    swept: list[str] = []
    if f"tags.{PARENT_TAG}" in runs:
        swept = swept_keys(runs[runs[f"tags.{PARENT_TAG}"].notna()])
        runs = runs[runs[f"tags.{PARENT_TAG}"].isna()]
    out = pd.DataFrame(_columns(runs, every))
    if not children and CHILD_TAG in out:
        out = out[out[CHILD_TAG].astype(str) != "true"]
    for tag in tagged:
        out = out[out[tag].notna()] if tag in out else out.iloc[:0]
    out = out.reset_index(drop=True)
    out.attrs["swept_keys"] = swept
    return out


def swept_keys(parents: pd.DataFrame) -> list[str]:
    """The keys the sweeps varied, from their parent runs' ``sweep.swept_keys`` / ``sweep.overrides`` tags."""
    keys: list[str] = []
    for _, p in parents.iterrows():
        tag = p.get("tags.sweep.swept_keys")
        found = str(tag).split() if isinstance(tag, str) else swept_from_overrides(str(p.get("tags.sweep.overrides") or "").split())
        keys += [k.lstrip("+~") for k in found if k.lstrip("+~") not in keys]
    return keys
