"""edgebench.report.load_runs' options for a study's report (top-level runs only, runs carrying a tag, an experiment
not made yet), and the one way the report layer writes a mean with its interval and strict JSON."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from edgebench.report import load_runs
from edgebench.report.render import fmt_metric, mean_ci_text, pm, pt, strict_json


@pytest.fixture
def store(tmp_path, mlflow_template_db):
    """A study's run with a chain step's child run (which carries its parent's tags), and a run without the tag."""
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template_db, db)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    exp = client.create_experiment("study-x", artifact_location=(tmp_path / "art").as_uri())
    tags = {"study": "x", "study.arm": "chain"}
    parent = client.create_run(exp, tags=tags, run_name="chain")
    client.log_param(parent.info.run_id, "seed", 1)
    child = client.create_run(exp, tags={**tags, "mlflow.parentRunId": parent.info.run_id,
                                         "edgebench.child": "true"}, run_name="step 0")
    plain = client.create_run(exp, run_name="by hand")
    for r in (child, plain, parent):
        client.log_metric(r.info.run_id, "test/acc", 0.9)
        client.set_terminated(r.info.run_id)
    return uri, {"parent": parent.info.run_id, "child": child.info.run_id, "plain": plain.info.run_id}


def test_top_level_runs_carrying_a_tag(store):
    uri, ids = store
    every = load_runs(uri, "study-x")
    assert set(every["run_id"]) == set(ids.values())  # by default a child run is a row (the report judges it)
    top = load_runs(uri, "study-x", children=False)
    assert set(top["run_id"]) == {ids["parent"], ids["plain"]}
    study = load_runs(uri, "study-x", children=False, tagged=("study.arm",))
    assert list(study["run_id"]) == [ids["parent"]] and study.loc[0, "seed"] == 1
    assert list(study.index) == [0]
    assert load_runs(uri, "study-x", tagged=("no.such.tag",)).empty


def test_an_experiment_not_made_yet(store):
    uri, _ = store
    assert load_runs(uri, "study-y", missing_ok=True).empty
    with pytest.raises(SystemExit, match="no MLflow experiment 'study-y'"):
        load_runs(uri, "study-y")


def test_one_way_to_write_a_mean_and_its_interval():
    assert pm(0.89524, 0.00081) == "0.8952 ± 0.0008"
    assert pm(0.8952, np.nan) == "0.8952"  # one replicate: no interval, never ± nan
    assert pm(0.8952, 0.0) == "0.8952 ± 0.0000" and pm(0.8952, 0.0, zero=False) == "0.8952"
    assert pm(12.345, 0.5, "{:.4g}", "{:.2g}") == "12.35 ± 0.5"
    assert pt(-0.02, 0.0041) == "-2.00 ± 0.41" and pt(np.nan) == "" and pt(0.01, None) == "+1.00"
    assert mean_ci_text({0: 1_068_036.0, 1: 1_068_036.0}, "size/bytes_artifact") == "1,068,036"
    assert mean_ci_text({0: 0.5}, "test/acc") == "0.5000" and mean_ci_text({}, "test/acc") == "n/a"
    assert mean_ci_text({0: 0.8, 1: 0.9}, "test/acc").startswith("0.8500 ± ")
    assert fmt_metric(0.0235, "latency/host_p50_ms") == "0.0235" and fmt_metric(math.nan, "x") == "n/a"


def test_strict_json_has_no_nan():
    doc = strict_json({"half": math.nan, "p": [1.0, math.inf, (2, math.nan)], "n": 2})
    assert doc == {"half": None, "p": [1.0, None, [2, None]], "n": 2}
    json.dumps(doc, allow_nan=False)
