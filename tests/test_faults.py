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


from tests import cli  # noqa: E402
from test_run_records import _cli, _env  # noqa: E402  the CLI helpers of the run-record tests


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
    return cli.start(args, cwd, env=_env())  # python -m edgebench, forked preloaded (SIGINT at its default)


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
        done = [r for r in runs if r.data.tags.get("chain.step") == "0" and r.info.status == "FINISHED"]
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


# --- 11: one line where a traceback was printed ---

def test_an_empty_image_folder_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    out = _cli([*FAST, "data=image_folder", f"data.root={tmp_path / 'empty'}"], cwd=tmp_path, timeout=300)
    line = _one_line_error(out, f"data.root={tmp_path / 'empty'}")
    assert "no class folders" in line and "one sub-folder of images per class" in line, line


def test_a_negative_seed_is_one_line(tmp_path):
    out = _cli([*FAST, "seed=-1"], cwd=tmp_path, timeout=300)
    _one_line_error(out, "seed: must be in [0, 4294967295]")
    _, runs = _runs(f"sqlite:///{tmp_path}/results/mlflow.db")
    assert runs == []


def _damage(db: Path) -> None:
    """Overwrite a page in the middle of a valid SQLite file with random bytes (one that SQLite then reports)."""
    import random
    import sqlite3

    data = bytearray(db.read_bytes())
    page = 4096
    pages = len(data) // page
    rng = random.Random(0)
    for p in [pages // 2, *range(2, pages)]:
        bad = bytearray(data)
        bad[p * page:(p + 1) * page] = bytes(rng.getrandbits(8) for _ in range(page))
        db.write_bytes(bad)
        con = sqlite3.connect(db)
        try:
            ok = con.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        except sqlite3.DatabaseError:
            ok = False
        finally:
            con.close()
        if not ok:
            return
    raise AssertionError("no page of the store could be damaged visibly")


def test_a_garbage_page_in_the_store_is_one_line(tmp_path, mlflow_template_db):
    (tmp_path / "results").mkdir()
    db = tmp_path / "results" / "mlflow.db"
    shutil.copy(mlflow_template_db, db)
    _damage(db)
    out = _cli(FAST, cwd=tmp_path, timeout=300)
    line = _one_line_error(out, f"MLflow store {db} is damaged")
    assert "move it aside" in line and ".recover" in line, line


def test_results_that_cannot_be_written_is_one_line(tmp_path):
    # root writes through chmod, so a file where the results folder should be stands for a read-only folder
    (tmp_path / "results").write_text("not a folder")
    out = _cli(FAST, cwd=tmp_path, timeout=300)
    line = _one_line_error(out, f"{tmp_path / 'results'}")
    assert "not a folder" in line and "paths.results_dir" in line, line
    if os.geteuid() == 0:
        return
    (tmp_path / "results").unlink()
    (tmp_path / "results").mkdir(mode=0o500)  # read-only for its owner
    try:
        out = _cli(FAST, cwd=tmp_path, timeout=300)
        line = _one_line_error(out, f"{tmp_path / 'results'}")
        assert "not writable" in line and "paths.results_dir" in line, line
    finally:
        (tmp_path / "results").chmod(0o700)


def test_a_cache_folder_under_a_file_fails_the_run_in_one_line(tmp_path):
    (tmp_path / "blocker").write_text("a file")
    out = _cli([*FAST, f"paths.store_dir={tmp_path / 'blocker' / 'cache'}"], cwd=tmp_path, timeout=300)
    line = _one_line_error(out, f"{tmp_path / 'blocker'} is a file where a folder should be")
    assert "move it aside" in line, line
    _, runs = _runs(f"sqlite:///{tmp_path}/results/mlflow.db")
    assert [r.info.status for r in runs] == ["FAILED"]
    assert f"{tmp_path / 'blocker'} is a file" in runs[0].data.tags["status_reason"]


def test_a_full_disk_fails_the_run_naming_the_path(make_cfg, monkeypatch):
    import errno

    from edgebench import pipeline, store

    real = store.atomic_write
    full = []

    def no_space(path, write):
        if "baselines" in str(path):  # the dense baseline's entry in the store, written during the run
            full.append(str(path))
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write)

    monkeypatch.setattr(store, "atomic_write", no_space)
    cfg = make_cfg(*FAST)
    with pytest.raises(OSError):
        pipeline.run(cfg)
    assert full
    from edgebench import tracking

    client, runs = _runs(cfg.paths.mlflow_tracking_uri)
    assert len(runs) == 1 and runs[0].info.run_id == tracking.LAST_RUN_ID
    assert runs[0].info.status == "FAILED"
    reason = runs[0].data.tags["status_reason"]
    assert f"no space left on the disk of {full[0]}" in reason, reason
    from edgebench.__main__ import user_message

    try:
        raise OSError(errno.ENOSPC, "No space left on device", full[0])
    except OSError as e:
        assert user_message(e).startswith(f"no space left on the disk of {full[0]}")


