"""Records you can trust: what a run leaves in MLflow, under faults and for bad input (issue 11).

Each test names the item of the issue it covers. Real runs on sklearn digits, real subprocesses,
real signals; round trips go through ``mlflow.search_runs`` and ``mlflow.onnx.load_model``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import mlflow.onnx
import onnx
import pytest
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from edgebench import pipeline
from edgebench.config import ConfigError, validate
from tests import cli

FAST = ["data=digits", "trainer.max_epochs=2", "trainer.batch_size=32", "measure.latency=false",
        "trainer.progress_bar=none"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env.update(extra)
    return env


def _cli(args, cwd, timeout=600, **env):
    return cli.run(args, cwd, env=_env(**env), timeout=timeout)  # python -m edgebench, forked preloaded


def _runs(uri: str, experiment: str = "edgebench"):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client, ([] if exp is None else client.search_runs([exp.experiment_id], max_results=1000))


def _search(uri: str, filter_string: str = ""):
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(experiment_names=["edgebench"], filter_string=filter_string)
    finally:
        mlflow.set_tracking_uri(None)


# --- 1, 4, 5: plain params, a config.yaml that loads and reruns, the model in MLflow's format, run names ---

def test_run_record_is_plain_loadable_and_reruns(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, "+method=magnitude_pruning", "method.sparsity=0.8", "method.retrain_epochs=1")
    res = pipeline.run(cfg)
    uri = cfg.paths.mlflow_tracking_uri
    # 1. params are plain values: a filter on them finds the run
    df = _search(uri, "params.`model.name` = 'lenet_300_100' and params.`data.name` = 'digits' "
                      "and params.`trainer.optimizer` = 'adam'")
    assert list(df.run_id) == [res.run_id]
    assert not any("Name." in str(v) or "Optimizer." in str(v) for v in df.filter(like="params.").iloc[0])
    # 5. no long device prose among the params; the distinguishing part of the name comes first
    assert "params.device.description" not in df.columns and not any(c.startswith("params.device.sources")
                                                                       for c in df.columns)
    assert df.iloc[0]["tags.mlflow.runName"].startswith("s=0.8 ep=1 magnitude")
    assert df.iloc[0]["tags.model"] == "lenet_300_100"  # the rest stays in tags
    # 1. config.yaml loads safely in every reader
    mlflow.set_tracking_uri(uri)
    try:
        as_dict = mlflow.artifacts.load_dict(f"runs:/{res.run_id}/config.yaml")
        local = Path(mlflow.artifacts.download_artifacts(f"runs:/{res.run_id}/config.yaml",
                                                         dst_path=str(tmp_path / "dl")))
    finally:
        mlflow.set_tracking_uri(None)
    assert yaml.safe_load(local.read_text()) == as_dict
    assert OmegaConf.to_container(OmegaConf.load(local))["model"]["name"] == "lenet_300_100"
    assert as_dict["method"]["sparsity"] == 0.8 and "paths" not in as_dict
    # 1. and reruns: the same config (hash) from the logged file, through the documented command
    out = _cli(["--config-dir", str(local.parent), "--config-name", "config"], cwd=tmp_path,
               MLFLOW_TRACKING_URI=uri)
    assert out.returncode == 0, out.stderr[-3000:]
    client, runs = _runs(uri)
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(top) == 2 and len({r.data.tags["config_hash"] for r in top}) == 1
    assert {r.data.params["trainer.max_epochs"] for r in top} == {"2"}
    # 4. the deployable model is in MLflow's model format, with a signature and an input example
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.onnx.load_model(f"runs:/{res.run_id}/model")
        info = mlflow.models.get_model_info(f"runs:/{res.run_id}/model")
        version = mlflow.register_model(f"runs:/{res.run_id}/model", "lenet-digits")
    finally:
        mlflow.set_tracking_uri(None)
    assert isinstance(model, onnx.ModelProto) and "onnx" in info.flavors
    assert info.signature is not None and info.saved_input_example_info is not None
    assert str(version.version) == "1"
    # 4. source tags and the data set: the UI's Source and Dataset columns are filled
    run = client.get_run(res.run_id)
    assert run.data.tags["mlflow.source.type"] == "LOCAL" and run.data.tags["mlflow.source.name"]
    assert len(run.data.tags.get("mlflow.source.git.commit", "0" * 40)) == 40
    contexts = {[t.value for t in d.tags if t.key == "mlflow.data.context"][0]: d.dataset
                for d in run.inputs.dataset_inputs}
    assert set(contexts) == {"training", "test"} and contexts["test"].name == "digits"


def test_int8_and_fp16_files_are_mlflow_models(make_cfg):
    for method in ("ptq_int8", "fp16"):
        cfg = make_cfg(*FAST, f"+method={method}")
        res = pipeline.run(cfg)
        mlflow.set_tracking_uri(cfg.paths.mlflow_tracking_uri)
        try:
            model = mlflow.onnx.load_model(f"runs:/{res.run_id}/model")
        finally:
            mlflow.set_tracking_uri(None)
        kinds = {n.op_type for n in model.graph.node}
        if method == "ptq_int8":
            assert "QuantizeLinear" in kinds or "QLinearConv" in kinds or "QLinearMatMul" in kinds, kinds
        else:
            assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


# --- 2: two runs started together each log their own model ---

@pytest.mark.slow  # two whole CLI runs at once; the parallel sweeps (tests/test_sweep*.py) run jobs side by side too
def test_two_concurrent_cli_runs_log_their_own_models(tmp_path):
    from edgebench.tracking import Tracker

    Tracker(f"sqlite:///{tmp_path}/results/mlflow.db", str(tmp_path / "results" / "mlartifacts"), "edgebench")
    procs = {model: subprocess.Popen([sys.executable, "-m", "edgebench", *FAST, f"model={model}"], cwd=tmp_path,
                                     env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for model in ("lenet_300_100", "lenet5")}
    for model, p in procs.items():
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    _, runs = _runs(uri)
    assert len(runs) == 2
    mlflow.set_tracking_uri(uri)
    try:
        for r in runs:
            graph = mlflow.onnx.load_model(f"runs:/{r.info.run_id}/model").graph
            ops = {n.op_type for n in graph.node}
            params = sum(onnx.numpy_helper.to_array(t).size for t in graph.initializer
                         if t.data_type == onnx.TensorProto.FLOAT)  # weights, not shape constants
            assert ("Conv" in ops) == (r.data.tags["model"] == "lenet5"), (r.data.tags["model"], ops)
            assert params == r.data.metrics["size/params"]
    finally:
        mlflow.set_tracking_uri(None)


# --- 6: resume finds the top-level run, never a lottery-ticket level ---

def test_resume_returns_the_run_not_a_lottery_level(make_cfg):
    args = ["data=digits", "trainer.max_epochs=2", "trainer.batch_size=64", "+method=lottery_ticket",
            "method.levels=1", "method.epochs=1", "method.controls=[]", "method.val_checks_per_epoch=1",
            "measure.latency=false"]
    first = pipeline.run(make_cfg(*args))
    again = pipeline.run(make_cfg(*args, "resume=true"))
    assert again.skipped and again.run_id == first.run_id
    assert again.metrics["test/acc"] == pytest.approx(first.metrics["test/acc"])
    client, runs = _runs(make_cfg().paths.mlflow_tracking_uri)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first.run_id]
    assert children and all("config_hash" not in r.data.tags for r in children)
    # a store written before the fix: children carrying the parent's config_hash are still never matched
    for c in children:
        client.set_tag(c.info.run_id, "config_hash", first.tags["config_hash"])
        client.delete_tag(c.info.run_id, "edgebench.child")
    assert pipeline.run(make_cfg(*args, "resume=true")).run_id == first.run_id


# --- 7, 8: Ctrl-C and SIGTERM end as KILLED; a SIGKILLed run is marked FAILED by the next launch ---

def _start(args, cwd, template_db):
    """A CLI run in the background, on a store migrated beforehand (polling a store being created races)."""
    (cwd / "results").mkdir(exist_ok=True)
    shutil.copy(template_db, cwd / "results" / "mlflow.db")
    # SIGINT back to its default in the child: a shell's background job inherits it ignored (SIG_IGN), and then
    # the signals these tests send would test nothing but how pytest itself was launched
    return cli.start(args, cwd, env=_env())  # python -m edgebench, forked preloaded (SIGINT at its default)


def _wait_for_training(proc, uri, timeout=180):
    """Until the run is RUNNING and its dense model is training (an epoch logged)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        client, runs = _runs(uri)
        live = [r for r in runs if r.info.status == "RUNNING" and "edgebench.sweep_parent" not in r.data.tags]
        if live and client.get_metric_history(live[0].info.run_id, "val/acc"):
            return live[0]
        time.sleep(0.5)
    raise AssertionError("the run did not start training in time")


