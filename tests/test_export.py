"""The exporter registry: names, selection by export= and by the last method's output, impossible choices."""

from __future__ import annotations

import dataclasses

import onnx
import pytest
import torch
from torch import nn

from edgebench import deploy, export, methods, pipeline, training
from edgebench.config import ConfigError, validate
from edgebench.export import QuantSpec
from edgebench.measure import measure_model

DIGITS = ("data=digits", "trainer.max_epochs=2", "trainer.batch_size=32", "measure.calls=100")


def _chosen(make_cfg, *overrides: str) -> str | None:
    """The exporter a run with these overrides would use, resolved as the pipeline does before training."""
    spec = validate(make_cfg("data=digits", *overrides))
    method = methods.build(methods.parse(spec.method))
    exp = deploy.exporter(spec, getattr(method, "spec_dtype", None))
    return exp.name if exp is not None else None


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def test_registry_names_and_what_each_artifact_says():
    assert export.names() == ["auto", "device", "onnx", "onnx_fp16", "onnx_int8", "torch_export", "tflite", "tflite_int8",
                              "tflite_micro", "tflite_micro_fp32"]
    table = {n: (e.dtype, e.format, e.runtime) for n, e in export.EXPORTERS.items()}
    assert table == {"onnx": ("fp32", "onnx", "onnxruntime"), "onnx_fp16": ("fp16", "onnx", "onnxruntime"),
                     "onnx_int8": ("int8", "onnx", "onnxruntime"),
                     "torch_export": ("bf16", "torch.export", "torch"),
                     "tflite": ("fp32", "tflite", "litert"), "tflite_int8": ("int8", "tflite", "litert"),
                     "tflite_micro": ("int8", "tflite_micro", "litert"),
                     "tflite_micro_fp32": ("fp32", "tflite_micro", "litert")}
    assert export.resolve("auto", "int8").name == "onnx_int8"  # auto never picks a TFLite exporter


@pytest.mark.parametrize("name", ["onnx", "onnx_fp16", "onnx_int8", "torch_export"])
def test_each_exporter_writes_an_artifact_its_runtime_runs(tmp_path, name):
    net, x = _net(), torch.randn(1, 64)
    spec = QuantSpec("int8", calibration=[torch.randn(16, 64)]) if name == "onnx_int8" else None
    art = export.export(name, net, x, tmp_path, spec)
    e = export.get(name)
    assert (art.name, art.dtype, art.format, art.runtime) == (name, e.dtype, e.format, e.runtime)
    assert art.path.exists() and art.path.parent == tmp_path and all(f.exists() for f in art.files)
    batch = torch.randn(5, 64)
    out = export.predictor(art)(batch)
    assert out.shape == (5, 10)
    tol = {"onnx": 1e-4, "onnx_fp16": 0.05, "torch_export": 0.1, "onnx_int8": 0.5}[name]
    assert float((out.float() - net(batch).detach()).abs().max()) < tol
    if art.format == "onnx":
        stored = {t.data_type for t in onnx.load(str(art.path)).graph.initializer if len(t.dims) == 2}
        want = {"onnx": onnx.TensorProto.FLOAT, "onnx_fp16": onnx.TensorProto.FLOAT16,
                "onnx_int8": onnx.TensorProto.INT8}[name]
        assert want in stored
    m = measure_model(net, x, artifact=art)  # measures the given file, in the runtime it names
    assert m["size/bytes_artifact"] == sum(f.stat().st_size for f in art.files)
    assert m.tags()["export.name"] == name and m.tags()["latency.runtime"] == art.runtime


def test_measure_model_never_exports(tmp_path, monkeypatch):
    from edgebench.config import MeasureConfig, Runtime

    net, x = _net(), torch.randn(1, 64)
    art = export.export("onnx", net, x, tmp_path)  # written before exporting is forbidden

    def refuse(*a, **k):
        pytest.fail("measure_model must not export")

    for e in list(export.EXPORTERS.values()):  # each keeps its runners: only writing a file is refused
        monkeypatch.setitem(export.EXPORTERS, e.name, dataclasses.replace(e, fn=refuse))
    monkeypatch.setattr(torch.onnx, "export", refuse)
    m = measure_model(net, x, baseline=_net(), config=MeasureConfig(runtime=Runtime.torch))
    assert "size/bytes_artifact" not in m and "size/bytes_gzip" not in m and m.artifact is None
    m = measure_model(net, x, config=MeasureConfig(latency=False), artifact=art)
    assert m["size/bytes_artifact"] == art.path.stat().st_size
    with pytest.raises(ValueError, match="baseline_artifact"):  # ONNX Runtime times both: it needs both files
        measure_model(net, x, baseline=_net(), artifact=art)