# full while MLflow writes to its store (slow-marked: the in-process full-disk test above covers the message) / while a
# file is written
@pytest.mark.parametrize("left_kib", [pytest.param(64, marks=pytest.mark.slow), 300])
def test_a_really_full_disk_fails_the_run_in_one_line(tmp_path, mlflow_template_db, left_kib):
    """results/ on a 4 MiB tmpfs filled up to a few KiB: the run fails where it first writes a file, is closed as
    FAILED (the store is on the same full disk: the run's reserve is given back to close it) and one line is printed."""
    results = tmp_path / "results"
    results.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(results)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        db = results / "mlflow.db"
        shutil.copy(mlflow_template_db, db)
        free = shutil.disk_usage(results).free
        (results / "filler").write_bytes(b"\0" * (free - (1 << 20) - left_kib * 1024))  # the reserve and some
        out = _cli(FAST, cwd=tmp_path, timeout=300)
        line = _one_line_error(out, f"no space left on the disk of {results}")
        assert len(out.stderr.splitlines()) < 10, out.stderr[-3000:]
        _, runs = _runs(f"sqlite:///{db}")
        assert len(runs) == 1 and runs[0].info.status == "FAILED", [r.info.status for r in runs]
        assert "no space left on the disk of" in runs[0].data.tags["status_reason"]
    finally:
        subprocess.run(["umount", "-l", str(results)], capture_output=True)  # lazy: the test still holds the store open


# --- 12: a wait on another process's store lock is said, and ends; an interrupted export leaves nothing behind ---

def _hold(lock: Path):
    """Another process holding ``lock`` (as edgebench's store does: an exclusive flock) until it is killed."""
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(600)\n")
    lock.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_wait_on_a_store_lock_is_said_and_times_out(make_cfg, tmp_path):
    from edgebench import cache
    from edgebench.config import validate

    cfg = make_cfg(*FAST, "store_lock_timeout_s=8")
    entry = cache.entry_dir(cfg.paths.store_dir, validate(cfg))
    lock = Path(f"{entry}.lock")
    holder = _hold(lock)
    try:
        t = time.time()
        out = _cli([*FAST, "store_lock_timeout_s=8"], cwd=tmp_path, timeout=300)
        waited = time.time() - t
    finally:
        holder.kill()
        holder.wait()
    # after ~5 s: what it waits for, which lock, that another process (by pid) is making it
    notice = [line for line in out.stderr.splitlines() if "waiting for" in line]
    assert notice, out.stderr[-3000:]
    assert str(entry) in notice[0] and str(lock) in notice[0] and f"pid {holder.pid}" in notice[0], notice[0]
    assert "baseline store entry" in notice[0], notice[0]
    line = _one_line_error(out, f"gave up after 8 s waiting for {lock}")
    assert "store_lock_timeout_s" in line and f"pid {holder.pid}" in line, line
    assert waited < 120
    client, runs = _runs(f"sqlite:///{tmp_path}/results/mlflow.db")
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert "gave up after 8 s" in runs[0].data.tags["status_reason"]


