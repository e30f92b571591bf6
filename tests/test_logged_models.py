"""Every run's deployable is an MLflow 3 LoggedModel of the run (issue 25 item 4): found by
``mlflow.search_logged_models``, ranked by the metrics logged on it, loaded by ``mlflow.pyfunc`` from
``models:/<model_id>`` (an ONNX file, a .tflite run by LiteRT, a bf16 program run by PyTorch) and registered."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from edgebench import pipeline
from edgebench.config import DataConfig
from edgebench.data import load_data

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = ("data=digits", "trainer.max_epochs=1", "trainer.batch_size=32", "measure.latency=false")


@contextlib.contextmanager
def tracking(uri: str):
    """MLflow's fluent API (search_logged_models, models:/ URIs, register_model) on this store: it resolves
    ``models:/<id>`` against the process-global tracking URI, whatever client wrote the model."""
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def _the_model(cfg, res):
    """The one LoggedModel of the run's experiment, found with the fluent search."""
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    experiment_id = client.get_run(res.run_id).info.experiment_id
    models = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
    assert len(models) == 1
    return models[0], client, experiment_id


def _accuracy(model_uri: str) -> float:
    """The accuracy of the pyfunc model at ``model_uri`` on the digits test split."""
    splits = load_data(DataConfig(name="digits"), "unused")
    logits = mlflow.pyfunc.load_model(model_uri).predict(splits.test_x.numpy())
    if isinstance(logits, dict):  # MLflow's onnx flavour: {output name: array}
        (logits,) = logits.values()
    assert logits.shape == (len(splits.test_y), 10)
    return float((np.asarray(logits).argmax(1) == splits.test_y.numpy()).mean())


