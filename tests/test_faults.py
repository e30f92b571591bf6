"""Faults and their messages (issue 24, items 9-14): what the user is told, and what the run record says.

Real CLI runs in subprocesses on sklearn digits (cwd=tmp_path), real signals; in-process checks where a
fault cannot be produced from outside (a full disk).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

FAST = ["data=digits", "trainer.max_epochs=1", "trainer.batch_size=32", "measure.latency=false",
        "trainer.progress_bar=none"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env.update(extra)
    return env


def _cli(args, cwd, timeout=600, **env):
    return subprocess.run([sys.executable, "-m", "edgebench", *args], cwd=cwd, env=_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def _runs(uri: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("edgebench")
    return client, ([] if exp is None else client.search_runs([exp.experiment_id], max_results=1000))


def _one_line_error(out, message: str) -> str:
    """The run was refused with exactly one ``edgebench: error:`` line (exit 2) holding ``message``."""
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert lines and lines[-1].startswith("edgebench: error: ") and message in lines[-1], out.stderr[-3000:]
    assert sum(line.startswith("edgebench: error: ") for line in lines) == 1
    return lines[-1]


def _start(args, cwd, template_db):
    (cwd / "results").mkdir(exist_ok=True)
    shutil.copy(template_db, cwd / "results" / "mlflow.db")
    return subprocess.Popen([sys.executable, "-m", "edgebench", *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


# --- 9: Ctrl-C in step 1 of a chain names the run the user started, not the finished step-0 child ---

def test_ctrl_c_in_a_chain_names_the_top_level_run(tmp_path, mlflow_template_db):
    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    steps = ("steps=[{name:magnitude_pruning,sparsity:0.5,retrain_epochs:0},"
             "{name:magnitude_pruning,sparsity:0.8,retrain_epochs:500}]")
    proc = _start([*FAST[:-1], "trainer.batch_size=16", "trainer.progress_bar=plain", steps], tmp_path,
                  mlflow_template_db)
    deadline = time.time() + 300
    child = None
    while child is None:
        assert time.time() < deadline, "step 0's child run did not finish in time"
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        _, runs = _runs(uri)
        done = [r for r in runs if r.data.tags.get("pipeline.step") == "0" and r.info.status == "FINISHED"]
        child = done[0] if done else None
        time.sleep(0.5)
    time.sleep(3)  # step 1 is retraining now
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    client, runs = _runs(uri)
    top = [r for r in runs if r.data.tags.get("edgebench.child") != "true"]
    assert len(top) == 1 and top[0].info.status == "KILLED"
    assert f"run {top[0].info.run_id} is marked KILLED" in err, err[-2000:]
    assert child.info.run_id not in err
    assert client.get_run(child.info.run_id).info.status == "FINISHED"


# --- 10: int8 TFLite convertibility is checked before any training, as fp32 already is ---

def test_int8_tflite_is_checked_before_training(tmp_path):
    from edgebench.export import tflite

    if tflite.missing(micro=True):
        pytest.skip("the tflite extra is not installed")
    t = time.time()
    out = _cli([*FAST, "model=ram", "+method=ptq_int8", "export=tflite_micro"], cwd=tmp_path)
    line = _one_line_error(out, "cannot be converted to int8 TFLite")
    # the op and where it is in the model, and the fix
    assert "model=ram" in line and "aten.mul" in line and "ram.py" in line and "export=onnx_int8" in line, line
    _, runs = _runs(f"sqlite:///{tmp_path}/results/mlflow.db")
    assert runs == [], "refused before any MLflow run (and so before any training)"
    assert time.time() - t < 240
    assert len([line for line in out.stderr.splitlines() if line.strip()]) == 1, out.stderr[-3000:]


# --- 13: structured pruning of RAM names RAM's reward-baseline head, not "the baseline" ---

def test_structured_pruning_of_ram_names_the_head_not_the_dense_baseline(tmp_path):
    out = _cli([*FAST, "model=ram", "+method=structured_pruning"], cwd=tmp_path, timeout=300)
    line = _one_line_error(out, "layer `baseline` (the RAM's reward-baseline head, 1 output channel")
    assert "not the dense baseline" in line and "+method=magnitude_pruning" in line, line
    # the location head (2 outputs) at a ratio that empties it: named as such too
    out = _cli([*FAST, "model=ram", "+method=structured_pruning", "method.ratio=0.6"], cwd=tmp_path, timeout=300)
    _one_line_error(out, "layer `locator` (the RAM's location head, 2 output channels")
