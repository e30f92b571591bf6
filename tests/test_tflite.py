"""TFLite and TFLite Micro artifacts (issue 13): export, LiteRT accuracy, TFLM agreement and arena, fit by format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgebench import pipeline, training
from edgebench.config import ConfigError, DataConfig, ModelConfig, ProgressBar, TrainerConfig
from edgebench.data import EdgeDataModule, load_data
from edgebench.devices import evaluate_device
from edgebench.export import QuantSpec, export, resolve
from edgebench.measure import load_device
from edgebench.models import build_model

tflite = pytest.importorskip("edgebench.export.tflite")
needs_packages = pytest.mark.skipif(bool(tflite.missing(micro=True)), reason="the tflite extra is not installed")


@pytest.fixture(scope="module")
def trained():
    """LeNet-5 trained for a few epochs on sklearn digits, its data, and its int8 TFLite Micro artifact."""
    if tflite.missing(micro=True):
        pytest.skip("the tflite extra is not installed")
    import tempfile
    from pathlib import Path

    splits = load_data(DataConfig(name="digits"), "data")
    torch.manual_seed(0)
    net = build_model(ModelConfig(name="lenet5"), splits.input_shape, splits.num_classes)
    dm = EdgeDataModule(splits, 64, 256, 0)
    training.fit(net, dm, TrainerConfig(max_epochs=6, progress_bar=ProgressBar.none))
    calib = [x for (x, _), _ in zip(dm.train_dataloader(), range(4))]
    tmp = Path(tempfile.mkdtemp(prefix="edgebench-test-tflite-"))
    art = export("tflite_micro", net, splits.test_x[:1], tmp, QuantSpec("int8", calibration=calib))
    return net, dm, splits, art


@needs_packages
def test_litert_accuracy_of_the_int8_file_is_the_pytorch_accuracy_within_a_point(trained):
    net, dm, _, art = trained
    torch_acc = training.evaluate(net, dm.test_dataloader())["test/acc"]
    lite_acc = training.evaluate(tflite.LiteRT(art.path), dm.test_dataloader())["test/acc"]
    assert torch_acc > 0.8, "the model learned"
    assert abs(lite_acc - torch_acc) <= 0.01, (lite_acc, torch_acc)
    ops = tflite.LiteRT(art.path).ops()
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops, ops  # full-integer: int8 end to end


@needs_packages
def test_tflite_micro_computes_what_litert_computes_within_one_lsb(trained):
    _, _, splits, art = trained
    ref = tflite.LiteRT(art.path, reference=True)  # TFLite's reference kernels, what TFLM implements
    worst = 0
    for i in range(32):
        x = ref.quantize_input(splits.test_x[i:i + 1])
        assert x.dtype == np.int8
        a = ref.run_one(x).astype(np.int32)
        b = tflite.tflm_predict(art.path, art.arena_bytes, x).astype(np.int32)
        worst = max(worst, int(np.abs(a - b).max()))
    assert worst <= 1, worst


@needs_packages
def test_the_arena_is_read_back_and_is_the_smallest_that_runs(trained, tmp_path):
    _, _, splits, art = trained
    x = tflite.LiteRT(art.path).quantize_input(splits.test_x[:1])
    arena = art.arena_bytes
    assert 1_000 < arena < 200_000
    assert tflite._runs(art.path, arena, x) and not tflite._runs(art.path, arena - 64, x)
    assert tflite.measure_arena(art.path, x) == arena
    h = (art.path.parent / "model_data.h").read_text()
    cc = (art.path.parent / "model_data.cc").read_text()
    assert f"kTensorArenaSize = {arena};" in h
    assert "alignas(16) const unsigned char g_model[]" in cc
    assert f"g_model_len = {art.path.stat().st_size};" in cc
    assert cc.count("0x") == art.path.stat().st_size  # every byte of the flatbuffer, once


@needs_packages
def test_the_arena_estimate_is_within_15_percent_of_the_measured_arena(trained):
    from edgebench.measure.memory import tflm_arena_estimate

    net, _, splits, art = trained
    est = tflm_arena_estimate(net, splits.test_x[:1])["total"]
    assert abs(est / art.arena_bytes - 1) <= 0.15, (est, art.arena_bytes)


def test_greedy_planner_by_hand():
    from edgebench.measure.memory import greedy_plan

    # a (100 B, ops 0-1) and b (100 B, ops 1-2) overlap in time: stacked; c (100 B, op 3) reuses offset 0
    assert greedy_plan([(100, 0, 1), (100, 1, 2), (100, 3, 3)]) == 2 * 112  # sizes aligned to 16 bytes
    # the larger first: d (64, ops 0-2) sits at 0, e (32, op 1) above it, f (32, op 3) back at 0
    assert greedy_plan([(32, 1, 1), (64, 0, 2), (32, 3, 3)]) == 96


@needs_packages
def test_fp32_tflite_gives_the_pytorch_outputs(trained, tmp_path):
    net, _, splits, _ = trained
    art = export("tflite", net, splits.test_x[:1], tmp_path)
    x = splits.test_x[:16]
    assert torch.allclose(tflite.LiteRT(art.path)(x), net.eval()(x), atol=1e-4)


# ----------------------------------------------------------------------------------- fit by format


def _layers():
    from edgebench.measure.compute import layer_profile

    net = build_model(ModelConfig(name="lenet5"), (1, 28, 28), 10)
    return layer_profile(net, torch.zeros(1, 1, 28, 28))


def test_an_onnx_file_does_not_fit_a_microcontroller_and_the_reason_says_what_to_do():
    nano = load_device("arduino_nano_33_ble_sense")
    r = evaluate_device(nano, _layers(), dtype="int8", artifact_bytes=70_000, peak_activation_bytes=9_000,
                        artifact_format="onnx")
    assert not r.fits and "cannot load a onnx file" in r.reasons[0] and "export=tflite_micro" in r.reasons[0]
    ok = evaluate_device(nano, _layers(), dtype="int8", artifact_bytes=70_000, peak_activation_bytes=9_000,
                         artifact_format="tflite_micro", arena_bytes=10_624)
    assert ok.fits and ok.ram_bytes == 10_624 and ok.ram_source == "tflm_arena"
    est = evaluate_device(nano, _layers(), dtype="int8", artifact_bytes=70_000, peak_activation_bytes=9_000,
                          artifact_format="tflite_micro")
    assert est.ram_bytes == 9_000 and est.ram_source == "estimate"


def test_an_arena_too_large_for_the_device_names_the_measured_arena_and_the_limit():
    l4 = load_device("stm32l4")
    r = evaluate_device(l4, _layers(), dtype="int8", artifact_bytes=70_000, peak_activation_bytes=9_000,
                        artifact_format="tflite_micro", arena_bytes=l4.memory_bytes + 1)
    assert not r.fits and f"TFLite Micro arena {l4.memory_bytes + 1:,} B > memory {l4.memory_bytes:,} B" in r.reasons[0]


def test_coral_takes_an_int8_tflite_and_says_it_is_not_compiled_for_the_edge_tpu():
    coral = load_device("coral_dev_board")
    r = evaluate_device(coral, _layers(), dtype="int8", artifact_bytes=70_000, peak_activation_bytes=9_000,
                        artifact_format="tflite")
    assert r.fits and "runs only files compiled by edgetpu_compiler" in r.note and r.latency_ms_est is not None
    assert r.runtime == "tflite" and "Cortex-A53" in r.note
    onnx = evaluate_device(coral, _layers(), dtype="int8", artifact_bytes=70_000, peak_activation_bytes=9_000,
                           artifact_format="onnx")
    assert not onnx.fits and "export=tflite_int8" in onnx.reasons[0]


@pytest.mark.parametrize("device", ["jetson_nano_2gb", "raspberry_pi_4"])
def test_linux_boards_keep_onnx_and_tflite(device):
    prof = load_device(device)
    for fmt in ("onnx", "tflite"):
        assert evaluate_device(prof, _layers(), dtype="fp32", artifact_bytes=250_000, peak_activation_bytes=40_000,
                               artifact_format=fmt).fits, fmt


def test_the_fix_hint_comes_from_the_exporters_each_device_runtime_loads():
    from edgebench.devices.estimate import format_reason

    # docs/devices.md quotes this one
    assert format_reason(load_device("arduino_nano_33_ble_sense"), "onnx") == (
        "arduino_nano_33_ble_sense runs tflite_micro, which cannot load a onnx file; "
        "use export=tflite_micro after +method=ptq_int8 (or qat_int8), or export=tflite_micro_fp32")
    # the Edge TPU loads int8 .tflite files; without its compiler LiteRT on the CPU loads any .tflite
    assert "use export=tflite" in format_reason(load_device("coral_dev_board"), "onnx")
    assert format_reason(load_device("apalis_imx6"), "torch.export").endswith(
        "use export=onnx or tflite, or export=onnx_fp16 after +method=fp16, "
        "or export=onnx_int8 or tflite_int8 after +method=ptq_int8 (or qat_int8)")


def test_a_device_edgebench_writes_nothing_for_says_so():
    r = evaluate_device(load_device("vcu128"), _layers(), dtype="int8", artifact_bytes=70_000,
                        peak_activation_bytes=9_000, artifact_format="onnx")
    assert not r.fits and "writes no artifact its runtimes load" in r.reasons[0]


# ----------------------------------------------------------------------------------- bad input


def test_missing_tflite_packages_are_refused_with_the_install_command(monkeypatch):
    monkeypatch.setattr(tflite, "missing", lambda micro=False: ["tflite-micro"])
    with pytest.raises(ConfigError, match=r"export=tflite_micro needs tflite-micro: install the tflite extra"):
        resolve("tflite_micro", QuantSpec("int8"))


@needs_packages
def test_an_op_tflite_cannot_convert_is_named_with_the_model():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.cumprod(x.flatten(1), 1)

    with pytest.raises(ConfigError, match=r"Odd cannot be converted to TFLite: aten.cumprod.default"):
        tflite.check_convertible(Odd(), torch.zeros(1, 1, 8, 8))


def test_an_unconvertible_model_fails_before_training(make_cfg, monkeypatch):
    def refuse(model, example, name=None):
        raise ConfigError(f"{name} cannot be converted to TFLite: aten.fake_op")

    monkeypatch.setattr(tflite, "check_convertible", refuse)
    monkeypatch.setattr(tflite, "check_convertible_int8", refuse)  # an int8 exporter checks the int8 route
    monkeypatch.setattr(tflite, "missing", lambda micro=False: [])
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("must fail before training"))
    with pytest.raises(ConfigError, match="model=lenet5 cannot be converted to TFLite: aten.fake_op"):
        pipeline.run(make_cfg("data=digits", "model=lenet5", "+method=ptq_int8", "export=tflite_micro"))


# ----------------------------------------------------------------------------------- the run


@needs_packages
def test_a_run_on_the_arduino_reports_the_measured_arena_and_logs_the_c_array(make_cfg):
    from mlflow.tracking import MlflowClient

    cfg = make_cfg("data=digits", "model=lenet5", "trainer.max_epochs=3", "+method=ptq_int8",
                   "export=tflite_micro", "device=arduino_nano_33_ble_sense")
    res = pipeline.run(cfg)
    m = res.metrics
    assert m["device/fits"] == 1.0 and m["device/ram_bytes"] == m["memory/tflm_arena_bytes"] > 0
    assert res.tags["device.ram_source"] == "tflm_arena" and res.tags["latency.runtime"] == "litert"
    assert abs(m["test/acc"] - m["baseline/test_acc"]) <= 0.02  # LiteRT's int8 accuracy next to the dense model's
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)  # the files are the run's LoggedModel's (a pyfunc model)
    arts = {a.path for a in client.list_logged_model_artifacts(res.model_id, "artifacts")}
    assert {"artifacts/model.tflite", "artifacts/model_data.cc", "artifacts/model_data.h"} <= arts


def test_export_device_picks_each_profiles_own_format():
    from edgebench.export import for_device

    def runtimes(device):
        return load_device(device).runtimes

    assert for_device(runtimes("arduino_nano_33_ble_sense"), "int8") == "tflite_micro"
    assert for_device(runtimes("coral_dev_board"), "int8") == "tflite_int8"
    assert for_device(runtimes("jetson_nano_2gb"), None) == "onnx"
    assert for_device(runtimes("jetson_nano_2gb"), "int8") == "onnx_int8"
    assert for_device(runtimes("arduino_nano_33_ble_sense"), None) == "tflite_micro_fp32"  # a float model
    assert for_device(runtimes("coral_dev_board"), "fp16") is None  # no runtime of the board loads fp16 files
    assert for_device(runtimes("azure_sphere_mt3620"), "int8") == "tflite_micro"  # its real-time Cortex-M4F cores
    assert for_device(runtimes("vcu128"), "int8") is None  # a DPU overlay and Vitis AI: nothing edgebench writes


@needs_packages
def test_export_device_deploys_int8_and_float_to_the_arduino_as_tflite_micro(make_cfg):
    common = ("data=digits", "model=lenet_300_100", "trainer.max_epochs=2", "device=arduino_nano_33_ble_sense",
              "export=device", "measure.latency=false")
    res = pipeline.run(make_cfg(*common, "+method=ptq_int8"))
    assert res.tags["export.format"] == "tflite_micro" and res.metrics["device/fits"] == 1.0
    assert res.tags["device.ram_source"] == "tflm_arena" and res.tags["device.runtime"] == "tflite_micro+cmsis_nn"
    dense = pipeline.run(make_cfg(*common))  # a float model: the fp32 file, in TFLite Micro's reference kernels
    assert dense.tags["export.name"] == "tflite_micro_fp32" and dense.tags["export.dtype"] == "fp32"
    assert dense.metrics["device/fits"] == 1.0 and dense.tags["device.ram_source"] == "tflm_arena"
    assert dense.metrics["device/ram_bytes"] == dense.metrics["memory/tflm_arena_bytes"] > 0  # its own arena
    assert dense.tags["device.runtime"] == "tflite_micro+reference"
    assert "device/latency_ms_est" not in dense.metrics  # no published figure calibrates the float kernels


def test_export_auto_follows_the_device_runtime_and_falls_back_with_a_warning(monkeypatch, caplog):
    """README: `+method=ptq_int8 device=coral_dev_board` gives an int8 .tflite (auto = the device's own format); a
    float model on a microcontroller the fp32 TFLite Micro file, an fp16 one (no runtime of the board loads it) ONNX,
    and a missing extra falls back with a warning."""
    import dataclasses

    from edgebench.export import registry

    def runtimes(device: str) -> list[str]:
        return load_device(device).runtimes

    assert resolve("auto", "int8", runtimes=runtimes("coral_dev_board")).name == "tflite_int8"
    assert resolve("auto", "int8", runtimes=runtimes("stm32l4")).name == "tflite_micro"
    assert resolve("auto", None, runtimes=runtimes("arduino_nano_33_ble_sense")).name == "tflite_micro_fp32"
    assert resolve("auto", "fp16", runtimes=runtimes("arduino_nano_33_ble_sense")).name == "onnx_fp16"
    assert resolve("auto", "int8", runtimes=runtimes("host")).name == "onnx_int8"
    assert resolve("auto", None, enabled=False, runtimes=runtimes("host")) is None

    def missing():
        raise ConfigError("export=tflite_int8 needs ai-edge-litert: pip install -e '.[tflite]'")

    monkeypatch.setitem(registry.EXPORTERS, "tflite_int8",
                        dataclasses.replace(registry.EXPORTERS["tflite_int8"], requires=missing))
    with caplog.at_level("WARNING"):
        assert resolve("auto", "int8", runtimes=runtimes("coral_dev_board")).name == "onnx_int8"
    assert "tflite_int8" in caplog.text and "pip install" in caplog.text
    with pytest.raises(ConfigError, match="pip install"):
        resolve("device", "int8", runtimes=runtimes("coral_dev_board"))


@needs_packages
def test_a_model_the_devices_format_cannot_hold_is_recorded_as_not_fitting(make_cfg, monkeypatch):
    """export=device on a microcontroller whose TFLite Micro cannot run the file (the recurrent attention model's ops,
    here forced): the run finishes, says why it does not fit, and keeps the model's accuracy; asked for by name, the
    same failure fails the run."""
    from edgebench.export import tflite

    tried = []

    def cannot(path, *a, **k):
        tried.append(path)
        raise tflite.CannotRun(f"{path.name} does not run in TFLite Micro even with a 4,194,304 B arena")

    monkeypatch.setattr(tflite, "measure_arena", cannot)
    common = ("data=digits", "model=lenet_300_100", "trainer.max_epochs=2", "device=arduino_nano_33_ble_sense",
              "measure.latency=false")
    res = pipeline.run(make_cfg(*common, "export=device"))
    assert res.metrics["device/fits"] == 0.0 and res.metrics["test/acc"] > 0.5
    assert res.tags["device.fit"].startswith("TFLite Micro (tflite_micro_fp32) cannot hold this model: model.tflite "
                                             "does not run in TFLite Micro")
    from mlflow.tracking import MlflowClient

    logged = MlflowClient(make_cfg().paths.mlflow_tracking_uri).get_run(res.run_id).data.tags
    assert logged["export.failed"] == res.tags["device.fit"] and res.deployable is None
    # the next microcontroller of that format finds the refusal in the store: nothing converted or run again
    other = pipeline.run(make_cfg(*[c.replace("arduino_nano_33_ble_sense", "stm32h7") for c in common],
                                  "export=device"))
    assert len(tried) == 1 and other.tags["device.fit"] == res.tags["device.fit"]
    assert other.metrics["device/fits"] == 0.0 and other.metrics["test/acc"] == res.metrics["test/acc"]
    with pytest.raises(ValueError, match="does not run in TFLite Micro"):
        pipeline.run(make_cfg(*common, "export=tflite_micro_fp32", "seed=1"))


@needs_packages
def test_a_precheck_the_devices_format_refuses_is_a_result_under_export_device(make_cfg, monkeypatch):
    """The recurrent attention model's int8 conversion (forced here): under export=device the untrained model's
    refusal does not stop the run; it trains, records that the device's format cannot hold it, and converts
    nothing again at deploy. Asked for by name, the same refusal stops the run before any training."""
    import dataclasses

    from edgebench.export import registry

    converted = []

    def refuse(model, example, name):
        raise ConfigError(f"{name} cannot be converted to int8 TFLite: aten.mul.Tensor on an int64 constant")

    def fn(*a, **k):
        converted.append(a)
        raise AssertionError("converted after a refused precheck")

    monkeypatch.setitem(registry.EXPORTERS, "tflite_int8",
                        dataclasses.replace(registry.EXPORTERS["tflite_int8"], precheck=refuse, fn=fn))
    common = ("data=digits", "model=lenet_300_100", "trainer.max_epochs=1", "device=coral_dev_board",
              "measure.latency=false", "steps=[ptq_int8]")
    res = pipeline.run(make_cfg(*common, "export=device"))
    assert res.metrics["device/fits"] == 0.0 and res.metrics["test/acc"] > 0.3 and not converted
    assert res.tags["device.fit"].startswith("TFLite (tflite_int8) cannot hold this model: model=lenet_300_100 "
                                             "cannot be converted to int8 TFLite")
    with pytest.raises(ConfigError, match="cannot be converted"):
        pipeline.run(make_cfg(*common, "export=tflite_int8", "seed=1"))