LONG = ["data=digits", "trainer.max_epochs=500", "trainer.batch_size=16", "trainer.progress_bar=plain"]


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])  # one handler
def test_interrupted_run_is_killed_with_a_resume_hint(tmp_path, mlflow_template_db, sig):
    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    proc = _start(LONG, tmp_path, mlflow_template_db)
    run = _wait_for_training(proc, uri)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert f"interrupted by {'SIGTERM' if sig == signal.SIGTERM else 'SIGINT'}" in err
    assert f"run {run.info.run_id} is marked KILLED" in err and "again to resume" in err
    assert "Traceback" not in err
    client, _ = _runs(uri)
    after = client.get_run(run.info.run_id)
    assert after.info.status == "KILLED" and "interrupted by" in after.data.tags["status_reason"]


def test_interrupted_sweep_closes_its_parent(tmp_path, mlflow_template_db):
    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    proc = _start(["-m", *LONG, "seed=0,1"], tmp_path, mlflow_template_db)
    _wait_for_training(proc, uri)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    _, runs = _runs(uri)
    statuses = {("parent" if "edgebench.sweep_parent" in r.data.tags else "job"): r.info.status for r in runs}
    assert statuses == {"parent": "KILLED", "job": "KILLED"}, statuses


@pytest.mark.slow  # two loky workers training at once
def test_sigterm_to_a_joblib_sweep_closes_its_workers_runs_killed(tmp_path, mlflow_template_db):
    # joblib answers the launcher's interruption by SIGKILLing its workers, so their runs cannot close themselves:
    # the launcher closes them (and their child runs) KILLED, not left RUNNING for a later launch to call FAILED
    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    proc = _start(["-m", *LONG, "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path,
                  mlflow_template_db)
    _wait_for_training(proc, uri)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    _, runs = _runs(uri)
    jobs = [r for r in runs if "edgebench.sweep_parent" not in r.data.tags]
    assert jobs and {r.info.status for r in runs} == {"KILLED"}, [(r.info.run_name, r.info.status) for r in runs]
    assert all("interrupted by SIGTERM" in r.data.tags["status_reason"] for r in jobs), \
        [r.data.tags.get("status_reason") for r in jobs]


def test_sigkilled_run_is_marked_failed_by_the_next_launch(tmp_path, mlflow_template_db):
    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    proc = _start(LONG, tmp_path, mlflow_template_db)
    run = _wait_for_training(proc, uri)
    proc.kill()
    proc.wait(timeout=60)
    client, _ = _runs(uri)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # nothing could close it
    reserve = tmp_path / "results" / f"mlflow.db.reserve-{proc.pid}"
    assert reserve.exists()  # its disk reserve, left behind
    out = _cli([*FAST, "trainer.max_epochs=1"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    dead = client.get_run(run.info.run_id)
    assert dead.info.status == "FAILED"
    assert f"pid {run.data.tags['edgebench.pid']}" in dead.data.tags["status_reason"]
    assert "is gone" in dead.data.tags["status_reason"]
    assert not list((tmp_path / "results").glob("mlflow.db.reserve-*"))  # the later launch removed it


# --- 13, 14: unknown keys, and errors found before any work ---

@pytest.mark.parametrize("override,message", [
    ("+trainer.max_epoch=3", r"trainer\.max_epoch: unknown key \(did you mean trainer\.max_epochs\?\)"),
    ("+data.rooot=/x", r"data\.rooot: unknown key \(did you mean data\.root\?\)"),
    ("+model.foo=1", r"model\.foo: unknown key; known keys of model: name, pretrained"),
    ("+measure.run_time=torch", r"measure\.run_time: unknown key \(did you mean measure\.runtime\?\)"),
    ("+foo=1", r"foo: unknown key; known keys of the top level"),
])
def test_unknown_keys_are_rejected_in_every_group(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_cfg("data=digits", override))


def test_dict_fields_still_take_new_keys(make_cfg):
    spec = validate(make_cfg("data=digits", "+device.sources.note=datasheet"))
    assert spec.device.sources["note"] == "datasheet"


@pytest.mark.parametrize("args,message", [
    (["+trainer.max_epoch=3"], "trainer.max_epoch: unknown key"),
    (["data=image_folder", "data.root=/no/such/folder"], "data.root=/no/such/folder is not a folder"),
    (["trainer.accelerator=gpu"], "trainer.accelerator=gpu: torch sees no CUDA GPU"),
    (["model=lenet_300_100", "+method=structured_pruning", "method.granularity=layer"], "granularity=layer"),
])
def test_bad_input_is_one_line_and_leaves_no_run(tmp_path, args, message):
    import torch

    if "trainer.accelerator=gpu" in args and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = _cli(["data=digits", "trainer.progress_bar=none", *args], cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("edgebench: error: ") and message in lines[-1], out.stderr[-3000:]
    assert "Traceback" not in out.stderr and len(lines) <= 3, out.stderr
    _, runs = _runs(f"sqlite:///{tmp_path}/results/mlflow.db")
    assert runs == [], "a refused input opens no MLflow run"
    if args[0].startswith("+trainer"):  # one case is enough for the switch itself
        full = _cli(["data=digits", *args], cwd=tmp_path, timeout=300, HYDRA_FULL_ERROR="1")
        assert full.returncode != 0 and "Traceback" in full.stderr  # the full story on demand


# --- scale-out: a parallel sweep against a real `mlflow server` on loopback ---

@pytest.mark.slow  # a server and a two-job joblib sweep; experiments/parallel_sweep.py measures it at scale
def test_parallel_sweep_against_a_tracking_server(tmp_path):
    from edgebench import ui

    port = ui.free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                               f"sqlite:///{tmp_path}/server.db", "--artifacts-destination", str(tmp_path / "art"),
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ, **ui.ENV})
    url = f"http://127.0.0.1:{port}"
    try:
        ui.wait_until_up(server, url, timeout_s=120)
        out = _cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *FAST, "seed=0,1"], cwd=tmp_path,
                   MLFLOW_TRACKING_URI=url)
        assert out.returncode == 0, out.stderr[-3000:]
        client, runs = _runs(url)
        jobs = [r for r in runs if "edgebench.sweep_parent" not in r.data.tags]
        assert sorted(r.data.params["seed"] for r in jobs) == ["0", "1"]
        assert all(r.info.status == "FINISHED" and r.data.metrics["test/acc"] > 0.3 for r in jobs)
        parent = [r for r in runs if "edgebench.sweep_parent" in r.data.tags]
        assert len(parent) == 1 and {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent[0].info.run_id}
        assert not (tmp_path / "results" / "mlflow.db").exists(), "nothing went to a local store"
        mlflow.set_tracking_uri(url)
        try:
            for r in jobs:  # the artifacts went to the server too
                assert mlflow.onnx.load_model(f"runs:/{r.info.run_id}/model").graph.node
        finally:
            mlflow.set_tracking_uri(None)
    finally:
        ui.stop(server)


