"""Sweeps through the real CLI: one parent run per multirun, child runs, resume, failures, parallel jobs."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from edgebench import report
from edgebench.record import config_hash
from edgebench.sweep import sweep_id
from tests import cli

FAST = ["data=digits", "trainer.max_epochs=1", "trainer.batch_size=32", "measure.latency=false",
        "trainer.progress_bar=none"]


def _cli(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return cli.run(["-m", *args], cwd, env=env, timeout=900)  # python -m edgebench, forked preloaded


def _runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/results/mlflow.db")
    exp = client.get_experiment_by_name("edgebench")
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def _parents(runs):
    return [r for r in runs if "edgebench.sweep_parent" in r.data.tags]


def test_sweep_has_one_parent_and_resumes_finished_jobs(tmp_path):
    out = _cli([*FAST, "+method=magnitude_pruning", "method.sparsity=0.5,0.8", "method.retrain_epochs=1"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    client, runs = _runs(tmp_path)
    (parent,) = _parents(runs)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["sweep_id"] for c in children} == {parent.data.tags["sweep_id"]}
    assert {c.data.params["method.sparsity"] for c in children} == {"0.5", "0.8"}
    assert client.get_run(parent.info.run_id).data.metrics["sweep/jobs_finished"] == 2
    # both jobs share one dense baseline: trained by the first job, a cache hit for the second
    assert sorted(c.data.tags["baseline.cache_hit"] for c in children) == ["false", "true"]

    # the report of this sweep: one row per job, frontiers marked, plots also on the parent run
    df = report.report(f"sqlite:///{tmp_path}/results/mlflow.db", sweep=parent.data.tags["sweep_id"],
                       out=tmp_path / "report")
    assert len(df) == 2 and set(df["method.sparsity"]) == {0.5, 0.8} and df["pareto_bytes"].any()
    assert {"report.md", "report.csv", "pareto_bytes.png"} <= {p.name for p in (tmp_path / "report").iterdir()}
    assert "method.sparsity" in (tmp_path / "report" / "report.csv").read_text().splitlines()[0]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.md", "report/pareto_bytes.png"} <= logged

    # the same sweep again: same parent, nothing retrained, no new runs
    again = _cli([*FAST, "+method=magnitude_pruning", "method.sparsity=0.5,0.8", "method.retrain_epochs=1"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped") + again.stderr.count("skipped") == 2
    _, runs2 = _runs(tmp_path)
    assert len(runs2) == len(runs) and _parents(runs2)[0].info.run_id == parent.info.run_id

    # a wider sweep: only the new ratio runs; the reused runs are listed on its parent
    wider = _cli([*FAST, "+method=magnitude_pruning", "method.sparsity=0.5,0.8,0.9", "method.retrain_epochs=1"],
                 tmp_path)
    assert wider.returncode == 0, wider.stderr[-3000:]
    _, runs3 = _runs(tmp_path)
    new_parent = next(p for p in _parents(runs3) if p.info.run_id != parent.info.run_id)
    assert len(runs3) == len(runs) + 2  # the new parent and one new job
    reused = {v for k, v in new_parent.data.tags.items() if k.startswith("sweep.reused.")}
    assert reused == {c.info.run_id for c in children}


def test_failed_job_fails_the_sweep_and_reruns_on_resume(tmp_path):
    args = [*FAST, "trainer.lr=1e30,1e-3"]  # lr 1e30 makes the loss NaN
    out = _cli(args, tmp_path)
    assert out.returncode != 0 and "1 failed" in out.stderr and "NonFiniteLossError" in out.stderr
    _, runs = _runs(tmp_path)
    (parent,) = _parents(runs)
    assert parent.info.status == "FAILED" and "job 0" in parent.data.tags["status_reason"]
    statuses = sorted(r.info.status for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert statuses == ["FAILED", "FINISHED"]  # the good job ran although the first one failed

    again = _cli(args, tmp_path)  # the failed job runs again (and fails again); the finished one is skipped
    assert again.returncode != 0
    _, runs2 = _runs(tmp_path)
    statuses = sorted(r.info.status for r in runs2 if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert statuses == ["FAILED", "FAILED", "FINISHED"]


def test_parallel_jobs_with_joblib(tmp_path):
    out = _cli(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *FAST, "seed=0,1,2,3"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "database is locked" not in out.stderr
    _, runs = _runs(tmp_path)
    (parent,) = _parents(runs)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.params["seed"] for c in children} == {"0", "1", "2", "3"}
    assert all("test/acc" in c.data.metrics for c in children)


def test_sweep_ends_with_its_table_and_one_ui_command(digits_seed_sweep):
    tmp_path, out = digits_seed_sweep  # a two-job sweep (seed=0,1) through the CLI, shared with test_ui.py
    assert out.returncode == 0, out.stderr[-3000:]
    _, runs = _runs(tmp_path)
    (parent,) = _parents(runs)
    sid = parent.data.tags["sweep_id"]
    tail = out.stdout[out.stdout.index(f"sweep {sid}: 2 finished runs in 1 groups"):]  # after the jobs: the result table
    assert "Pareto-optimal" in tail and " ± " in tail  # the two seeds are replicates of one group: mean ± interval
    assert "open the MLflow UI" not in out.stdout  # the jobs no longer print the UI command each
    assert out.stdout.count("python -m edgebench.ui") == 1
    assert f"--tracking-uri sqlite:///{tmp_path}/results/mlflow.db" in tail and f"--sweep {sid}" in tail
    assert "http://127.0.0.1:5000/#/experiments/" in tail and "workflowType=machine_learning" in tail


def test_sweep_id_and_config_hash_are_stable():
    assert sweep_id("e", ["a=1,2", "b=3"]) == sweep_id("e", ["b=3", "a=1,2"]) != sweep_id("e", ["a=1,2"])
    cfg = {"model": {"name": "x"}, "seed": 0, "paths": {"root_dir": "/a"}}
    assert config_hash(cfg) == config_hash({**cfg, "paths": {"root_dir": "/b"}, "resume": True})
    assert config_hash(cfg) != config_hash({**cfg, "seed": 1})


def test_pareto_front():
    acc = pd.Series([0.90, 0.95, 0.80, 0.95, 0.70, float("nan")])
    cost = pd.Series([10.0, 20.0, 5.0, 30.0, 6.0, 1.0])
    # 0.95@30 is beaten by 0.95@20; 0.70@6 by 0.80@5; the NaN row is never on the front
    assert report.pareto(acc, cost).tolist() == [True, True, True, False, False, False]


def test_report_refuses_a_missing_store(tmp_path):
    with pytest.raises(SystemExit, match="no MLflow store"):
        report.main(["--tracking-uri", f"sqlite:///{tmp_path}/none.db"])


@pytest.mark.slow  # 6 trials through the CLI; the objective has a fast test below
def test_optuna_search_moves_to_models_that_fit(tmp_path):
    # digits LeNet-300-100 as int8 TFLite Micro is ~55 kB; a 30 kB "flash" forces structured pruning of ~half
    out = _cli(["+sweep=optuna_arduino", *FAST, "hydra.sweeper.n_trials=6", "steps.0.retrain_epochs=1",
                "device.storage_bytes=30000"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    _, runs = _runs(tmp_path)
    (parent,) = _parents(runs)
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 6
    fits = [r.data.metrics["device/fits"] for r in trials]
    assert any(fits), "no trial fits the device"
    import yaml

    best = yaml.safe_load(next(tmp_path.glob("results/multiruns/*/optimization_results.yaml")).read_text())
    assert best["best_value"] > 0  # a feasible model: infeasible trials score below zero
    feasible = [r for r in trials if r.data.metrics["device/fits"] == 1]
    # the search chose on validation accuracy, never on the test split
    assert best["best_value"] == max(r.data.metrics["select/val_acc"] for r in feasible)


@pytest.mark.slow
def test_ray_launcher_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e '.[ray]' (Hydra's Ray launcher)")
    from tests.test_ray_cluster import ray_tests_lock

    with ray_tests_lock():  # one Ray instance at a time on this machine
        out = _cli(["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2", *FAST, "seed=0,1"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Started a local Ray instance" in out.stderr + out.stdout
    _, runs = _runs(tmp_path)
    (parent,) = _parents(runs)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert all(c.info.status == "FINISHED" for c in children)


def test_the_sweep_objective_reads_validation_accuracy_never_test_accuracy():
    from types import SimpleNamespace

    from edgebench.sweep import objective

    device = SimpleNamespace(storage_bytes=1000, memory_bytes=100)
    m = {"test/acc": 0.99, "select/val_acc": 0.8, "device/fits": 1.0}
    assert objective(m, device, "val_acc") == 0.8
    assert objective(m, device, "fits_device") == 0.8
    m_over = {"test/acc": 0.99, "select/val_acc": 0.8, "device/fits": 0.0, "device/flash_bytes": 1500, "device/ram_bytes": 50}
    assert objective(m_over, device, "fits_device") == pytest.approx(-1.5)


def test_a_run_logs_the_validation_accuracy_it_is_selected_on(make_cfg):
    from edgebench import pipeline

    res = pipeline.run(make_cfg("data=digits", "model=lenet_300_100", "trainer.max_epochs=3", "measure.latency=false",
                                "+method=magnitude_pruning", "method.sparsity=0.3", "method.retrain_epochs=1"))
    # the deployed (pruned) model on the 143 validation images: a multiple of 1/143, unlike the 359 test images
    assert 0.2 < res.metrics["select/val_acc"] <= 1.0
    assert round(res.metrics["select/val_acc"] * 143, 6).is_integer()


def test_replicates_run_consecutive_seeds_in_one_group(make_cfg, capsys):
    from mlflow.tracking import MlflowClient

    from edgebench import pipeline, report

    cfg = make_cfg("data=digits", "model=lenet_300_100", "trainer.max_epochs=2", "measure.latency=false",
                   "replicates=2", "seed=5")
    results = pipeline.run_replicates(cfg)
    assert "2 replicates (seeds 5-6): test accuracy" in capsys.readouterr().out
    other = pipeline.run_replicates(make_cfg("data=digits", "model=lenet_300_100", "trainer.max_epochs=3",
                                             "measure.latency=false", "seed=5"))[0]
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    runs = [client.get_run(r.run_id) for r in [*results, other]]
    assert [r.data.params["seed"] for r in runs] == ["5", "6", "5"]
    groups = [r.data.tags["replicate_group"] for r in runs]
    assert groups[0] == groups[1] != groups[2]  # only the seed differs between the first two
    assert len({r.data.tags["config_hash"] for r in runs}) == 3
    df, _, _ = report.build(report.load_runs(cfg.paths.mlflow_tracking_uri))
    assert sorted(df["replicates"]) == [1, 2]


def test_replicates_below_one_are_refused(make_cfg):
    from edgebench import pipeline
    from edgebench.config import ConfigError

    with pytest.raises(ConfigError, match="replicates: must be >= 1"):
        pipeline.run_replicates(make_cfg("data=digits", "replicates=0"))


@pytest.mark.slow  # 8 jobs through the CLI (about a minute); the report and export=device have fast tests of their own
def test_leaderboard_preset_and_report_answer_the_device_question(tmp_path):
    from edgebench import report

    out = _cli(["+sweep=leaderboard", *FAST, "model=lenet_300_100", "device=arduino_nano_33_ble_sense,jetson_nano_2gb",
                "seed=0,1", "steps=null,[ptq_int8]"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    _, runs = _runs(tmp_path)
    jobs = [r for r in runs if r.data.tags.get("edgebench.sweep_parent") is None]
    assert len(jobs) == 8
    formats = {(r.data.tags["device"], r.data.tags["chain"]): r.data.tags.get("export.format") for r in jobs}
    assert formats[("arduino_nano_33_ble_sense", "ptq_int8")] == "tflite_micro"  # export=device: the board's format
    assert formats[("jetson_nano_2gb", "none")] == "onnx"
    board = report.report_leaderboard(f"sqlite:///{tmp_path}/results/mlflow.db", out=tmp_path / "lb")
    ard = board[board["device"] == "arduino_nano_33_ble_sense"].set_index("family")
    assert ard.loc["dense", "status"] == "reference, does not fit"  # a float ONNX model never fits the board
    assert ard.loc["int8 PTQ", "status"] == "best that fits" and ard.loc["int8 PTQ", "replicates"] == 2
    assert ard.loc["int8 PTQ", "ram_source"] == "tflm_arena"
    assert (tmp_path / "lb" / "leaderboard.md").exists() and (tmp_path / "lb" / "leaderboard.png").exists()
