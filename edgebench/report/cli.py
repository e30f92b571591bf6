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
import hashlib
import re
from pathlib import Path

import pandas as pd

from edgebench.naming import PARENT_TAG
from edgebench.report import render
from edgebench.report.leaderboard import report_leaderboard
from edgebench.report.load import load_runs
from edgebench.report.plots import plot
from edgebench.report.table import build


def path_component(name: str) -> str:
    """``name`` (an experiment name, a sweep id) as one folder name that stays where it is put: kept as it is when
    plain (letters, digits, ``._-``, not starting with a dot or dash, at most 100 characters); otherwise every run
    of other characters (``/``, spaces, ``$``...) becomes ``_``, leading dots and dashes are dropped, and 8 hex
    characters of the name's SHA-256 are appended, so that no two names share a folder (``../../x`` ->
    ``_.._x-<hash>``: never ``..``, never a path)."""
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}", name):
        return name
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".-")[:80]
    return f"{safe or 'name'}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def report(tracking_uri: str, experiment: str = "edgebench", sweep: str | None = None, device: str | None = None,
           out: str | Path | None = None, log_to_parent: bool = True) -> pd.DataFrame:
    """``python -m edgebench.report``: the table of the store's finished runs (one sweep, one device when given)
    written to ``<out>/report.csv`` and ``report.md`` with the two frontier plots, logged to the sweep's parent run,
    and its frontier printed."""
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
    (out / "report.md").write_text(render.markdown(df, title, bytes_label, lat_label, [f.name for f in files]))
    if sweep and log_to_parent:
        _log_to_parent(tracking_uri, experiment, sweep, [*files, out / "report.md", out / "report.csv"])
    render.print_frontier(df, title)
    print(f"wrote {out / 'report.md'}, {out / 'report.csv'} and the plots")
    return df


def _log_to_parent(tracking_uri: str, experiment: str, sweep: str, files: list[Path]) -> None:
    """The report's files as artifacts (folder ``report``) of the sweep's parent run."""
    from edgebench.tracking import Tracker

    tracker = Tracker(tracking_uri, None, experiment)
    for p in tracker.search(f"tags.`{PARENT_TAG}` = '{sweep}'"):
        for f in files:
            tracker.client.log_artifact(p.info.run_id, str(f), "report")


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