def test_store_lock_timeout_is_checked(make_cfg):
    from edgebench.config import ConfigError, validate

    with pytest.raises(ConfigError, match=r"store_lock_timeout_s: must be > 0, got 0"):
        validate(make_cfg("data=digits", "store_lock_timeout_s=0"))


def test_an_interrupted_export_leaves_no_artifact_folder_and_no_lock(make_cfg, tmp_path, monkeypatch):
    from edgebench import export, pipeline, tracking

    real = export.resolve
    started = []

    def resolve(*a, **k):
        exp = real(*a, **k)
        if exp is None:
            return exp

        class Interrupted:  # the real exporter's attributes; its call writes part of the file, then Ctrl-C
            def __getattr__(self, name):
                return getattr(exp, name)

            def __call__(self, model, example, out_dir, spec):
                Path(out_dir).mkdir(parents=True)
                (Path(out_dir) / "model.onnx").write_bytes(b"\0" * 100)
                started.append(Path(out_dir))
                raise KeyboardInterrupt

        return Interrupted()

    monkeypatch.setattr(export, "resolve", resolve)
    cfg = make_cfg(*FAST)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg)
    assert started and not started[0].exists(), "the partial artifact/ folder is removed"
    assert not started[0].parent.exists(), "and the run's folder it left empty"
    client, runs = _runs(cfg.paths.mlflow_tracking_uri)
    assert [r.info.status for r in runs] == ["KILLED"] and runs[0].info.run_id == tracking.LAST_RUN_ID
    assert list(tmp_path.rglob("*.lock")) == [], "every lock this process held is released and removed"
    assert list(tmp_path.rglob("*.reserve-*")) == []


# --- 14: a zoo teacher's training memory is estimated and checked against the free memory before it trains ---

def test_a_teacher_larger_than_free_memory_is_warned_about(make_cfg, monkeypatch):
    import logging

    import torch

    from edgebench import pipeline, training
    from edgebench.config import ModelConfig
    from edgebench.methods import distillation
    from edgebench.models import build_model

    monkeypatch.setattr(distillation, "free_memory_bytes", lambda: 100_000)  # 0.1 MB free
    events = []
    real_fit = training.fit

    def fit(net, *a, **k):
        events.append("train")
        return real_fit(net, *a, **k)

    class Record(logging.Handler):
        def emit(self, record):
            events.append(record.getMessage())

    monkeypatch.setattr(training, "fit", fit)
    handler = Record(logging.WARNING)
    logging.getLogger("edgebench.methods.distillation").addHandler(handler)
    try:
        cfg = make_cfg(*FAST, "model=lenet5", "+method=distillation", "method.teacher.model=lenet_300_100",
                       "method.epochs=1", "trainer.batch_size=64")
        res = pipeline.run(cfg)
    finally:
        logging.getLogger("edgebench.methods.distillation").removeHandler(handler)
    warned = [i for i, e in enumerate(events) if e != "train"]
    assert len(warned) == 1, events
    w = events[warned[0]]
    # the dense baseline trains first; the warning comes before the teacher trains, then the student
    assert events[:warned[0]] == ["train"] and events[warned[0] + 1:] == ["train", "train"], events
    teacher = build_model(ModelConfig(name="lenet_300_100"), (1, 8, 8), 10)
    est = distillation.teacher_training_bytes(teacher, torch.zeros(1, 1, 8, 8), 64, "adam")
    n = sum(p.numel() for p in teacher.parameters())
    assert (est["weights"], est["gradients"], est["optimizer"]) == (4 * n, 4 * n, 8 * n) and est["activations"] > 0
    assert est["total"] == sum(v for k, v in est.items() if k != "total") > 100_000
    assert "teacher lenet_300_100" in w and f"{est['total'] / 1e6:.1f} MB" in w and "0.1 MB of memory free" in w, w
    assert "batch size 64" in w, w
    assert res.tags["distill.teacher_memory"] == f"{est['total']} B estimated, 100000 B free: may not fit"
