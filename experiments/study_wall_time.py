"""Wall time of a study budget on this machine, two ways back to back: Hydra's joblib launcher (``--jobs N``, one
SQLite MLflow store) and the Ray cluster of this machine (a head and a worker node, one CPU each, separate
processes, logging to an ``mlflow server`` over HTTP, as the README's scale-out section runs it). Each way starts
from an empty results folder (its own MLflow store and model store), so both train every dense parent; the data
cache is shared. Run it on an otherwise idle machine: the figure is one wall time per way, not an interval.

    python experiments/study_wall_time.py                                  # leaderboard, smoke budget, 2 jobs
    python experiments/study_wall_time.py --study pipelines --budget smoke --out /tmp/wall
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def arm_seconds(log: Path) -> dict[str, float]:
    """Each arm's wall time as the study runner printed it (``arm 'X' done in 35 s`` / ``in 2.0 min``)."""
    out = {}
    for m in re.finditer(r"arm '(.+)' done in ([\d.]+) (s|min)", log.read_text() if log.exists() else ""):
        out[m.group(1)] = float(m.group(2)) * (60 if m.group(3) == "min" else 1)
    return out


def _study(args, name: str, extra: list[str], env: dict, work: Path) -> dict:
    results = work / name
    shutil.rmtree(results, ignore_errors=True)
    cmd = [sys.executable, "-m", "edgebench.study", args.study, "--budget", args.budget, "--results-dir",
           str(results), "--out", str(results / "report"), *extra]
    print(f"{name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    with (work / f"{name}.log").open("w") as log:
        rc = subprocess.call(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    tail = (work / f"{name}.log").read_text().splitlines()
    print(f"{name}: rc {rc}, {wall / 60:.1f} min; {tail[-1] if tail else ''}", flush=True)
    return {"way": name, "command": " ".join(["python", *cmd[1:]]), "rc": rc, "wall_s": round(wall, 1)}


def _ray_cluster(args, env: dict, work: Path) -> dict:
    from edgebench import ui

    ray = Path(sys.executable).parent / "ray"
    ray_tmp = Path(tempfile.mkdtemp(prefix="ebray", dir="/tmp"))  # Ray's socket paths must stay short
    gcs, port = ui.free_port(), ui.free_port()
    url = f"http://127.0.0.1:{port}"
    procs = []

    def start(cmd, log):
        procs.append(subprocess.Popen(cmd, env=env, stdout=(work / log).open("w"), stderr=subprocess.STDOUT,
                                      start_new_session=True))
        return procs[-1]

    try:
        server = start([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                        f"sqlite:///{work}/ray_server.db", "--artifacts-destination", str(work / "ray_art"),
                        "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], "mlflow_server.log")
        ui.wait_until_up(server, url, timeout_s=120)
        start([str(ray), "start", "--head", f"--port={gcs}", "--num-cpus=1", "--include-dashboard=false",
               f"--temp-dir={ray_tmp}", "--block", "--disable-usage-stats"], "ray_head.log")
        time.sleep(5)
        start([str(ray), "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=1", "--block",
               "--disable-usage-stats"], "ray_worker.log")
        time.sleep(5)
        out = _study(args, "ray", ["--ray", f"127.0.0.1:{gcs}"], {**env, "MLFLOW_TRACKING_URI": url}, work)
        out["cluster"] = "head + 1 worker node, 1 CPU each, mlflow server over HTTP"
        return out
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                    p.wait(timeout=30)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, 9)
                    except ProcessLookupError:
                        pass
        shutil.rmtree(ray_tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="leaderboard")
    ap.add_argument("--budget", default="smoke")
    ap.add_argument("--jobs", type=int, default=2, help="--jobs of the local way (and CPUs of the Ray cluster)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgebench-wall-time")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    ap.add_argument("--from-logs", action="store_true", help="write the record from the logs already in --work")
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMP_NUM_THREADS="1", RAY_DEDUP_LOGS="0")
    if args.from_logs:  # the record again from an earlier run's logs in --work (ways' wall times as they were)
        ways = json.loads((work / "ways.json").read_text())
    else:
        ways = [_study(args, "local", ["--jobs", str(args.jobs)], env, work), _ray_cluster(args, env, work)]
        (work / "ways.json").write_text(json.dumps(ways))
    # the like-for-like figure: the arms that finished both ways (a way stopped early, or an arm that failed in
    # one, would otherwise compare different work)
    local, ray = arm_seconds(work / "local.log"), arm_seconds(work / "ray.log")
    common = [a for a in local if a in ray]
    for w, times in zip(ways, (local, ray)):
        w["arms_finished"] = len(times)
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    record = {"study": args.study, "budget": args.budget, "date": time.strftime("%Y-%m-%d %H:%M"),
              "cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
              "cpu_flags_simd": sorted(f for f in flags if f.startswith(("avx", "sse", "fma", "amx"))),
              "ways": ways, "arms_finished_both_ways": len(common),
              "local_s_on_those_arms": round(sum(local[a] for a in common), 1),
              "ray_s_on_those_arms": round(sum(ray[a] for a in common), 1),
              "ray_over_local_on_those_arms": round(sum(ray[a] for a in common) / sum(local[a] for a in common), 3)
              if common else None, "per_arm_s": {a: [local[a], ray[a]] for a in common}}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"study_wall_time_{args.study}_{args.budget}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}: {len(common)} arms finished both ways: local {record['local_s_on_those_arms'] / 60:.1f} min, "
          f"Ray {record['ray_s_on_those_arms'] / 60:.1f} min (whole ways: {ways[0]['wall_s'] / 60:.1f} and "
          f"{ways[1]['wall_s'] / 60:.1f} min, rc {ways[0]['rc']} and {ways[1]['rc']})")
    return 0 if all(w["rc"] == 0 for w in ways) else 1


if __name__ == "__main__":
    sys.exit(main())
