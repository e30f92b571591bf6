"""The store's growth over a fixed session of runs (issue 24 item 15): what a session leaves on disk.

In a fresh folder (``--workdir``, default a new temporary folder), through the command line and one process
at a time, on sklearn digits with ``trainer.max_epochs=1``, ``measure.latency=false``, models
``lenet_300_100`` and ``lenet5`` and seeds 0-3 (8 jobs per sweep, Hydra's basic launcher):

  1. dense                                                       8 runs
  2. +method=magnitude_pruning method.sparsity=0.5,0.9           16
  3. +method=structured_pruning                                  8
  4. +method=ptq_int8                                            8
  5. steps=[magnitude_pruning,ptq_int8] (a 2-step chain)         8
  6. +method=lottery_ticket method.levels=2 method.epochs=1 method.controls=[]   8
  7. sweep 4 again with resume=false (identical configs rerun)   8
  8. one dense run whose stored baseline was corrupted first (truncated model.pt): set aside, retrained   1
  9. one dense run (seed 9, 500 epochs) interrupted with SIGINT while training: a KILLED run   1
                                                                 66 runs (+ sweep parents and child runs)

Then it counts and measures (bytes: the sum of file sizes): MLflow runs by status, top-level and child, and sweep
parents; the store's baselines, step entries, lottery scopes, lock files and ``.corrupt-*`` set-asides; the
bytes of the store (``results/cache``), of Hydra's output folders (``results/runs`` + ``results/multiruns``,
and the model files in them), of MLflow's artifacts (``results/mlartifacts``), of ``mlflow.db`` and of all of
``results/``. It runs the edgebench on ``PYTHONPATH`` (the checkout to measure):

    PYTHONPATH=$PWD python experiments/store_growth.py --out results/store_growth.json
    cd ../base && PYTHONPATH=$PWD python ../edgebench/experiments/store_growth.py --out /tmp/growth_before.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMON = ["data=digits", "trainer.max_epochs=1", "trainer.batch_size=64", "measure.latency=false",
          "trainer.progress_bar=none", "model=lenet_300_100,lenet5", "seed=0,1,2,3"]
SWEEPS = {
    "dense": [],
    "magnitude_pruning": ["+method=magnitude_pruning", "method.sparsity=0.5,0.9"],
    "structured_pruning": ["+method=structured_pruning"],
    "ptq_int8": ["+method=ptq_int8"],
    "chain": ["steps=[magnitude_pruning,ptq_int8]"],
    "lottery_ticket": ["+method=lottery_ticket", "method.levels=2", "method.epochs=1", "method.controls=[]"],
    "ptq_int8 again": ["+method=ptq_int8", "resume=false"],
}
SINGLE = ["data=digits", "trainer.max_epochs=1", "trainer.batch_size=64", "measure.latency=false",
          "trainer.progress_bar=none", "model=lenet_300_100"]
MODEL_FILES = (".onnx", ".pt", ".tflite", ".pt2", ".data")


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}


def _edgebench(args: list[str], cwd: Path) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "edgebench", *args], cwd=cwd, env=_env(), capture_output=True,
                         text=True)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
    return {"rc": out.returncode, "wall_s": round(time.perf_counter() - t0, 1)}


def _interrupted(cwd: Path) -> dict:
    """A dense run (a new seed, 500 epochs) sent SIGINT once it has logged an epoch: KILLED, like Ctrl-C."""
    from mlflow.tracking import MlflowClient

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "edgebench", *SINGLE, "seed=9", "trainer.max_epochs=500",
                             "trainer.batch_size=16"], cwd=cwd, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    client = MlflowClient(f"sqlite:///{cwd}/results/mlflow.db")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        exp = client.get_experiment_by_name("edgebench")
        live = [r for r in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")] if exp else []
        if live and client.get_metric_history(live[0].info.run_id, "val/acc"):
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 1)}


def _corrupt_a_baseline(cwd: Path) -> str | None:
    """Truncate the stored lenet_300_100 seed-0 baseline's model.pt (the next run with it sets it aside)."""
    for entry in sorted((cwd / "results" / "cache" / "baselines").glob("lenet_300_100-*")):
        if not entry.is_dir() or not (entry / "meta.json").exists():  # a lock file, a set-aside
            continue
        meta = json.loads((entry / "meta.json").read_text())
        if meta.get("key", {}).get("seed") == 0:
            f = entry / "model.pt"
            f.write_bytes(f.read_bytes()[:200])
            return entry.name
    return None


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) if path.exists() else 0


