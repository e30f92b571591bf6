"""Parallel sweep jobs against one SQLite MLflow store: 4 jobs at once (joblib), 5 repetitions, count what is lost.

Each repetition launches ``python -m edgebench -m hydra/launcher=joblib hydra.launcher.n_jobs=4`` with
4 jobs (sklearn digits, LeNet-300-100, seeds 0-3, short training, latency not measured so the jobs
overlap on the store) into one store shared by all repetitions (``resume=false``: every repetition
runs all 4 jobs again). Afterwards every sweep parent must have exactly 4 FINISHED children and no
job may have failed or reported a locked database.

    python experiments/parallel_sweep.py     # -> results/parallel_sweep.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(repetitions: int = 5) -> None:
    work = Path(tempfile.mkdtemp(prefix="edgebench-parallel-"))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "data=digits", "trainer.max_epochs=3",
            "trainer.batch_size=32", "measure.latency=false", "trainer.progress_bar=none", "resume=false",
            "seed=0,1,2,3"]
    reps = []
    for rep in range(repetitions):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "edgebench", "-m", *args, f"run_name=rep{rep}"], cwd=work, env=env,
                             capture_output=True, text=True)
        reps.append({"rep": rep, "rc": out.returncode, "wall_s": round(time.perf_counter() - t0, 1),
                     "locked_errors": (out.stderr + out.stdout).count("database is locked")})
        print(reps[-1], flush=True)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work}/results/mlflow.db")
    exp = client.get_experiment_by_name("edgebench")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "edgebench.sweep_parent" in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    per_parent = {}
    for c in children:
        per_parent.setdefault(c.data.tags["mlflow.parentRunId"], []).append(c.info.status)
    # run_name differs per repetition, so each repetition is its own sweep (its own parent)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "repetitions": repetitions, "jobs_per_repetition": 4,
              "parallel_jobs": 4, "parents": len(parents), "child_runs": len(children),
              "finished": sum(s == "FINISHED" for v in per_parent.values() for s in v),
              "failed_or_other": sum(s != "FINISHED" for v in per_parent.values() for s in v),
              "children_per_parent": sorted(len(v) for v in per_parent.values()), "reps": reps}
    result["zero_lost_or_failed"] = (result["finished"] == 4 * repetitions and result["failed_or_other"] == 0
                                     and all(r["rc"] == 0 and r["locked_errors"] == 0 for r in reps))
    Path("results/parallel_sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