@pytest.mark.parametrize("method,expected", [
    (None, "onnx"), ("magnitude_pruning", "onnx"), ("uniform_quant", "onnx"), ("kure", "onnx"),
    ("fp16", "onnx_fp16"), ("bf16", "torch_export"), ("ptq_int8", "onnx_int8"), ("qat_int8", "onnx_int8"),
])
def test_auto_picks_what_the_method_output_needs(make_cfg, method, expected):
    overrides = [f"+method={method}"] if method else []
    assert _chosen(make_cfg, *overrides) == expected
    assert _chosen(make_cfg, *overrides, "export=auto") == expected


def test_auto_without_measure_export_writes_nothing_unless_the_output_needs_its_file(make_cfg):
    assert _chosen(make_cfg, "measure.export=false", "measure.runtime=torch") is None
    assert _chosen(make_cfg, "+method=ptq_int8", "measure.export=false") == "onnx_int8"  # accuracy comes from it


@pytest.mark.parametrize("overrides,expected", [
    (["export=onnx"], "onnx"), (["export=onnx_fp16"], "onnx_fp16"), (["export=torch_export"], "torch_export"),
    (["+method=magnitude_pruning", "export=onnx_fp16"], "onnx_fp16"),
    (["+method=ptq_int8", "export=onnx_int8"], "onnx_int8"), (["+method=fp16", "export=onnx_fp16"], "onnx_fp16"),
])
def test_explicit_export_is_used(make_cfg, overrides, expected):
    assert _chosen(make_cfg, *overrides) == expected


def test_unknown_exporter_lists_the_names(make_cfg, monkeypatch):
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match="export=tflite9: unknown exporter; known: auto, device, onnx, onnx_fp16, "
                                          "onnx_int8, torch_export, tflite, tflite_int8, tflite_micro"):
        pipeline.run(make_cfg("data=digits", "export=tflite9"))


@pytest.mark.parametrize("overrides,message", [
    (["export=onnx_int8"], "export=onnx_int8: writes int8 from a quantisation spec, and this model has none"),
    (["+method=magnitude_pruning", "export=onnx_int8"], "this model has none"),
    (["+method=ptq_int8", "export=onnx"], "export=onnx: writes fp32, but the last step's output is int8"),
    (["+method=fp16", "export=torch_export"], "the last step's output is fp16; use export=auto or one of: onnx_fp16"),
    (["+method=bf16", "export=onnx_fp16"], "output is bf16"),
    (["export=onnx_fp16", "measure.export=false"], "measure.export=false"),
    (["+method=ptq_int8", "measure.runtime=torch"], "measure.runtime=torch: export=onnx_int8"),
])
def test_impossible_choice_fails_before_training(make_cfg, monkeypatch, overrides, message):
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match=message):
        pipeline.run(make_cfg("data=digits", *overrides))


def test_register_adds_a_name_and_refuses_a_duplicate(monkeypatch):
    monkeypatch.setattr(export.registry, "EXPORTERS", dict(export.EXPORTERS))

    def run_onnx(artifact, threads=0):
        return export.OnnxPredictor(artifact.path, threads)

    @export.register("onnx_copy", dtype="fp32", format="onnx", runtime="onnxruntime", predictor=run_onnx)
    def onnx_copy(model, example, spec, out_dir):
        return export.export_onnx(model, example, out_dir / "copy.onnx")

    assert "onnx_copy" in export.registry.names() and export.registry.resolve("onnx_copy", None).fn is onnx_copy
    with pytest.raises(ValueError, match="already registered"):
        export.register("onnx", dtype="fp32", format="onnx", runtime="onnxruntime", predictor=run_onnx)(onnx_copy)
    with pytest.raises(ValueError, match="register it with predictor="):  # a file nothing runs has no accuracy
        export.register("onnx_blind", dtype="fp32", format="onnx", runtime="onnxruntime")(onnx_copy)


def test_dense_run_with_export_onnx_fp16_measures_and_evaluates_the_fp16_file(make_cfg):
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from edgebench.data import EdgeDataModule, load_data
    from edgebench.config import DataConfig
    from edgebench.tracking import download_model_file

    cfg = make_cfg(*DIGITS, "export=onnx_fp16", "measure.latency=false")
    res = pipeline.run(cfg)
    # the run's one copy of its model: in MLflow's artifact store (issue 24 item 15)
    art = download_model_file(MlflowClient(cfg.paths.mlflow_tracking_uri), res.run_id, "model.onnx", cfg.paths.root_dir)
    dm = EdgeDataModule(load_data(DataConfig(name="digits"), "unused"), 32, 1000)
    assert res.metrics["test/acc"] == training.evaluate(export.OnnxPredictor(art), dm.test_dataloader())["test/acc"]
    assert res.metrics["size/bytes_artifact"] == art.stat().st_size
    tags = MlflowClient(cfg.paths.mlflow_tracking_uri).get_run(res.run_id).data.tags
    assert tags["export.name"] == "onnx_fp16" and tags["export.dtype"] == "fp16"