def test_a_run_logs_its_onnx_model_as_a_logged_model_with_its_metrics(make_cfg):
    cfg = make_cfg(*FAST)
    res = pipeline.run(cfg)
    with tracking(cfg.paths.mlflow_tracking_uri):
        model, client, experiment_id = _the_model(cfg, res)
        assert model.source_run_id == res.run_id and model.model_id == res.model_id
        assert model.name == "model" and model.status == LoggedModelStatus.READY
        assert model.model_type == "onnx" and model.tags["export.name"] == "onnx"
        assert model.tags["model"] == "lenet_300_100" and model.tags["data"] == "digits"
        assert model.params["trainer.max_epochs"] == "1" and model.params["model.name"] == "lenet_300_100"
        run = client.get_run(res.run_id)  # the UI's "Logged from": the run's command
        assert model.tags["mlflow.source.name"] == run.data.tags["mlflow.source.name"]
        # the run's metrics are the model's: accuracy, size, device fit
        on_model = {m.key: m.value for m in model.metrics}
        for key in ("test/acc", "size/bytes_artifact", "device/fits", "delta/acc"):
            assert on_model[key] == pytest.approx(res.metrics[key]), key
        assert [o.model_id for o in client.get_run(res.run_id).outputs.model_outputs] == [model.model_id]
        # the file is in the model's artifacts (its one copy), in MLflow's model format with a signature
        files = {f.path: f.file_size for f in client.list_logged_model_artifacts(model.model_id)}
        assert {"MLmodel", "model.onnx", "input_example.json"} <= set(files)
        assert on_model["size/bytes_artifact"] == sum(s for p, s in files.items() if p.startswith("model.onnx"))
        info = mlflow.models.get_model_info(f"models:/{model.model_id}")
        assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 1, 8, 8]
        # the loaded model is the run's deployable: its accuracy on the test split is the run's
        assert _accuracy(f"models:/{model.model_id}") == pytest.approx(res.metrics["test/acc"])
        assert mlflow.onnx.load_model(f"runs:/{res.run_id}/model").graph.node  # the run's URI finds it too
        # ranked by a metric on the model, and registered from its models:/ URI
        ranked = mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list",
                                             filter_string="metrics.`test/acc` > 0",
                                             order_by=[{"field_name": "metrics.test/acc", "ascending": False}])
        assert [m.model_id for m in ranked] == [model.model_id]
        version = mlflow.register_model(f"models:/{model.model_id}", "digits-classifier")
        assert int(version.version) == 1 and version.source == f"models:/{model.model_id}"
    # the README's snippet, as written, from the folder the run was launched in: it ranks and registers the model
    snippet = re.search(r"```python\n(import mlflow.*?search_logged_models.*?)```", README.read_text(), re.S).group(1)
    out = subprocess.run([sys.executable, "-c", snippet], cwd=cfg.paths.root_dir, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    best = client.get_model_version("edgebench-best", "1")
    assert best.source == f"models:/{model.model_id}" and best.run_id == res.run_id


def test_a_tflite_run_logs_a_logged_model_that_runs_the_tflite_file(make_cfg):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("litert_torch")
    cfg = make_cfg(*FAST, "+method=ptq_int8", "export=tflite_int8")
    res = pipeline.run(cfg)
    with tracking(cfg.paths.mlflow_tracking_uri):
        model, client, _ = _the_model(cfg, res)
        assert model.source_run_id == res.run_id and model.model_type == "tflite"
        assert model.tags["export.name"] == "tflite_int8" and model.tags["method"] == "ptq_int8"
        files = {f.path: f.file_size for f in client.list_logged_model_artifacts(model.model_id, "artifacts")}
        assert files == {"artifacts/model.tflite": res.metrics["size/bytes_artifact"]}
        assert {m.key: m.value for m in model.metrics}["test/acc"] == pytest.approx(res.metrics["test/acc"])
        # the pyfunc runs the int8 .tflite in LiteRT: the run's accuracy, which came from the same file
        assert _accuracy(f"models:/{model.model_id}") == pytest.approx(res.metrics["test/acc"])


def test_a_tflite_micro_run_logs_a_logged_model_with_its_c_array_that_runs_the_file(make_cfg):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("litert_torch")
    pytest.importorskip("tflite_micro")
    cfg = make_cfg(*FAST, "+method=ptq_int8", "export=tflite_micro")
    res = pipeline.run(cfg)
    with tracking(cfg.paths.mlflow_tracking_uri):
        model, client, _ = _the_model(cfg, res)
        assert model.model_type == "tflite_micro" and model.tags["export.name"] == "tflite_micro"
        files = {f.path for f in client.list_logged_model_artifacts(model.model_id, "artifacts")}
        assert files == {"artifacts/model.tflite", "artifacts/model_data.cc", "artifacts/model_data.h"}
        on_model = {m.key: m.value for m in model.metrics}
        assert on_model["memory/tflm_arena_bytes"] == res.metrics["memory/tflm_arena_bytes"] > 0
        assert _accuracy(f"models:/{model.model_id}") == pytest.approx(res.metrics["test/acc"])  # the file, in LiteRT


def test_a_bf16_run_logs_a_logged_model_that_runs_the_program(make_cfg):
    cfg = make_cfg(*FAST, "+method=bf16")
    res = pipeline.run(cfg)
    with tracking(cfg.paths.mlflow_tracking_uri):
        model, _, _ = _the_model(cfg, res)
        assert model.model_type == "torch.export" and model.tags["export.dtype"] == "bf16"
        assert _accuracy(f"models:/{model.model_id}") == pytest.approx(res.metrics["test/acc"])


def test_a_resumed_run_returns_the_model_of_the_run_it_skipped_to(make_cfg):
    first = pipeline.run(make_cfg(*FAST, "resume=true"))
    again = pipeline.run(make_cfg(*FAST, "resume=true"))
    assert again.skipped and again.run_id == first.run_id
    assert again.model_id == first.model_id and first.model_id.startswith("m-")


def test_a_model_that_cannot_be_saved_is_marked_failed_with_its_run(make_cfg, monkeypatch):
    from edgebench.export import mlflow_flavour

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mlflow_flavour, "save_model", broken)
    cfg = make_cfg(*FAST)
    with pytest.raises(OSError, match="No space left"):
        pipeline.run(cfg)
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("edgebench").experiment_id])
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert run.info.status == "FAILED" and "no space left" in run.data.tags["status_reason"]
    assert model.source_run_id == run.info.run_id and model.status == LoggedModelStatus.FAILED  # never left PENDING


def test_the_models_tab_lists_the_runs_model(make_cfg, render_page):
    from edgebench import ui

    cfg = make_cfg(*FAST)
    res = pipeline.run(cfg)
    run = MlflowClient(cfg.paths.mlflow_tracking_uri).get_run(res.run_id)
    with ui.serve(cfg.paths.mlflow_tracking_uri, cfg.paths.mlflow_artifact_dir) as base:
        page = render_page(f"{base}/#/experiments/{run.info.experiment_id}/models?workflowType=machine_learning")
    # the model's row: ready, its source run named (its metric columns lie to the right, out of a 1600 px window)
    assert "Models" in page and "No models" not in page and "Ready" in page and run.info.run_name in page
