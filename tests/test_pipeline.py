"""End to end: a real run on bundled data, logged to MLflow, with the baseline cache and failures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from edgebench import cache, pipeline, store, training
from edgebench.config import validate
from tests import cli

QUICK = ["data=digits", "model=lenet_300_100", "trainer.max_epochs=15", "trainer.batch_size=32"]
CONTRACT = ["test/acc", "test/loss", "val/acc", "val/loss", "train/loss", "size/params",
            "size/params_nonzero", "size/bytes_fp32", "compute/macs", "baseline/test_acc", "delta/acc",
            "size/sparsity", "size/bytes_artifact", "size/bytes_gzip", "size/bytes_sparse", "compute/macs_nonzero",
            "memory/peak_activation_bytes", "latency/host_p50_ms", "latency/host_p90_ms", "latency/host_iqr_ms",
            "latency/host_threads", "device/fits", "device/flash_bytes", "device/ram_bytes"]


def _search(cfg):
    mlflow.set_tracking_uri(cfg.paths.mlflow_tracking_uri)
    try:
        return mlflow.search_runs(experiment_names=[cfg.experiment_name], order_by=["start_time ASC"])
    finally:
        mlflow.set_tracking_uri(None)


def test_dense_run_on_digits_logs_the_contract(make_cfg):
    cfg = make_cfg(*QUICK)
    res = pipeline.run(cfg)
    assert res.metrics["test/acc"] > 0.9
    df = _search(cfg)
    assert len(df) == 1
    row = df.iloc[0]
    assert row.status == "FINISHED" and row.run_id == res.run_id
    for key in CONTRACT:
        assert f"metrics.{key}" in df.columns and row[f"metrics.{key}"] == row[f"metrics.{key}"], key
    assert row["metrics.test/acc"] == pytest.approx(res.metrics["test/acc"])
    assert row["metrics.size/params"] == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert row["metrics.compute/macs"] == 64 * 300 + 300 * 100 + 100 * 10
    assert row["tags.model"] == "lenet_300_100" and row["tags.data"] == "digits"
    assert row["tags.method"] == "none" and row["tags.device"] == "host"
    assert row["tags.edgebench.version"] and row["tags.git_sha"]
    assert row["params.trainer.max_epochs"] == "15" and row["params.seed"] == "0"
    # per-epoch curves, one point per epoch
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    hist = client.get_metric_history(res.run_id, "val/acc")
    assert [m.step for m in hist] == list(range(15))
    assert len(client.get_metric_history(res.run_id, "train/loss")) == 15
    # the resolved config is an artifact
    local = client.download_artifacts(res.run_id, "config.yaml", str(Path(cfg.paths.root_dir) / "dl"))
    assert "lenet_300_100" in Path(local).read_text()
    # the deployable artifact is logged, and its logged size is the file's size
    files = {f.path: f.file_size for f in client.list_logged_model_artifacts(res.model_id)}  # the run's LoggedModel
    assert "model.onnx" in files
    onnx_files = [size for path, size in files.items() if path.startswith("model.onnx")]  # .onnx (+ .data)
    assert row["metrics.size/bytes_artifact"] == sum(onnx_files)
    assert "MLmodel" in files  # in MLflow's model format
    assert row["tags.export.exporter"] in ("dynamo", "torchscript") and row["tags.device.fit"] == "fits"


def test_run_on_a_device_profile_that_does_not_fit(make_cfg, monkeypatch):
    """An fp32 model on an int8-only target does not fit, and gets no made-up estimate (the Coral with the Edge TPU
    compiler present; without it, the next test)."""
    import shutil

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: "/opt/edgetpu_compiler" if name == "edgetpu_compiler"
                        else real(name, *a, **k))
    res = pipeline.run(make_cfg(*QUICK, "trainer.max_epochs=1", "device=coral_dev_board", "measure.latency=false",
                                "device.runtime=tflite_edgetpu", "export=onnx"))
    assert res.metrics["device/fits"] == 0.0
    assert "device/latency_ms_est" not in res.metrics  # no fp32 peak on the Edge TPU: no made-up estimate
    assert "latency/host_p50_ms" not in res.metrics
    assert not res.device_report.fits and "int8 only" in " ".join(res.device_report.reasons)


def test_an_fp32_model_on_the_coral_without_its_compiler_runs_on_the_cpu(make_cfg):
    import shutil

    if shutil.which("edgetpu_compiler"):
        pytest.skip("edgetpu_compiler is installed here")
    res = pipeline.run(make_cfg(*QUICK, "trainer.max_epochs=1", "device=coral_dev_board", "measure.latency=false"))
    assert res.metrics["device/fits"] == 1.0 and res.tags["device.runtime"] == "tflite"
    assert "edgetpu_compiler" in res.tags["device.estimate_note"]
    assert res.metrics["device/latency_calibrated"] == 0.0 and res.tags["device.calibration"] == "uncalibrated"


def test_the_edge_tpu_is_refused_before_training_without_its_compiler(make_cfg, tmp_path):
    import shutil

    if shutil.which("edgetpu_compiler"):
        pytest.skip("edgetpu_compiler is installed here")
    from tests import cli

    out = cli.run(["data=digits", "device=coral_dev_board", "device.runtime=tflite_edgetpu", f"paths.root_dir={tmp_path}"],
              cwd=tmp_path)
    assert out.returncode != 0 and "device.runtime: tflite_edgetpu needs edgetpu_compiler" in out.stderr
    assert not (tmp_path / "results" / "cache").exists()  # nothing trained


def test_run_on_a_microcontroller_profile_estimates(make_cfg):
    res = pipeline.run(make_cfg(*QUICK, "trainer.max_epochs=1", "device=stm32h7", "measure.latency=false"))
    # a float model on a microcontroller: the fp32 TFLite Micro file (export=auto is the device's own format), its
    # arena measured; TFLite Micro runs floats with its reference kernels, which nothing calibrates: no estimate
    assert res.tags["export.name"] == "tflite_micro_fp32" and res.metrics["device/fits"] == 1.0
    assert res.metrics["device/ram_bytes"] == res.metrics["memory/tflm_arena_bytes"] > 0
    assert res.tags["device.ram_source"] == "tflm_arena" and res.tags["device.runtime"] == "tflite_micro+reference"
    assert "device/latency_ms_est" not in res.metrics and "device/energy_mj_est" not in res.metrics
    # the int8 file of the same net gets the calibrated estimate, with its energy
    q = pipeline.run(make_cfg(*QUICK, "trainer.max_epochs=1", "device=stm32h7", "measure.latency=false", "+method=ptq_int8"))
    assert q.tags["export.name"] == "tflite_micro" and q.metrics["device/latency_ms_est"] > 0
    assert q.metrics["device/energy_mj_est"] > 0


def test_second_identical_run_reuses_the_baseline(make_cfg, monkeypatch):
    cfg = make_cfg(*QUICK, "trainer.max_epochs=3")
    first = pipeline.run(cfg)
    assert not first.baseline_from_cache

    def no_training(*a, **k):
        raise AssertionError("the cached baseline must not be retrained")

    monkeypatch.setattr(training, "fit", no_training)
    second = pipeline.run(make_cfg(*QUICK, "trainer.max_epochs=3"))
    assert second.baseline_from_cache
    assert second.metrics["test/acc"] == first.metrics["test/acc"]
    # the cached run still carries the training curves
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    assert len(client.get_metric_history(second.run_id, "val/acc")) == 3
    assert client.get_run(second.run_id).data.tags["baseline.cache_hit"] == "true"


def test_changed_key_retrains(make_cfg):
    a = validate(make_cfg(*QUICK))
    for change in ("seed=1", "trainer.lr=0.01", "model=lenet5", "data.val_fraction=0.2", "trainer.batch_size=64"):
        b = validate(make_cfg(*QUICK, change))
        assert cache.key_hash(cache.baseline_key(a)) != cache.key_hash(cache.baseline_key(b)), change
    # what does not change the weights does not change the key
    c = validate(make_cfg(*QUICK, "trainer.progress_bar=none", "data.root=/elsewhere", "device=host"))
    assert cache.key_hash(cache.baseline_key(a)) == cache.key_hash(cache.baseline_key(c))

    first = pipeline.run(make_cfg(*QUICK, "trainer.max_epochs=2"))
    other = pipeline.run(make_cfg(*QUICK, "trainer.max_epochs=2", "seed=1"))
    assert not first.baseline_from_cache and not other.baseline_from_cache


def test_corrupt_cache_entry_is_retrained(make_cfg):
    cfg = make_cfg(*QUICK, "trainer.max_epochs=2")
    pipeline.run(cfg)
    entry = cache.entry_dir(cfg.paths.store_dir, validate(cfg))
    (entry / "model.pt").write_bytes(b"not a checkpoint")
    again = pipeline.run(make_cfg(*QUICK, "trainer.max_epochs=2"))
    assert not again.baseline_from_cache
    assert list(entry.parent.glob(entry.name + ".corrupt-*")), "the bad entry is kept aside, not deleted"
    third = pipeline.run(make_cfg(*QUICK, "trainer.max_epochs=2"))
    assert third.baseline_from_cache


def test_missing_data_fails_before_any_mlflow_run(make_cfg, tmp_path):
    cfg = make_cfg("data=image_folder", f"data.root={tmp_path / 'no_such_folder'}")
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        pipeline.run(cfg)
    assert len(_search(cfg)) == 0, "an input refused before any work leaves no FAILED run"
    assert not list(Path(cfg.paths.store_dir).glob("baselines/*")), "no cache entry for a failed run"


def test_nan_loss_fails_clearly(make_cfg):
    cfg = make_cfg(*QUICK, "trainer.lr=1e30", "trainer.max_epochs=3", "use_baseline_cache=false")
    with pytest.raises(training.NonFiniteLossError, match="lower trainer.lr"):
        pipeline.run(cfg)
    row = _search(cfg).iloc[0]
    assert row.status == "FAILED" and "NonFiniteLossError" in row["tags.status_reason"]


def _cli(args, cwd, env=None, pythonpath=None):
    e = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    e.update(env or {})
    if pythonpath:
        e["PYTHONPATH"] = pythonpath
    if not pythonpath:  # the installed wheel needs an interpreter of its own
        return cli.run(args, cwd, env=e, timeout=600)
    return subprocess.run([sys.executable, "-m", "edgebench", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=600)


def test_cli_from_another_directory(tmp_path):
    out = _cli([*QUICK, "trainer.max_epochs=2"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "MLflow run id:" in out.stdout and "python -m edgebench.ui --tracking-uri sqlite:///" in out.stdout
    assert (tmp_path / "results" / "mlflow.db").exists()
    assert list((tmp_path / "results" / "cache" / "baselines").iterdir())

    # MLFLOW_TRACKING_URI wins over paths.mlflow_tracking_uri (the same config: its baseline is a store hit)
    db = tmp_path / "elsewhere.db"
    again = _cli([*QUICK, "trainer.max_epochs=2"], cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    assert again.returncode == 0, again.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{db}")
    assert len(client.search_runs([client.get_experiment_by_name("edgebench").experiment_id])) == 1
    home = MlflowClient(f"sqlite:///{tmp_path}/results/mlflow.db")
    assert len(home.search_runs([home.get_experiment_by_name("edgebench").experiment_id])) == 1  # not logged here


@pytest.mark.slow  # builds a wheel and installs it (about a minute)
def test_plain_pip_install(tmp_path):
    """A non-editable install (wheel) finds its configs and runs from an unrelated directory."""
    repo = Path(__file__).resolve().parents[1]
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheel_dir), str(repo)], check=True, timeout=300, cwd=tmp_path)
    whl = next(wheel_dir.glob("edgebench-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(whl)],
                   check=True, timeout=300)
    assert (target / "edgebench" / "conf" / "edgebench.yaml").exists()
    assert (target / "edgebench" / "conf" / "model" / "lenet_300_100.yaml").exists()
    for data in ("mlperf_tiny.json", "graphs.json", "vendor_points.json", "cmsis_nn_cortex_m4.json"):
        assert (target / "edgebench" / "devices" / "data" / data).exists(), data  # the device estimates' data
    packages = {p.parent.relative_to(repo) for p in (repo / "edgebench").rglob("__init__.py")}
    missing = [str(p) for p in packages if not (target / p / "__init__.py").exists()]
    assert not missing, f"packages missing from the wheel (pyproject.toml [tool.setuptools] packages): {missing}"
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    out = _cli([*QUICK, "trainer.max_epochs=1"], cwd=run_dir, pythonpath=str(target))
    assert out.returncode == 0, out.stderr[-3000:]
    assert str(target) in _cli(["--info", "searchpath"], cwd=run_dir, pythonpath=str(target)).stdout


def test_compose_runs_from_python(tmp_path, mlflow_template_db):
    import shutil

    (tmp_path / "results").mkdir()
    shutil.copy(mlflow_template_db, tmp_path / "results" / "mlflow.db")
    cfg = pipeline.compose([*QUICK, "trainer.max_epochs=1", "measure.latency=false"], tmp_path, tmp_path / "out")
    assert cfg.paths.mlflow_tracking_uri == f"sqlite:///{tmp_path}/results/mlflow.db"
    res = pipeline.run(cfg)
    assert res.metrics["test/acc"] > 0.5
    # the run's model is in MLflow's artifact store, its one copy (issue 24 item 15)
    assert list((tmp_path / "results" / "mlartifacts").rglob("model.onnx")) and not (tmp_path / "out" / res.run_id).exists()


def _baseline_entries(cfg) -> list[Path]:
    return [p for p in Path(cfg.paths.store_dir).glob("baselines/*") if p.is_dir()]  # not a lock or a failure


def test_diverged_baseline_fails_and_is_not_cached(make_cfg):
    # Adam at lr=1e6 on digits: finite losses around 1e21, validation accuracy at chance (about 0.1)
    cfg = make_cfg("data=digits", "model=lenet_300_100", "trainer.max_epochs=1", "trainer.batch_size=32",
                   "trainer.lr=1e6", "measure.latency=false")
    with pytest.raises(training.DivergedError, match=r"trainer\.lr=1e\+06.*lower it") as e:
        pipeline.run(cfg)
    assert "not clearly above chance" in str(e.value) and "0.1000 for 10 classes" in str(e.value)
    assert not _baseline_entries(cfg), "a diverged baseline never enters the cache"
    row = _search(cfg).iloc[0]
    assert row.status == "FAILED" and row["tags.status_reason"].startswith("DivergedError")


def test_nan_loss_with_the_cache_on_fails_clearly_and_caches_nothing(make_cfg):
    cfg = make_cfg("data=digits", "model=lenet_300_100", "trainer.max_epochs=1", "trainer.batch_size=32",
                   "trainer.lr=1e30", "measure.latency=false")
    with pytest.raises(training.NonFiniteLossError, match=r"lower trainer\.lr \(now 1e\+30\)"):
        pipeline.run(cfg)
    assert not _baseline_entries(cfg)
    # the store remembers it: the same key fails again at once, without training, and says how to retry
    (failed,) = Path(cfg.paths.store_dir).glob("baselines/*.failed.json")
    t0 = time.perf_counter()
    with pytest.raises(store.RememberedFailure, match=r"failed before.*lower trainer\.lr \(now 1e\+30\).*delete "):
        pipeline.run(cfg)
    assert time.perf_counter() - t0 < 30  # no epoch trained (loading the data is most of it)
    row = _search(cfg).iloc[-1]  # the newest
    assert row.status == "FAILED" and row["tags.status_reason"].startswith("RememberedFailure")
    failed.unlink()  # deleting it tries again
    with pytest.raises(training.NonFiniteLossError):
        pipeline.run(cfg)


def test_check_learned_rule():
    from edgebench.config import TrainerConfig

    assert training.chance_margin(10) == pytest.approx(0.15)
    assert training.chance_margin(2) == pytest.approx(0.6)
    assert training.chance_margin(100) == pytest.approx(0.015)
    cfg = TrainerConfig(lr=0.5)
    training.check_learned([{"val/acc": 0.1}, {"val/acc": 0.15}], 10, cfg)  # final epoch judged: fine
    training.check_learned([{"train/loss": 1.0}], 10, cfg)  # no validation: not judged
    with pytest.raises(training.DivergedError, match=r"trainer\.lr=0\.5"):
        training.check_learned([{"val/acc": 0.9}, {"val/acc": 0.128, "train/loss": 7e21}], 10, cfg)
