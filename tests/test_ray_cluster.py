"""A study on a real two-node Ray cluster (head + one worker node, separate processes on this machine), its 6 jobs
(2 arms x 3 seeds) logging to an `mlflow server` over HTTP: the worker node is killed in the middle of a job, Ray
runs that job again on the head, and every job ends recorded exactly once (one FINISHED run per arm and seed; the
killed attempt FAILED, with its node); the same command again runs nothing.

The cluster test is slow (about 2 minutes) and runs only with the `ray` extra (Hydra's Ray launcher): `make test-all` installs it."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

STUDY = """
name: ray_cluster
title: Two arms on a Ray cluster
question: does every job of a study end recorded exactly once when a Ray node dies mid-job?
base: [data=digits, trainer.max_epochs=3, trainer.batch_size=32, measure.latency=false]
arms:
  dense: []
  pruned: [+method=magnitude_pruning, method.sparsity=0.5, method.retrain_epochs=1]
reference: dense
budgets:
  full: {seeds: [0, 1, 2]}
metrics: [test/acc]
comparisons:
  - {arm: pruned, metric: test/acc}
tables: [arms, comparisons]
"""


def ray_tests_lock():
    """One Ray cluster at a time on this machine (pytest-xdist runs tests side by side; Ray's ports are fixed)."""
    fh = open(Path(tempfile.gettempdir()) / "edgebench-ray-tests.lock", "w")
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def _ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
        out.add(pid)
    return out


def _ray(*args, log: Path, env: dict) -> subprocess.Popen:
    ray = Path(sys.executable).parent / "ray"
    return subprocess.Popen([str(ray), "start", *args, "--block", "--disable-usage-stats"], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with __import__("contextlib").suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)


@pytest.mark.slow
def test_a_sweep_survives_the_loss_of_a_ray_worker_node(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e '.[ray]' (Hydra's Ray launcher)")
    from mlflow.tracking import MlflowClient

    from edgebench import ui

    lock = ray_tests_lock()
    ray_tmp = Path(tempfile.mkdtemp(prefix="ebray", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMP_NUM_THREADS="1", RAY_DEDUP_LOGS="0")
    gcs, port = ui.free_port(), ui.free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                               f"sqlite:///{tmp_path}/server.db", "--artifacts-destination", str(tmp_path / "art"),
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env={**env, **ui.ENV})
    head = _ray("--head", f"--port={gcs}", "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={ray_tmp}",
                log=tmp_path / "head.log", env=env)
    worker = None
    sweep = None
    try:
        ui.wait_until_up(server, url, timeout_s=120)
        time.sleep(5)
        worker = _ray(f"--address=127.0.0.1:{gcs}", "--num-cpus=1", log=tmp_path / "worker.log", env=env)
        time.sleep(5)
        (tmp_path / "ray_cluster.yaml").write_text(STUDY)
        cmd = [sys.executable, "-m", "edgebench.study", str(tmp_path / "ray_cluster.yaml"), "--ray",
               f"127.0.0.1:{gcs}"]
        run_env = {**env, "MLFLOW_TRACKING_URI": url}
        sweep = subprocess.Popen(cmd, cwd=tmp_path, env=run_env, stdout=(tmp_path / "sweep.log").open("w"),
                                 stderr=subprocess.STDOUT)
        client = MlflowClient(url)
        killed = None
        deadline = time.time() + 300
        while killed is None and time.time() < deadline and sweep.poll() is None:
            exp = client.get_experiment_by_name("study-ray_cluster")
            for r in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") if exp else []:
                pid = r.data.tags.get("edgebench.pid")
                if pid and "edgebench.sweep_parent" not in r.data.tags and worker.pid in _ancestors(int(pid)):
                    os.killpg(worker.pid, 9)  # the worker node and every process on it, mid-job
                    killed = r
                    break
            time.sleep(0.5)
        assert killed is not None, "no job ran on the worker node: " + (tmp_path / "sweep.log").read_text()[-3000:]
        rc = sweep.wait(timeout=600)
        log = (tmp_path / "sweep.log").read_text()
        assert rc == 0, log[-4000:]
        arm_logs = "".join(p.read_text() for p in (tmp_path / "results" / "studies").glob("*.log"))

        exp = client.get_experiment_by_name("study-ray_cluster")
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        jobs = [r for r in runs if "study.arm" in r.data.tags and "edgebench.sweep_parent" not in r.data.tags
                and r.data.tags.get("edgebench.child") != "true"]
        done = [r for r in jobs if r.info.status == "FINISHED"]
        # every job recorded exactly once
        assert sorted((r.data.tags["study.arm"], int(r.data.params["seed"])) for r in done) == \
            [(a, s) for a in ("dense", "pruned") for s in (0, 1, 2)]
        assert all(r.data.metrics["test/acc"] > 0.3 for r in done)
        dead = client.get_run(killed.info.run_id)
        assert dead.info.status == "FAILED" and "is gone" in dead.data.tags["status_reason"]
        # the retry: the same arm and seed finished by the same Ray task on the other (head) node
        (retry,) = [r for r in done if r.data.tags["study.arm"] == dead.data.tags["study.arm"]
                    and r.data.params["seed"] == dead.data.params["seed"]]
        assert retry.data.tags["edgebench.ray.task"] == dead.data.tags["edgebench.ray.task"]
        assert retry.data.tags["edgebench.ray.node"] != dead.data.tags["edgebench.ray.node"]
        assert "retries remaining" in arm_logs
        assert all(r.info.status == "FINISHED" for r in runs if "edgebench.sweep_parent" in r.data.tags)
        assert not (tmp_path / "results" / "mlflow.db").exists(), "nothing went to a local store"
        report = (tmp_path / "results" / "ray_cluster.md").read_text()
        assert "| dense | 3 |" in report and "| pruned | 3 |" in report

        # resumable: the same command again (the worker node gone) runs nothing and records nothing new
        again = subprocess.run(cmd, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "6 finished before, 0 to run" in again.stdout
        assert len(client.search_runs([exp.experiment_id], max_results=1000)) == len(runs)
    finally:
        for p in (sweep,):
            if p is not None and p.poll() is None:
                p.kill()
        for p in (worker, head):
            if p is not None:
                _stop(p)
        ui.stop(server)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        lock.close()


# --- default suite: how a job under Ray tells that a RUNNING run on another machine is dead (no Ray needed) ---

def test_a_run_of_another_machine_is_dead_to_a_ray_task_when_its_node_or_attempt_is(monkeypatch):
    from types import SimpleNamespace

    from edgebench import tracking

    class FakeRay:  # what edgebench reads of Ray inside a task: its node and task ids, and the cluster's nodes
        def __init__(self, task):
            self.task = task

        def is_initialized(self):
            return True

        def get_runtime_context(self):
            return SimpleNamespace(get_node_id=lambda: "node-b", get_task_id=lambda: self.task)

        def nodes(self):
            return [{"NodeID": "node-a", "Alive": False}, {"NodeID": "node-b", "Alive": True},
                    {"NodeID": "node-c", "Alive": True}]

    def run(node, task):  # a RUNNING run of another host, made inside a Ray task
        return SimpleNamespace(data=SimpleNamespace(tags={
            tracking.HOST_TAG: "another-machine", tracking.PID_TAG: "4242", tracking.PID_START_TAG: "1",
            tracking.RAY_NODE_TAG: node, tracking.RAY_TASK_TAG: task}))

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    assert tracking.run_process_alive(run("node-a", "t1"))  # outside Ray: another host's run counts as alive
    assert tracking.RAY_NODE_TAG not in tracking.process_tags()  # and a run records no Ray ids
    monkeypatch.setitem(sys.modules, "ray", FakeRay("t9"))
    assert tracking.process_tags()[tracking.RAY_NODE_TAG] == "node-b"
    assert tracking.process_tags()[tracking.RAY_TASK_TAG] == "t9"
    assert not tracking.run_process_alive(run("node-a", "t1"))  # its node is dead
    assert not tracking.run_process_alive(run("node-c", "t9"))  # an earlier attempt of this very task: Ray retried it
    assert tracking.run_process_alive(run("node-c", "t1"))  # another task on a live node: running elsewhere
