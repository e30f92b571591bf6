"""The exporter contract: a new format is one module with its registration (tests/exporter_torchscript.py), and a
real run with ``export=<it>`` writes its file, takes its accuracy from its predictor and its latency from its runner,
times the dense baseline in its own format, checks fit by the device runtimes it names and labels the summary."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from edgebench import export, pipeline
from edgebench.config import ConfigError, DataConfig
from edgebench.data import load_data
from edgebench.devices.estimate import format_reason
from edgebench.export import registry
from edgebench.measure import load_device

CALLS, WARMUP = 100, 20  # the least the latency protocol allows


@pytest.fixture
def torchscript(monkeypatch):
    """The format's module, imported as a user would import a plugin; its registration ends with the test."""
    monkeypatch.setattr(registry, "EXPORTERS", dict(registry.EXPORTERS))
    spec = importlib.util.spec_from_file_location("exporter_torchscript",
                                                  Path(__file__).with_name("exporter_torchscript.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_format_is_known_once_its_module_is_imported(torchscript, make_cfg):
    assert export.names()[-1] == "torchscript" and export.get("torchscript").label == "TorchScript"
    assert format_reason(load_device("raspberry_pi_4"), "torchscript") is None  # it runs pytorch
    why = format_reason(load_device("arduino_nano_33_ble_sense"), "torchscript")
    assert "cannot load a torchscript file" in why and "export=tflite_micro" in why
    assert "export=torchscript" in registry.how_to_get(["pytorch"])  # the fix hint of a device that runs pytorch
    assert export.for_device(["pytorch"], None) == "torchscript"  # export=device: a float model's own format there
    with pytest.raises(ConfigError, match="export=torchscript: writes fp32, but the last step's output is int8"):
        pipeline.run(make_cfg("data=digits", "+method=ptq_int8", "export=torchscript"))


def test_a_run_with_a_new_format_uses_its_file_predictor_and_runner(torchscript, make_cfg, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from edgebench.tracking import download_model_file

    cfg = make_cfg("data=digits", "trainer.max_epochs=1", "+method=magnitude_pruning", "method.retrain_epochs=1",
                   "export=torchscript", "device=raspberry_pi_4", f"measure.calls={CALLS}",
                   f"measure.warmup={WARMUP}")
    res = pipeline.run(cfg)
    m, t = res.metrics, res.tags
    assert (t["export.name"], t["export.format"], t["export.dtype"]) == ("torchscript", "torchscript", "fp32")
    # its file, logged as the run's model
    file = download_model_file(MlflowClient(cfg.paths.mlflow_tracking_uri), res.run_id, "artifacts/model.ts",
                               tmp_path / "download")
    assert m["size/bytes_artifact"] == file.stat().st_size > 0
    x = torch.randn(3, 1, 8, 8)
    assert torchscript.load(export.Artifact(file, [file], "torchscript", "", "fp32"))(x).shape == (3, 10)
    # accuracy from its predictor: every test and validation image went through the saved program
    sizes = load_data(DataConfig(name="digits"), "unused").sizes()
    assert torchscript.USED["predicted"] >= sizes["test"] + sizes["val"]
    # latency from its runner: the model and the dense baseline's TorchScript file, interleaved
    assert t["latency.runtime"] == "torchscript" and "latency/host_speedup" in m
    assert torchscript.USED["timed"] >= 2 * (CALLS + WARMUP)
    # fit by the runtimes it names: the Raspberry Pi runs pytorch
    assert t["device.fit"] == "fits" and m["device/fits"] == 1.0
    assert "fp32 TorchScript" in capsys.readouterr().out
