"""``python -m edgebench.report``: a table and Pareto plots of the runs in an MLflow store.

    python -m edgebench.report                          # every finished run of experiment "edgebench"
    python -m edgebench.report --sweep sw-1a2b3c4d5e    # one sweep (its parent run gets the plots too)
    python -m edgebench.report --device coral_dev_board --out results/coral

Reads the store with ``mlflow.search_runs`` (finished runs only; sweep parent runs are not rows),
casts params to numbers, and writes ``report.csv`` (one row per run, the metric contract's
columns), ``report.md``, and two frontier plots: test accuracy against model bytes and against
latency. A run is Pareto-optimal when no other run is at least as accurate and at least as small
(or fast) and strictly better in one of them.

* **bytes** = the smallest of the run's ONNX file, its gzip, and the analytic encoding
  (``size/bytes_sparse``): the same denominator as ``size/compression_ratio``.
* **latency** = ``device/latency_ms_est`` (an estimate) when every row has one for a target
  device, else the measured ``latency/host_p50_ms``. The plot's axis says which.
"""

from __future__ import annotations

import argparse
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
           "latency/host_speedup", "device/fits", "device/flash_bytes", "device/ram_bytes", "device/latency_ms_est",
           "device/energy_mj_est", "quant.accuracy"]


def _number(v):
    try:
        f = float(v)
        return int(f) if f.is_integer() and "." not in str(v) and "e" not in str(v).lower() else f
    except (TypeError, ValueError):
        return v


