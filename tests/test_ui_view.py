"""What a user sees in the MLflow UI, as a fresh browser renders it: the link a run prints and the page
``python -m edgebench.ui`` prints open the runs table (not MLflow 3's GenAI overview) with the metrics that answer
the question shown as columns, no clicking."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from edgebench import tracking, ui

# the metric columns of edgebench's view (tracking.VIEW_COLUMNS) that a dense run without latency has, all on a
# 1600 px wide screen (the run's export and device come next, a scroll to the right)
COLUMNS = ["test/acc", "delta/acc", "size/bytes_artifact", "size/compression_ratio", "device/fits"]
# MLflow's GenAI overview: 3.17 shows trace charts, 3.18 an empty-state "send your first trace" guide
GENAI = ["Detect Issues", "Token Usage", "Tokens per Trace", "Send your first trace", "Unlocks with your first trace"]


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """One digits run through the CLI: its folder and what it printed."""
    where = tmp_path_factory.mktemp("ui_view")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    from tests import cli

    out = cli.run(["data=digits", "trainer.max_epochs=1", "measure.latency=false", "trainer.progress_bar=none"],
                  where, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return where, out.stdout


def test_a_run_prints_the_link_to_its_runs_table(one_run):
    where, stdout = one_run
    urls = re.findall(r"browse to (http://127\.0\.0\.1:5000/\S+)", stdout)
    assert len(urls) == 1, stdout[-2000:]
    assert "/runs?viewStateShareKey=edgebench&workflowType=machine_learning" in urls[0]


def test_the_view_is_a_tag_mlflow_reads(one_run):
    from mlflow.tracking import MlflowClient

    where, _ = one_run
    exp = MlflowClient(f"sqlite:///{where}/results/mlflow.db").get_experiment_by_name("edgebench")
    view = json.loads(exp.tags["mlflow.sharedViewState.edgebench"])  # the envelope MLflow's UI parses
    assert isinstance(view["name"], str) and isinstance(view["createdAt"], int)
    assert json.loads(view["state"])["selectedColumns"] == tracking.VIEW_COLUMNS


def _run_name(where) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{where}/results/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("edgebench").experiment_id])
    return run.info.run_name


def test_edgebench_ui_and_the_printed_link_open_the_runs_table_with_its_columns(one_run, render_page):
    where, stdout = one_run
    port = ui.free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = subprocess.Popen([sys.executable, "-m", "edgebench.ui", "--port", str(port)], cwd=where, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = ""
        while server.poll() is None and not line.startswith("MLflow UI on"):  # printed once the server answers
            line = server.stdout.readline()  # (the server's own lines share the output)
        assert f"MLflow UI on http://127.0.0.1:{port}/#/experiments/" in line, (line, server.poll())
        page = line.split()[3]
        printed = re.search(r"browse to (\S+)", stdout).group(1).replace("127.0.0.1:5000", f"127.0.0.1:{port}")
        assert page == printed  # the run and edgebench.ui agree
        text = render_page(page)
        assert "Run Name" in text and "Show more columns" in text, text[:2000]  # the runs table
        for column in COLUMNS:
            assert column in text, (column, text[:3000])
        assert not [g for g in GENAI if g in text], text[:2000]
        assert _run_name(where) in text
        # without the link, MLflow 3.17 and 3.18 open a new browser on the GenAI overview whatever the
        # experiment's kind (its sidebar switch decides): documented in docs/mlflow.md, checked here so the
        # note stays true
        exp_id = page.split("/#/experiments/")[1].split("/")[0]
        bare = render_page(f"http://127.0.0.1:{port}/#/experiments/{exp_id}")
        assert [g for g in GENAI if g in bare], bare[:2000]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        deadline = time.time() + 30
        while server.poll() is None and time.time() < deadline:
            time.sleep(0.2)
