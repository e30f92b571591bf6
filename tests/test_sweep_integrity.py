"""Sweeps that stay whole (issue 24): two launches of one sweep at once, conf/ edited mid-sweep, a killed launcher.

Real CLI runs in subprocesses (cwd=tmp_path), real file edits, real SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from mlflow.tracking import MlflowClient

from edgebench.config import config_dir
from tests import cli

FAST = ["data=digits", "model=lenet_300_100", "trainer.max_epochs=1", "trainer.batch_size=32",
        "measure.latency=false", "trainer.progress_bar=none"]


def _popen(args, cwd) -> cli.Started:
    """The CLI in the background, its output in a file (``_output``): a pipe would stay open in orphaned workers."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    # python -m edgebench -m ARGS, forked from the preloaded server (tests/cli.py)
    return cli.start(["-m", *args], cwd, env=env, output=Path(cwd) / f"launch-{time.monotonic_ns()}.log")


def _output(proc: cli.Started, timeout: float | None = None) -> str:
    proc.wait(timeout=timeout)
    return Path(proc.log_path).read_text()  # type: ignore[attr-defined]


def _runs(tmp_path):
    db = tmp_path / "results" / "mlflow.db"
    if not db.exists():
        return None, []
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("edgebench")
    return client, ([] if exp is None else client.search_runs([exp.experiment_id], max_results=1000))


def _parents(runs):
    return [r for r in runs if "edgebench.sweep_parent" in r.data.tags]


def _jobs(runs):
    return [r for r in runs if "config_hash" in r.data.tags]


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's exit may wait for a reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- item 4: two launches of the same sweep at once run each job once; the last launcher closes the parent ---

def test_two_launches_of_one_sweep_at_once_run_each_job_once(tmp_path):
    args = [*FAST, "seed=0,1,2,3"]
    procs = [_popen(args, tmp_path) for _ in range(2)]
    outputs, checked = {}, False
    deadline = time.time() + 900
    while len(outputs) < 2 and time.time() < deadline:
        for i, p in enumerate(procs):
            if i not in outputs and p.poll() is not None:
                outputs[i] = _output(p)
                if not checked and len(outputs) == 1:  # one launcher ended: the parent must outlive its jobs
                    client, runs = _runs(tmp_path)
                    parent_status = [p.info.status for p in _parents(runs)]
                    _, runs = _runs(tmp_path)
                    running = [r for r in _jobs(runs) if r.info.status == "RUNNING"]
                    assert not (running and "FINISHED" in parent_status), \
                        "the first launcher to end closed the parent while a job of the other still ran"
                    checked = True
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            p.kill()
    assert len(outputs) == 2, "the launches did not end"
    for i, p in enumerate(procs):
        assert p.returncode == 0, outputs[i][-3000:]
    client, runs = _runs(tmp_path)
    (parent,) = _parents(runs)
    jobs = _jobs(runs)
    per_hash = Counter(r.data.tags["config_hash"] for r in jobs)
    assert len(per_hash) == 4 and set(per_hash.values()) == {1}, f"duplicate jobs: {per_hash}"
    assert all(r.info.status == "FINISHED" for r in jobs)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in jobs)
    assert parent.info.status == "FINISHED"
    assert parent.info.end_time >= max(r.info.end_time for r in jobs)
    assert client.get_run(parent.info.run_id).data.metrics["sweep/jobs_finished"] == 4
    # each launch skipped the jobs the other one ran
    assert sum(o.count("running elsewhere") + o.count("already finished") for o in outputs.values()) == 4


# --- item 5: editing conf/ while a sweep runs changes none of its jobs ---

def test_editing_the_config_folder_during_a_sweep_changes_no_job(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    yaml = conf / "method" / "magnitude_pruning.yaml"
    assert "sparsity: 0.9 " in yaml.read_text()
    proc = _popen(["--config-path", str(conf), *FAST, "+method=magnitude_pruning", "method.retrain_epochs=1",
                   "seed=0,1,2"], tmp_path)
    try:
        deadline = time.time() + 300
        while not list(tmp_path.glob("results/multiruns/*/0")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert list(tmp_path.glob("results/multiruns/*/0")), "job 0 never started"
        assert not list(tmp_path.glob("results/multiruns/*/1")), "job 1 started before the edit"
        yaml.write_text(yaml.read_text().replace("sparsity: 0.9 ", "sparsity: 0.5 "))  # a real edit of a real file
        out = _output(proc, timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    _, runs = _runs(tmp_path)
    (parent,) = _parents(runs)
    jobs = sorted(_jobs(runs), key=lambda r: int(r.data.tags["hydra.job.num"]))
    assert [r.data.params["method.sparsity"] for r in jobs] == ["0.9", "0.9", "0.9"]  # the value at launch
    digest = parent.data.tags["sweep.conf_digest"]
    assert digest and {r.data.tags["conf_digest"] for r in jobs} == {digest}
    assert "conf_digest" in (next(tmp_path.glob("results/multiruns/*/sweep.json"))).read_text()


# --- item 8: SIGKILL of a joblib sweep's launcher ends its workers ---

def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


@pytest.mark.slow  # a joblib sweep SIGKILLed mid-training; test_sweep.py runs a joblib sweep to its end
def test_killing_a_joblib_launcher_ends_its_workers(tmp_path):
    slow = [a for a in FAST if not a.startswith("trainer.max_epochs")] + ["trainer.max_epochs=1000"]
    proc = _popen(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *slow, "seed=0,1"], tmp_path)
    workers: set[int] = set()
    try:
        deadline = time.time() + 300
        running = []
        while time.time() < deadline and proc.poll() is None:
            if not list(tmp_path.glob("results/multiruns/*/sweep.json")):  # the store is made and migrated by then
                time.sleep(0.5)
                continue
            _, runs = _runs(tmp_path)
            running = [r for r in _jobs(runs) if r.info.status == "RUNNING"]
            if len(running) == 2:
                break
            time.sleep(0.5)
        assert len(running) == 2, "the two jobs never ran"
        workers = {int(r.data.tags["edgebench.pid"]) for r in running}
        assert proc.pid not in workers and workers <= _descendants(proc.pid)
        time.sleep(2)  # well into training
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 30
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.5)
        left = [w for w in workers if _alive(w)]
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    assert not left, f"workers {left} outlived their launcher"
    client, runs = _runs(tmp_path)
    for r in (client.get_run(r.info.run_id) for r in running):
        assert r.info.status == "KILLED"
        assert f"the sweep's launcher (pid {proc.pid}) is gone" in r.data.tags["status_reason"]


def test_replicates_with_one_running_elsewhere_print_the_others(make_cfg, monkeypatch, capsys):
    """A replicate skipped because its config runs in another process has no accuracy yet: the mean is over the
    others, and the line says so (it raised KeyError before)."""
    from edgebench import pipeline

    accs = iter([0.9, None, 0.8, 0.85])

    def fake_run(c):
        acc = next(accs)
        return pipeline.RunResult(f"r{c.seed}", {} if acc is None else {"test/acc": acc}, {}, False,
                                  skipped=acc is None)

    monkeypatch.setattr(pipeline, "run", fake_run)
    cfg = make_cfg("data=digits", "replicates=4", "seed=0")
    assert len(pipeline.run_replicates(cfg)) == 4
    out = capsys.readouterr().out
    assert "interval over 3" in out and "1 still running elsewhere, not included" in out