def test_a_new_store_starts_from_the_schema_template_and_gets_its_own_default_experiment(tmp_path, monkeypatch):
    """A new local store is a copy of the migrated, empty template (made once per MLflow version), not seconds of
    MLflow's migrations; MLflow then adds the Default experiment with this store's own artifact location, and the
    edgebench experiment lands in the store's artifact folder."""
    from edgebench import tracking

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    template = tracking.schema_template()
    assert template.parent == tmp_path / "cache" / "edgebench" and template.name.startswith(f"mlflow-{mlflow.__version__}")
    assert tracking.schema_template() == template  # made once
    import sqlite3

    con = sqlite3.connect(f"{template.as_uri()}?mode=ro", uri=True)
    assert con.execute("SELECT count(*) FROM experiments").fetchone() == (0,)  # MLflow adds Default on open
    assert con.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)  # migrated to the head
    con.close()
    db = tmp_path / "results" / "mlflow.db"
    tracker = tracking.Tracker(f"sqlite:///{db}", str(tmp_path / "results" / "art"), "exp")
    exps = {e.name: e for e in tracker.client.search_experiments()}
    assert set(exps) == {"Default", "exp"}
    assert exps["Default"].artifact_location == str(tmp_path / "mlruns" / "0")
    assert exps["exp"].artifact_location == (tmp_path / "results" / "art").as_uri()
    run = tracker.client.create_run(tracker.experiment_id)
    tracker.client.log_metric(run.info.run_id, "test/acc", 0.5)
    assert MlflowClient(f"sqlite:///{db}").get_run(run.info.run_id).data.metrics == {"test/acc": 0.5}