def measure(work: Path) -> dict:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    results = work / "results"
    cache = results / "cache"
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, "", ViewType.ALL, max_results=50000)
    parents = [r for r in runs if "edgebench.sweep_parent" in r.data.tags]
    parent_ids = {r.info.run_id for r in parents}
    top = [r for r in runs if r.info.run_id not in parent_ids
           and r.data.tags.get("mlflow.parentRunId") in (None, *parent_ids)]
    children = [r for r in runs if r.info.run_id not in parent_ids and r not in top]
    status: dict[str, int] = {}
    for r in top:
        status[r.info.status] = status.get(r.info.status, 0) + 1

    def entries(kind: str) -> int:
        d = cache / kind
        return sum(1 for p in d.iterdir() if p.is_dir() and not re.search(r"\.(corrupt|tmp)-", p.name)) if d.exists() else 0

    corrupt = [p for p in cache.rglob("*") if re.search(r"\.corrupt-\d+(-\d+)?$", p.name)] if cache.exists() else []
    hydra_dirs = [results / "runs", results / "multiruns"]
    model_files = [p for d in hydra_dirs if d.exists() for p in d.rglob("*") if p.is_file() and p.suffix in MODEL_FILES]
    out = {
        "runs": len(top), "runs_by_status": status, "child_runs": len(children), "sweep_parents": len(parents),
        "baselines": entries("baselines"), "step_entries": entries("steps"), "lottery_scopes": entries("lottery"),
        "lock_files": len(list(cache.rglob("*.lock"))) if cache.exists() else 0,
        "corrupt_set_asides": len(corrupt),
        "bytes_store": _bytes(cache),
        "bytes_runs_multiruns": sum(_bytes(d) for d in hydra_dirs),
        "model_files_in_runs_multiruns": len(model_files),
        "bytes_model_files_in_runs_multiruns": sum(p.stat().st_size for p in model_files),
        "bytes_mlflow_artifacts": _bytes(results / "mlartifacts"),
        "bytes_mlflow_db": _bytes(results / "mlflow.db"),
        "bytes_total": _bytes(results),
    }
    return out


def after_clean(work: Path) -> dict:
    """Where ``python -m edgebench.store`` exists: the same figures after ``--clean --yes`` (unheld lock files,
    set-asides, dead temporaries), and the bytes ``--unused`` would free (no entry is removed)."""
    import importlib.util

    if importlib.util.find_spec("edgebench.store.admin") is None:
        return {}
    cmd = [sys.executable, "-m", "edgebench.store"]
    clean = subprocess.run([*cmd, "--clean", "--yes"], cwd=work, env=_env(), capture_output=True, text=True)
    unused = subprocess.run([*cmd, "--unused"], cwd=work, env=_env(), capture_output=True, text=True)
    freed = re.search(r"would free (.*?) \(", unused.stdout)
    return {"after_store_clean": {"rc": clean.returncode, "last_line": (clean.stdout.strip().splitlines() or [""])[-1],
                                  **measure(work)},
            "unused_would_free": freed.group(1) if freed else unused.stdout.strip()[-300:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", help="a fresh folder to run in (default: a new temporary folder)")
    ap.add_argument("--out", default="results/store_growth.json", help="where the JSON goes")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="edgebench-growth-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        raise SystemExit(f"{work} is not empty: the session needs a fresh folder")
    import edgebench

    steps, t0 = [], time.perf_counter()
    for name, extra in SWEEPS.items():
        steps.append({"step": name, **_edgebench(["-m", *COMMON, *extra], work)})
        print(steps[-1], flush=True)
    corrupted = _corrupt_a_baseline(work)
    steps.append({"step": f"dense after corrupting {corrupted}", **_edgebench([*SINGLE, "seed=0"], work)})
    print(steps[-1], flush=True)
    steps.append({"step": "dense interrupted (SIGINT)", **_interrupted(work)})
    print(steps[-1], flush=True)
    result = {"edgebench": str(Path(edgebench.__file__).parent.parent), "workdir": str(work),
              "wall_s": round(time.perf_counter() - t0), "session": steps, **measure(work)}
    result.update(after_clean(work))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "session"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
