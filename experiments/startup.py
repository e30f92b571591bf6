"""Start-up and fixed cost of a short run: the same commands timed in separate processes, before and after a change.

Each command runs ``--repeats`` times per code tree, the trees interleaved (before, after, before, ...) so that a
machine that gets busier or quieter shifts both alike; every run is a fresh ``python`` process, so imports are paid
each time as a user pays them. The "before" tree is ``git archive <rev>`` of this repository, the "after" tree the
working copy; both run with the same interpreter and ``OMP_NUM_THREADS=1``.

Commands (in a scratch folder per tree, results under it):
  import   python -c "import edgebench.pipeline"
  cached   python -m edgebench data=digits trainer.max_epochs=1 measure.latency=false   (baseline from the cache:
           nothing trains; a first unrecorded run fills the cache)
  train    the same with use_baseline_cache=false (one epoch of LeNet-300-100 on digits: Lightning Fabric loads)

    python experiments/startup.py --before f8abcb4 [--repeats 5] [--out results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = ["-m", "edgebench", "data=digits", "trainer.max_epochs=1", "measure.latency=false"]
COMMANDS = {
    "import": ["-c", "import edgebench.pipeline"],
    "cached": RUN,
    "train": [*RUN, "use_baseline_cache=false"],
}


def cpu() -> dict:
    """The CPU's model name, its flags and the core count, from /proc/cpuinfo."""
    model, flags = "unknown", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": flags}


def export_tree(rev: str, into: Path) -> Path:
    """``git archive rev`` unpacked under ``into``: the code as it was at ``rev``."""
    blob = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into)
    return into


def timed(tree: Path, args: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the process and its children) of one run of ``args``."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def stats(xs: list[float]) -> dict:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return {"median_s": round(statistics.median(xs), 3), "min_s": round(min(xs), 3), "max_s": round(max(xs), 3),
            "iqr_s": round(q[2] - q[0], 3), "runs_s": [round(x, 3) for x in xs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="git revision of the code before the change")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--commands", default=",".join(COMMANDS), help="comma-separated subset of " + ",".join(COMMANDS))
    ap.add_argument("--out", default=str(REPO / "results" / "startup.json"))
    args = ap.parse_args()
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.before], check=True,
                         capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "edgebench"], check=True,
                                capture_output=True, text=True).stdout.strip())
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="edgebench-startup-") as tmp:
        trees = {"before": export_tree(args.before, Path(tmp) / "before"), "after": REPO}
        work = {name: Path(tmp) / f"work-{name}" for name in trees}
        for name, tree in trees.items():  # fills each tree's baseline cache (and its MLflow store), unrecorded
            work[name].mkdir()
            timed(tree, RUN, work[name])
        times: dict[str, dict[str, list[float]]] = {c: {n: [] for n in trees} for c in args.commands.split(",")}
        cpu_s: dict[str, dict[str, list[float]]] = {c: {n: [] for n in trees} for c in times}
        for i in range(args.repeats):
            for command in times:
                order = list(trees) if i % 2 == 0 else list(reversed(trees))
                for name in order:
                    wall, used = timed(trees[name], COMMANDS[command], work[name])
                    times[command][name].append(wall)
                    cpu_s[command][name].append(used)
                    print(f"{command:7s} {name:6s} run {i + 1}: {wall:.2f} s wall, {used:.2f} s CPU", flush=True)
    result = {
        "what": "seconds of each command in a fresh process (OMP_NUM_THREADS=1), before and after the change: wall "
                "time, and CPU time (user + system), which other jobs on a shared machine disturb less",
        "before": {"rev": rev}, "after": {"rev": head + ("+uncommitted" if dirty else "")},
        "commands": {c: " ".join(["python", *COMMANDS[c]]) for c in times},
        "wall": {c: {n: stats(xs) for n, xs in per.items()} for c, per in times.items()},
        "cpu": {c: {n: stats(xs) for n, xs in per.items()} for c, per in cpu_s.items()},
        "saved_median_s": {kind: {c: round(statistics.median(per["before"]) - statistics.median(per["after"]), 3)
                                  for c, per in series.items()} for kind, series in (("wall", times), ("cpu", cpu_s))},
        "repeats": args.repeats, "python": sys.version.split()[0], "machine": cpu(),
        "load_average_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "note": "the machine was shared with other jobs (see the load average): wall times spread widely; "
                "compare medians, and the CPU times",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for kind in ("wall", "cpu"):
        for c, per in result[kind].items():
            print(f"{c:7s} {kind:4s} before {per['before']['median_s']:.2f} s  after {per['after']['median_s']:.2f} s  "
                  f"(saved {result['saved_median_s'][kind][c]:.2f} s, median of {args.repeats})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
