"""The MLflow UI: served on loopback from edgebench's store, and the sweep's runs render in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from edgebench import ui
from edgebench.tracking import ui_page


def _get(url: str, data: dict | None = None) -> bytes:
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data else None,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def test_ui_shows_the_sweep(digits_seed_sweep, render_page):
    tmp_path, out = digits_seed_sweep  # a two-job sweep (seed=0,1) through the CLI, shared with test_sweep.py
    assert out.returncode == 0, out.stderr[-3000:]
    uri = f"sqlite:///{tmp_path}/results/mlflow.db"
    cmd = ui.command(uri, tmp_path / "results" / "mlartifacts", 5000)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"  # loopback only
    with ui.serve(uri, tmp_path / "results" / "mlartifacts") as base:
        exps = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/experiments/search", {"max_results": 10}))
        exp_id = next(e["experiment_id"] for e in exps["experiments"] if e["name"] == "edgebench")
        runs = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id]}))["runs"]
        children = [r["info"]["run_id"] for r in runs
                    if any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
        assert len(children) == 2
        names = sorted(r["info"]["run_name"] for r in runs if r["info"]["run_id"] in children)
        assert ["seed=0" in names[0], "seed=1" in names[1]] == [True, True] and all("lenet_300_100" in n for n in names)

        def render(page: str) -> str:
            return render_page(f"{base}/#/{page}")

        runs_page = render(f"experiments/{exp_id}/runs?workflowType=machine_learning")  # the sweep parent is listed
        assert "sweep sw-" in runs_page
        # the experiment's page, as edgebench.ui and the end of a sweep print it, opens on the runs table (MLflow 3's
        # UI would otherwise show the empty GenAI overview); the sweep's link lists only that sweep's runs
        exp = json.loads(_get(f"{base}/ajax-api/2.0/mlflow/experiments/get?experiment_id={exp_id}"))["experiment"]
        assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in exp["tags"]
        child = next(r for r in runs if r["info"]["run_id"] in children)
        sid = next(t["value"] for t in child["data"]["tags"] if t["key"] == "sweep_id")
        home = render_page(ui_page(base, exp_id))
        assert f"sweep {sid}" in home and "Token Usage" not in home  # the runs table (jobs folded under the parent)
        sweep_page = render_page(ui_page(base, exp_id, sid))
        assert names[0] in sweep_page and names[1] in sweep_page  # the sweep's jobs, listed
        assert "test/acc" in sweep_page and "size/bytes_artifact" in sweep_page  # edgebench's columns
        # the sweep's two jobs compared side by side: their names and the contract's metrics are on the page
        ids = urllib.parse.quote(json.dumps(children))
        compare = render(f"compare-runs?runs={ids}&experiments={urllib.parse.quote(json.dumps([exp_id]))}")
        assert names[0] in compare and names[1] in compare
        # MLflow 3.17's compare page leaves out test/* (and the curves) of runs made since issue 25's merges although
        # the run has them (REST runs/get returns them; cause open, see the note): the runs table shows them
        assert "delta/acc" in compare and "size/bytes_artifact" in compare


def _tracked_store(tmp_path) -> str:
    from edgebench.tracking import Tracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    Tracker(uri, str(tmp_path / "art"), "edgebench")
    return uri


def _descendants(pid: int) -> set[int]:
    """Every live (not zombie) process below ``pid``, from /proc."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parent[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p}
        todo += list(kids - found)
        found |= kids
    return found


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(p)
    return out


def test_ui_stops_the_server_and_its_workers_on_sigterm(tmp_path):
    uri, port = _tracked_store(tmp_path), ui.free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "edgebench.ui", "--tracking-uri", uri, "--artifact-dir",
                             str(tmp_path / "art"), "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    group: set[int] = set()
    try:
        deadline = time.time() + 120
        while True:
            try:
                if _get(f"http://127.0.0.1:{port}/health") == b"OK":
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, "the UI did not come up"
            time.sleep(0.5)
        time.sleep(3)  # let the server fork its workers
        group = _descendants(proc.pid)
        assert len(group) >= 2  # mlflow, uvicorn and its workers
        pgids = {os.getpgid(p) for p in _alive(group)}
        assert os.getpgid(proc.pid) not in pgids  # the server runs in its own process group
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert "MLflow UI on http://127.0.0.1:" in proc.stdout.read()
        time.sleep(1)
        assert not _alive(group), "processes of the MLflow server outlived edgebench.ui"
        for pgid in pgids:
            with pytest.raises(ProcessLookupError):
                os.killpg(pgid, 0)
        assert not ui.port_in_use(port)
    finally:
        for p in _alive(group | {proc.pid}):
            os.kill(p, signal.SIGKILL)


def test_ui_refuses_a_busy_port(tmp_path):
    (tmp_path / "mlflow.db").touch()  # an empty store is a valid (new) store
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "edgebench.ui", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                              "--port", str(port)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert f"port {port}" in out.stderr and "--port" in out.stderr
    assert "MLflow UI on" not in out.stdout


def test_ui_exits_non_zero_when_the_server_fails(tmp_path, monkeypatch, capsys):
    (tmp_path / "mlflow.db").touch()
    monkeypatch.setattr(ui, "command", lambda *a, **k: [sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(SystemExit) as e:
        ui.main(["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--port", str(ui.free_port())])
    assert e.value.code == 3
    out = capsys.readouterr()
    assert "exit status 3" in out.err and "MLflow UI on" not in out.out  # no URL for a server that never served
