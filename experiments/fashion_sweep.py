"""A real sweep on Fashion-MNIST: LeNet-300-100, 3 methods x 4 compression levels and the dense run, then the report.

Four Hydra multiruns through the CLI (sequential launcher), all in the MLflow experiment
``fashion_sweep``, with a fresh baseline cache so the dense model is trained inside the sweep,
once, by the first job that needs it; every other job loads it.

* dense (``python -m edgebench``)
* magnitude_pruning, sparsity 0.5, 0.75, 0.875, 0.9375 (2x-16x fewer weights), 3 retrain epochs
* structured_pruning, ratio 0.25, 0.5, 0.65, 0.75 of the hidden channels, 3 retrain epochs
* uniform_quant, 8, 4, 3, 2 bits, post-training, per-tensor symmetric

    python experiments/fashion_sweep.py     # -> results/fashion_sweep/ (report.md, .csv, plots), results/fashion_sweep.json
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEPS = {
    "dense": [],
    "magnitude_pruning": ["+method=magnitude_pruning", "method.sparsity=0.5,0.75,0.875,0.9375"],
    "structured_pruning": ["+method=structured_pruning", "method.ratio=0.25,0.5,0.65,0.75"],
    "uniform_quant": ["+method=uniform_quant", "method.bits=8,4,3,2"],
}


def main() -> None:
    root = Path.cwd()
    cache = Path(tempfile.mkdtemp(prefix="edgebench-fashion-sweep-cache-"))
    common = ["experiment_name=fashion_sweep", f"paths.cache_dir={cache}", "trainer.progress_bar=none", "resume=false"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    import mlflow

    uri = f"sqlite:///{root}/results/mlflow.db"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name("fashion_sweep")
    if exp is not None:  # this script owns the experiment: earlier executions' runs are marked deleted
        for run_id in mlflow.search_runs([exp.experiment_id])["run_id"]:
            mlflow.delete_run(run_id)
    times, sweep_ids = {}, {}
    t_all = time.perf_counter()
    for name, args in SWEEPS.items():
        cmd = [sys.executable, "-m", "edgebench", *(["-m"] if args else []), *args, *common]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        times[name] = time.perf_counter() - t0
        if out.returncode != 0:
            sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
        found = re.search(r"sweep (sw-[0-9a-f]+): parent run", out.stderr + out.stdout)
        if found:
            sweep_ids[name] = found.group(1)
        print(f"{name}: {times[name]:.0f} s", flush=True)
    wall = time.perf_counter() - t_all
    meta = json.loads(next(cache.glob("baselines/*/meta.json")).read_text())
    shutil.rmtree(cache, ignore_errors=True)

    from edgebench import report

    df = report.report(uri, experiment="fashion_sweep", out=root / "results" / "fashion_sweep")
    for name, sid in sweep_ids.items():  # each sweep's parent run gets its own report too
        report.report(uri, experiment="fashion_sweep", sweep=sid, out=Path(tempfile.mkdtemp()) / sid)
    exp = mlflow.get_experiment_by_name("fashion_sweep")
    rows = mlflow.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'")
    jobs = rows[rows["tags.baseline.cache_hit"].notna()]
    job_s = (jobs["end_time"] - jobs["start_time"]).dt.total_seconds()
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "wall_s": round(wall),
              "per_sweep_s": {k: round(v) for k, v in times.items()}, "baseline_train_s": round(meta["train_seconds"]),
              "sweep_ids": sweep_ids, "runs": len(df),
              "baseline_trained_in": int((jobs["tags.baseline.cache_hit"] == "false").sum()),
              "baseline_loaded_in": int((jobs["tags.baseline.cache_hit"] == "true").sum()),
              "job_run_s_sum": round(float(job_s.sum())),  # MLflow run durations: training once + every job's own work
              "job_run_s_without_baseline_training": round(float(job_s.sum()) - meta["train_seconds"]),
              "per_job_run_s": {str(n): round(float(t), 1) for n, t in zip(jobs["tags.mlflow.runName"], job_s)}}
    (root / "results" / "fashion_sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
