"""Records you can trust: a store that is not MLflow's is named in one line, the experiment is a model-training
experiment, the run summary shows a noisy latency, and --help is current."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from types import SimpleNamespace

import pytest
from rich.console import Console

from edgebench.config import ConfigError
from edgebench.summary import print_summary
from edgebench.tracking import Tracker


def _garbage(tmp_path):
    db = tmp_path / "results" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(bytes(range(256)) * 16)  # 4 kB that are not an SQLite file
    return db


def _env():
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def test_tracker_names_a_store_that_is_not_mlflow(tmp_path):
    db = _garbage(tmp_path)
    with pytest.raises(ConfigError) as e:
        Tracker(f"sqlite:///{db}", str(tmp_path / "art"), "edgebench")
    msg = str(e.value)
    assert str(db) in msg and "not an MLflow store" in msg and "\n" not in msg
    assert "mlflow_tracking_uri" in msg and "move it aside" in msg

    other = tmp_path / "other.db"  # an SQLite database of something else: refused too, not written into
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(ConfigError, match="without MLflow's tables: songs"):
        Tracker(f"sqlite:///{other}", str(tmp_path / "art"), "edgebench")


@pytest.mark.parametrize("module", ["edgebench.report", "edgebench.ui"])
def test_report_and_ui_name_a_store_that_is_not_mlflow(tmp_path, module):
    db = _garbage(tmp_path)
    out = subprocess.run([sys.executable, "-m", module, "--tracking-uri", f"sqlite:///{db}"], cwd=tmp_path,
                         env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert str(db) in out.stderr and "not an MLflow store" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_experiment_is_a_model_training_experiment(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    t = Tracker(uri, str(tmp_path / "art"), "edgebench")
    client = MlflowClient(uri)
    assert client.get_experiment(t.experiment_id).tags.get("mlflow.experimentKind") == "custom_model_development"
    # an experiment made before (without the tag) gets it when edgebench opens it
    old = client.create_experiment("older")
    Tracker(uri, str(tmp_path / "art"), "older")
    assert client.get_experiment(old).tags.get("mlflow.experimentKind") == "custom_model_development"


def _result(noisy: float) -> SimpleNamespace:
    metrics = {"test/acc": 0.9, "size/params": 266610, "compute/macs": 266200, "latency/host_p50_ms": 0.04,
               "latency/host_p90_ms": 0.09, "latency/host_iqr_ms": 0.02, "latency/host_threads": 1,
               "latency/host_noisy": noisy}
    tags = {"model": "lenet_300_100", "data": "digits", "method": "none", "device": "host"}
    return SimpleNamespace(metrics=metrics, tags=tags, device_report=None, baseline_from_cache=False, run_id="abc123")


def test_summary_shows_a_noisy_latency_and_what_it_means():
    console = Console(record=True, width=200)
    print_summary(_result(1.0), "mlflow ui --backend-store-uri sqlite:///x.db", console)
    text = console.export_text()
    assert "[noisy]" in text
    assert "IQR/median 0.50" in text and "measure.max_noise" in text
    assert "open the MLflow UI: mlflow ui" in text  # a single run prints the UI command

    quiet = Console(record=True, width=200)
    print_summary(_result(0.0), "mlflow ui", quiet)
    assert "noisy" not in quiet.export_text()


def test_help_is_current():
    out = subprocess.run([sys.executable, "-m", "edgebench", "--help"], env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(later)" not in out.stdout and "none yet" not in out.stdout
    assert "latency" in out.stdout and "python -m edgebench.report" in out.stdout


def test_the_move_aside_hint_quotes_a_path_with_a_space(tmp_path):
    import shlex

    folder = tmp_path / "my store $(touch pwned)"
    folder.mkdir()
    db = folder / "mlflow.db"
    db.write_bytes(b"not sqlite at all" * 64)
    with pytest.raises(ConfigError) as e:
        Tracker(f"sqlite:///{db}", str(tmp_path / "art"), "edgebench")
    hint = str(e.value).split("`")[1]  # the suggested command, between backquotes
    assert shlex.split(hint) == ["mv", str(db), f"{db}.bad"]