def load_runs(tracking_uri: str, experiment: str = "edgebench", sweep: str | None = None,
              device: str | None = None) -> pd.DataFrame:
    """Finished runs as a DataFrame: tags and metrics by their contract names, params cast to numbers."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in mlflow.search_experiments()]
        raise SystemExit(f"no MLflow experiment {experiment!r} in {tracking_uri}; experiments: {', '.join(names) or 'none'}")
    filters = ["attributes.status = 'FINISHED'"]
    if device:
        filters.append(f"tags.device = '{device}'")
    runs = mlflow.search_runs([exp.experiment_id], " and ".join(filters), max_results=50000)
    if sweep:  # the sweep's children, and the earlier runs it reused (tags sweep.reused.* on its parent)
        parents = runs[runs.get("tags.edgebench.sweep_parent", pd.Series(dtype=str)) == sweep]
        reused = set()
        for _, p in parents.iterrows():
            reused |= {v for k, v in p.items() if str(k).startswith("tags.sweep.reused.") and isinstance(v, str)}
        runs = runs[(runs.get("tags.sweep_id", pd.Series(dtype=str)) == sweep) | runs["run_id"].isin(reused)]
    if "tags.edgebench.sweep_parent" in runs:
        runs = runs[runs["tags.edgebench.sweep_parent"].isna()]
    out = pd.DataFrame({"run_id": runs["run_id"]})
    for col in runs.columns:
        if col.startswith("metrics."):
            out[col[len("metrics."):]] = runs[col]
        elif col.startswith("tags.") and not col.startswith("tags.mlflow.") or col == "tags.mlflow.runName":
            out["run_name" if col == "tags.mlflow.runName" else col[len("tags."):]] = runs[col]
        elif col.startswith("params."):
            out[col[len("params."):]] = runs[col].map(_number)
    return out.reset_index(drop=True)


def pareto(acc: pd.Series, cost: pd.Series) -> pd.Series:
    """True for the runs no other run dominates (higher-or-equal accuracy at lower-or-equal cost, one strictly)."""
    a, c = acc.to_numpy(float), cost.to_numpy(float)
    ok = ~(np.isnan(a) | np.isnan(c))
    front = np.zeros(len(a), bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (a >= a[i]) & (c <= c[i]) & ((a > a[i]) | (c < c[i]))
        front[i] = not dominated.any()
    return pd.Series(front, index=acc.index)


def build(runs: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    """Add the bytes and latency columns and the Pareto flags; returns (table, bytes label, latency label)."""
    df = runs.copy()
    for col in COLUMNS:
        if col not in df:
            df[col] = np.nan
    size_cols = [c for c in ("size/bytes_artifact", "size/bytes_gzip", "size/bytes_sparse") if c in df]
    df["bytes"] = df[size_cols].min(axis=1)
    if df["device/latency_ms_est"].notna().all() and len(df):
        df["latency_ms"], lat_label = df["device/latency_ms_est"], "estimated device latency (ms)"
    else:
        df["latency_ms"], lat_label = df["latency/host_p50_ms"], "measured host latency, p50 (ms)"
    df["pareto_bytes"] = pareto(df["test/acc"], df["bytes"])
    df["pareto_latency"] = pareto(df["test/acc"], df["latency_ms"])
    extra = sorted(c for c in df.columns if c.startswith("method.") and c != "method.name"
                   and df[c].map(str).where(df[c].notna()).nunique() > 1)  # the params that vary: what was swept
    order = COLUMNS[:7] + extra + ["bytes", "latency_ms", "pareto_bytes", "pareto_latency"] + COLUMNS[7:]
    df = df[[c for c in order if c in df]].sort_values(["method", "test/acc"], ascending=[True, False])
    return df.reset_index(drop=True), "bytes (smallest of file, gzip, analytic encoding)", lat_label


def plot(df: pd.DataFrame, x: str, xlabel: str, flag: str, path: Path, title: str) -> Path | None:
    """Accuracy against ``x``, one colour per method, the frontier dashed; None when no run has ``x``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = df[df[x].notna() & (df[x] > 0) & df["test/acc"].notna()]
    if df.empty:
        log.warning("no run has %s: %s not drawn", xlabel, path.name)
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (method, g) in enumerate(df.groupby("method", dropna=False)):
        ax.scatter(g[x], g["test/acc"], color=f"C{i}", label=str(method), s=28, zorder=3)
    front = df[df[flag]].sort_values(x)
    ax.step(front[x], front["test/acc"], where="post", color="black", lw=1, ls="--", label="Pareto frontier", zorder=2)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _markdown(df: pd.DataFrame, title: str, bytes_label: str, lat_label: str, plots: list[str]) -> str:
    cols = ["run_name", "method"] + [c for c in df.columns if c.startswith("method.")] + [
        "test/acc", "delta/acc", "bytes", "latency_ms", "device/fits", "pareto_bytes", "pareto_latency"]

    def fmt(v):
        if isinstance(v, (bool, np.bool_)):
            return "**yes**" if v else ""
        if isinstance(v, float):
            return "" if np.isnan(v) else (f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}")
        return str(v)

    lines = [f"# {title}", "", f"{len(df)} finished runs. bytes = {bytes_label}; latency = {lat_label}. "
             "Pareto: not beaten on both accuracy and cost by another run.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for _, r in df.iterrows()]
    for name in plots:
        lines += ["", f"![{name[:-4].replace('_', ' ')}]({name})"]
    return "\n".join(lines) + "\n"


def report(tracking_uri: str, experiment: str = "edgebench", sweep: str | None = None, device: str | None = None,
           out: str | Path | None = None, log_to_parent: bool = True) -> pd.DataFrame:
    runs = load_runs(tracking_uri, experiment, sweep, device)
    if runs.empty:
        raise SystemExit(f"no finished runs in experiment {experiment!r}"
                         + (f" for sweep {sweep}" if sweep else "") + (f" on device {device}" if device else ""))
    df, bytes_label, lat_label = build(runs)
    name = sweep or experiment
    out = Path(out or Path("results") / name)
    out.mkdir(parents=True, exist_ok=True)
    title = f"edgebench report: {name}" + (f" on {device}" if device else "")
    df.to_csv(out / "report.csv", index=False)
    files = [plot(df, "bytes", bytes_label, "pareto_bytes", out / "pareto_bytes.png", "Accuracy against size"),
             plot(df, "latency_ms", lat_label, "pareto_latency", out / "pareto_latency.png", "Accuracy against latency")]
    files = [f for f in files if f is not None]
    (out / "report.md").write_text(_markdown(df, title, bytes_label, lat_label, [f.name for f in files]))
    if sweep and log_to_parent:
        _log_to_parent(tracking_uri, experiment, sweep, [*files, out / "report.md", out / "report.csv"])
    _print_frontier(df, title)
    print(f"wrote {out / 'report.md'}, {out / 'report.csv'} and the plots")
    return df


def _log_to_parent(tracking_uri: str, experiment: str, sweep: str, files: list[Path]) -> None:
    from edgebench.sweep import PARENT_TAG
    from edgebench.tracking import Tracker

    tracker = Tracker(tracking_uri, None, experiment)
    parents = tracker.search(f"tags.`{PARENT_TAG}` = '{sweep}'")
    for p in parents:
        for f in files:
            tracker.client.log_artifact(p.info.run_id, str(f), "report")


def _print_frontier(df: pd.DataFrame, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title}: Pareto-optimal runs", title_justify="left")
    for col in ("run", "method", "test acc", "Δ acc (pt)", "bytes", "latency ms", "fits", "frontier"):
        table.add_column(col)
    front = df[df["pareto_bytes"] | df["pareto_latency"]].sort_values("bytes")
    for _, r in front.iterrows():
        which = " + ".join(k for k, f in (("size", r["pareto_bytes"]), ("latency", r["pareto_latency"])) if f)
        fits = "" if pd.isna(r["device/fits"]) else ("yes" if r["device/fits"] else "no")
        delta = "" if pd.isna(r["delta/acc"]) else f"{r['delta/acc'] * 100:+.2f}"
        lat = "" if pd.isna(r["latency_ms"]) else f"{r['latency_ms']:.3g}"
        table.add_row(str(r["run_name"]), str(r["method"]), f"{r['test/acc']:.4f}", delta, f"{r['bytes']:,.0f}",
                      lat, fits, which)
    Console(width=None if sys.stdout.isatty() else 140).print(table)


def main(argv: list[str] | None = None) -> None:
    import os

    ap = argparse.ArgumentParser(prog="python -m edgebench.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///results/mlflow.db"),
                    help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db)")
    ap.add_argument("--experiment", default="edgebench", help="MLflow experiment name (default: edgebench)")
    ap.add_argument("--sweep", help="only this sweep id (the sweep_id tag, e.g. sw-1a2b3c4d5e)")
    ap.add_argument("--device", help="only runs for this device profile (tag device)")
    ap.add_argument("--out", help="output folder (default: results/<sweep id or experiment>)")
    args = ap.parse_args(argv)
    from edgebench.tracking import require_store

    require_store(args.tracking_uri)
    report(args.tracking_uri, args.experiment, args.sweep, args.device, args.out)


if __name__ == "__main__":
    main()
