"""The MLflow UI: served on loopback from edgebench's store, and the sweep's runs render in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from edgebench import ui


def _get(url: str, data: dict | None = None) -> bytes:
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def test_ui_shows_the_sweep(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run([sys.executable, "-m", "edgebench", "-m", "data=digits", "trainer.max_epochs=2",
                          "trainer.batch_size=32", "measure.latency=false", "trainer.progress_bar=none", "seed=0,1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    cmd = ui.command(uri, tmp_path / "results" / "mlartifacts", 5000)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"  # loopback only
    with ui.serve(uri, tmp_path / "results" / "mlartifacts") as base:
        exps = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/experiments/search", {"max_results": 10}))
        exp_id = next(e["experiment_id"] for e in exps["experiments"] if e["name"] == "edgebench")
        runs = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id]}))["runs"]
        names = {r["info"]["run_name"] for r in runs}
        assert {"lenet_300_100-digits-none-host seed=0", "lenet_300_100-digits-none-host seed=1"} <= names
        children = [r["info"]["run_id"] for r in runs
                    if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
        assert len(children) == 2

        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")

        def render(page: str) -> str:
            return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                   "--virtual-time-budget=30000", "--window-size=1600,1000", "--dump-dom",
                                   f"{base}/#/{page}"], capture_output=True, text=True, timeout=180).stdout

        runs_page = render(f"experiments/{exp_id}/runs")  # the runs table: the sweep's parent run is listed
        assert "sweep sw-" in runs_page
        # the sweep's two jobs compared side by side: their names and the contract's metrics are on the page
        ids = urllib.parse.quote(json.dumps(children))
        compare = render(f"compare-runs?runs={ids}&experiments={urllib.parse.quote(json.dumps([exp_id]))}")
        assert "lenet_300_100-digits-none-host" in compare
        assert "test/acc" in compare and "size/bytes_artifact" in compare
