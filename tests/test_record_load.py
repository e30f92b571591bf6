"""Record.load: a finished run read back for a report (params, metrics, tags, its child runs), one run at a time."""

from __future__ import annotations

import shutil

import pytest
from mlflow.tracking import MlflowClient

from edgebench.config import ConfigError
from edgebench.record import CHILD_TAG, Record


def _store(tmp_path, template):
    db = tmp_path / "mlflow.db"
    shutil.copy(template, db)
    return f"sqlite:///{db}"


def test_a_run_is_read_back_with_its_children(tmp_path, mlflow_template_db):
    uri = _store(tmp_path, mlflow_template_db)
    client = MlflowClient(uri)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(exp, tags={"method": "magnitude_pruning->ptq_int8", "study.arm": "chain"},
                               run_name="chain s0")
    pid = parent.info.run_id
    client.log_param(pid, "seed", 0)
    client.log_metric(pid, "test/acc", 0.5, step=0)
    client.log_metric(pid, "test/acc", 0.9, step=1)  # the last value is the run's figure
    child = client.create_run(exp, tags={"mlflow.parentRunId": pid, CHILD_TAG: "true", "pipeline.step": "0"},
                              run_name="step 0 magnitude_pruning")
    client.log_metric(child.info.run_id, "size/sparsity", 0.9)
    client.set_terminated(child.info.run_id)
    other = client.create_run(exp, run_name="another run")  # not a child: never read back with the parent
    client.set_terminated(other.info.run_id)
    client.set_terminated(pid)

    run = Record.load(pid, uri)
    assert (run.run_id, run.name, run.status, run.experiment_id) == (pid, "chain s0", "FINISHED", exp)
    assert run.params == {"seed": "0"} and run.metrics == {"test/acc": 0.9}
    assert run.tags["study.arm"] == "chain" and not run.child and run.parent_run_id is None
    assert run.start_time is not None and run.end_time >= run.start_time
    assert [c.run_id for c in run.children] == [child.info.run_id]
    step = run.children[0]
    assert step.child and step.parent_run_id == pid and step.metrics == {"size/sparsity": 0.9}
    assert step.name == "step 0 magnitude_pruning" and step.children == []
    assert Record.load(pid, uri, children=False).children == []


def test_a_missing_run_or_store_is_one_line_and_creates_nothing(tmp_path, mlflow_template_db):
    uri = _store(tmp_path, mlflow_template_db)
    with pytest.raises(ConfigError, match="no run 0123456789abcdef0123456789abcdef in MLflow store"):
        Record.load("0123456789abcdef0123456789abcdef", uri)
    with pytest.raises(ConfigError, match="no MLflow store at"):
        Record.load("0123456789abcdef0123456789abcdef", f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()
