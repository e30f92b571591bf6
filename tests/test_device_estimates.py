"""Believable device estimates: a per-inference overhead, depthwise convolutions at their own efficiency,
and calibration that says when its error band is unknown."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from edgebench.config import DeviceConfig, ModelConfig
from edgebench.devices import calibration as cal
from edgebench.devices import estimate_latency_s
from edgebench.measure import load_device
from edgebench.measure.compute import layer_profile
from edgebench.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def _toy(**kw) -> DeviceConfig:
    base = dict(name="toy", peak_ops={"int8": 1e9}, dtypes=["int8"], compute_efficiency=0.5)
    base.update(kw)
    return DeviceConfig(**base)


def _lenet_layers():
    net = build_model(ModelConfig(name="lenet_300_100"), (1, 28, 28), 10)
    return layer_profile(net, torch.zeros(1, 1, 28, 28))


def _separable():
    """3x3 depthwise (groups = in_channels = 8), 1x1 pointwise, and a grouped (not depthwise) convolution."""
    return nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1), nn.Conv2d(16, 16, 3, padding=1,
                                                                                                   groups=2))


def test_overhead_is_added_once_per_inference():
    layers = _lenet_layers()
    assert len(layers) == 3
    without = estimate_latency_s(layers, _toy(), "int8")
    with_overhead = estimate_latency_s(layers, _toy(inference_overhead_s=1e-3), "int8")
    assert with_overhead - without == pytest.approx(1e-3)  # once, not once per layer
    assert estimate_latency_s([], _toy(inference_overhead_s=1e-3), "int8") == pytest.approx(1e-3)
    # the per-layer overhead still scales with the layer count, next to it
    both = estimate_latency_s(layers, _toy(inference_overhead_s=1e-3, layer_overhead_s=1e-5), "int8")
    assert both - without == pytest.approx(1e-3 + 3 * 1e-5)


def test_layer_profile_flags_depthwise_convolutions():
    layers = layer_profile(_separable(), torch.zeros(1, 8, 6, 6))
    assert [l.depthwise for l in layers] == [True, False, False]  # groups=2 on 16 channels is grouped, not depthwise
    assert layers[0].macs == 6 * 6 * 8 * 9
    lin = layer_profile(nn.Linear(4, 2), torch.zeros(1, 4))
    assert lin[0].depthwise is False


def test_depthwise_layers_use_their_efficiency():
    layers = layer_profile(_separable(), torch.zeros(1, 8, 6, 6))
    dw = sum(l.macs for l in layers if l.depthwise)
    rest = sum(l.macs for l in layers if not l.depthwise)
    prof = _toy(compute_efficiency=0.5, depthwise_efficiency=0.05)
    expected = 2 * dw / (1e9 * 0.05) + 2 * rest / (1e9 * 0.5)
    assert estimate_latency_s(layers, prof, "int8") == pytest.approx(expected)
    # unset: depthwise layers run at the compute efficiency
    same = estimate_latency_s(layers, _toy(compute_efficiency=0.5), "int8")
    assert same == pytest.approx(2 * (dw + rest) / (1e9 * 0.5))


def test_estimate_rejects_bad_depthwise_efficiency_and_overhead():
    layers = _lenet_layers()
    with pytest.raises(ValueError, match="depthwise_efficiency"):
        estimate_latency_s(layers, _toy(depthwise_efficiency=1.5), "int8")
    with pytest.raises(ValueError, match="inference_overhead_s"):
        estimate_latency_s(layers, _toy(inference_overhead_s=-1.0), "int8")


def test_coral_estimate_of_a_tiny_model_includes_the_invoke_overhead():
    coral = load_device("coral_dev_board")
    assert coral.inference_overhead_s > 0 and "inference_overhead_s" in coral.sources
    ms = estimate_latency_s(_lenet_layers(), coral, "int8") * 1e3
    assert ms >= coral.inference_overhead_s * 1e3  # no longer 0.002 ms
    assert ms == pytest.approx(coral.inference_overhead_s * 1e3, rel=0.05)  # LeNet's compute is negligible next to it


def test_profiles_source_or_declare_their_new_figures():
    for name in ("coral_dev_board", "jetson_nano_2gb"):
        prof = load_device(name)
        assert "inference_overhead_s" in prof.sources or "inference_overhead_s" in prof.unsourced, name
        if prof.depthwise_efficiency is not None:
            assert "depthwise_efficiency" in prof.sources, name


def _one_point(monkeypatch, n: int):
    pts = [cal.CalibrationPoint("toy", "DS-CNN", cal.DSCNN, (1, 49, 10), "int8", 50.0, "test"),
           cal.CalibrationPoint("toy", "ResNet-8", cal.ResNet8, (3, 32, 32), "int8", 400.0, "test")][:n]
    monkeypatch.setattr(cal, "POINTS", pts)
    monkeypatch.setattr(cal, "VALIDATION", [])
    return cal.calibrate({"toy": _toy()})["toy"]


def test_one_point_device_reports_unknown_error_band(monkeypatch):
    d = _one_point(monkeypatch, 1)
    assert d["n_points"] == 1 and d["leave_one_out"] is None
    assert d["error_band"] == cal.UNKNOWN_BAND and "unknown" in d["error_band"]
    (pt,) = d["points"]
    assert "leave_one_out_error" not in pt
    assert abs(pt["fit_error"]) < 0.01  # one point: exact on it


def test_two_point_device_reports_leave_one_out_errors(monkeypatch):
    d = _one_point(monkeypatch, 2)
    assert d["n_points"] == 2 and d["leave_one_out"] is not None
    assert all("leave_one_out_error" in p for p in d["points"])
    assert d["depthwise_efficiency"] is not None  # one model with depthwise layers and one without
    assert "unknown" not in d["error_band"]


def test_fit_separates_depthwise_efficiency():
    """Synthetic points made by a known profile are fitted back to its two efficiencies."""
    truth = _toy(compute_efficiency=0.3, depthwise_efficiency=0.03, inference_overhead_s=2e-4)
    data = []
    for build, shape in ((cal.DSCNN, (1, 49, 10)), (cal.ResNet8, (3, 32, 32)), (lambda: cal.MobileNetV1(0.25, 2),
                                                                                  (3, 96, 96))):
        layers = layer_profile(build().eval(), torch.zeros(1, *shape))
        data.append((layers, "int8", estimate_latency_s(layers, truth, "int8") * 1e3))
    ce, dw = cal.fit_device(replace(truth, compute_efficiency=0.9, depthwise_efficiency=None), data)
    assert ce == pytest.approx(0.3, rel=0.02) and dw == pytest.approx(0.03, rel=0.02)


def test_roofline_profiles_match_their_calibration():
    """The roofline profiles (Jetson, Coral's Edge TPU) carry the efficiencies and leave-one-out band that
    results/device_calibration.json records for their points."""
    res = json.loads((ROOT / "results" / "device_calibration.json").read_text())["roofline"]
    by_device = {}
    for p in cal.POINTS:
        by_device[p.device] = by_device.get(p.device, 0) + 1
    assert set(by_device) == {"coral_dev_board", "jetson_nano_2gb"}
    for device, n in by_device.items():
        d = res[device]
        assert d["n_points"] == n and len([p for p in d["points"] if "leave_one_out_error" in p]) == n
        prof = load_device(device)
        assert prof.compute_efficiency == pytest.approx(d["compute_efficiency"], rel=1e-3)
        assert prof.depthwise_efficiency == pytest.approx(d["depthwise_efficiency"], rel=1e-3)
        assert prof.latency_band == pytest.approx([d["leave_one_out"]["min_error"], d["leave_one_out"]["max_error"]],
                                                  abs=0.006)


# ---- the op-level model (edgebench.devices.ops, .published) --------------------------------------------------

def test_op_level_cycles_of_a_hand_computed_two_layer_graph():
    """conv 3x3 (8->16 channels) on 10x10, then an ADD of 1,600 elements: by hand, with made-up constants."""
    from edgebench.devices.ops import Op, OpCosts

    conv = Op("conv", macs=10 * 10 * 16 * 3 * 3 * 8, elems=1600, weights=16 * 3 * 3 * 8, name="CONV_2D")
    add = Op("elementwise", elems=1600, name="ADD")
    reshape = Op("free", name="RESHAPE")
    c = OpCosts(conv=2.0, depthwise=5.0, fc=1.5, elem=0.5, op=300.0)
    assert conv.macs == 115_200
    expect = (2.0 * 115_200 + 300) + (0.5 * 1600 + 300)  # the reshape costs nothing
    assert c.cycles([conv, add, reshape]) == pytest.approx(expect)
    assert c.latency_s([conv, add, reshape], 1e8) == pytest.approx(expect / 1e8)
    assert c.breakdown([conv, add]) == {"conv": 230_400.0, "depthwise": 0.0, "fc": 0.0, "elementwise": 800.0,
                                         "dispatch": 600.0}


def test_ops_from_a_tflite_file(tmp_path):
    """The graph the runtime executes: a conv with folded batch norm and fused ReLU is one CONV_2D whose MACs are
    counted from its tensors; the linear layer is a FULLY_CONNECTED."""
    pytest.importorskip("ai_edge_litert")
    from edgebench.devices.ops import ops_from_tflite
    from edgebench.export import QuantSpec, export

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 8 * 8, 10)).eval()
    x = torch.rand(1, 1, 8, 8)
    art = export("tflite_int8", net, x, tmp_path, QuantSpec("int8", calibration=[torch.rand(4, 1, 8, 8)]))
    ops = ops_from_tflite(art.path)
    names = [o.name for o in ops]
    assert "FULLY_CONNECTED" in names and not {"RELU", "BATCH_NORM"} & set(names)
    conv = next(o for o in ops if o.kind in ("conv", "depthwise"))
    assert conv.macs == 8 * 8 * 4 * 3 * 3 * 1  # one input channel: kh * kw MACs per output element
    fc = next(o for o in ops if o.kind == "fc")
    assert fc.macs == 10 * 256 and fc.weights == 2560


def test_leave_one_out_on_a_synthetic_set_with_a_known_answer(monkeypatch):
    """Points made by known constants are fitted back, and every leave-one-model-out prediction is then near exact
    (the ridge pulls a little: within 5%); the estimate's band is that error range."""
    from edgebench.devices import published as P
    from edgebench.devices.ops import Op, OpCosts

    truth = OpCosts(conv=3.0, depthwise=3.0, fc=3.0, elem=3.0, op=1000.0)  # the ridge's centre: recoverable exactly
    graphs = {f"m{i}": [Op("conv", macs=m * 1000, elems=100), Op("depthwise", macs=d * 1000, elems=100),
                        Op("fc", macs=f * 1000, elems=10), Op("elementwise", elems=e * 100)]
              for i, (m, d, f, e) in enumerate([(50, 5, 1, 2), (10, 20, 2, 5), (5, 1, 30, 1), (30, 30, 3, 9)])}
    pts = [P.Point(k, "BOARD_A", "cortex-m4", 100.0, "toy", truth.cycles(ops) / 1e5, None, "synthetic")
           for k, ops in graphs.items()]
    monkeypatch.setattr(P, "graphs", lambda: graphs)
    monkeypatch.setattr(P, "points", lambda: pts)
    P.runtime_groups.cache_clear()
    try:
        g = P.calibrate_runtime("toy")["cortex-m4"]
        for k in ("conv", "depthwise", "fc", "elem"):
            assert getattr(g.costs, k) == pytest.approx(3.0, rel=0.01)
        assert len(g.loo_model) == 4 and all(abs(r["error"]) < 0.05 for r in g.loo_model)
        est = P.estimate("toy", "cortex-m4", "BOARD_A", graphs["m0"], 1e8)
        assert est.calibrated and est.low_ms <= est.ms * 1.06 and est.high_ms >= est.ms / 1.06
        assert est.ms == pytest.approx(truth.cycles(graphs["m0"]) / 1e5, rel=0.01)
        # another board of the same core: the band adds board-out errors (none here: one core) and says so
        other = P.estimate("toy", "cortex-m4", "BOARD_B", graphs["m0"], 1e8)
        assert "not measured" in other.calibration
        # a core no runtime ran on beside this one: no core factor, so uncalibrated
        far = P.estimate("toy", "xtensa-lx7", None, graphs["m0"], 1e8)
        assert not far.calibrated and far.calibration.startswith("uncalibrated")
    finally:
        P.runtime_groups.cache_clear()


def test_three_runtimes_on_one_board_and_the_runtime_in_the_report():
    """DS-CNN on the STM32L4: TFLite Micro reference kernels (uncalibrated on a Cortex-M), CMSIS-NN and X-CUBE-AI each
    get their own estimate, calibrated ones within their band of the published figure; energy from measured power."""
    from edgebench.devices import published as P
    from edgebench.devices.estimate import evaluate_device

    ops = P.graphs()["mlperf_kws"]
    l4 = load_device("stm32l4")
    out = {}
    for runtime, kernels in (("tflite_micro", "reference"), ("tflite_micro", "cmsis_nn"), ("x_cube_ai", "cmsis_nn")):
        r = evaluate_device(replace(l4, runtime=runtime, tflm_kernels=kernels), [], dtype="int8", artifact_bytes=40_000,
                            peak_activation_bytes=20_000, artifact_format="tflite_micro", arena_bytes=20_000, ops=ops)
        out[r.runtime] = r
    ref, cmsis, xcube = out["tflite_micro+reference"], out["tflite_micro+cmsis_nn"], out["x_cube_ai"]
    assert not ref.calibrated and "uncalibrated" in ref.latency_text() and "device/latency_ms_low" not in ref.metrics()
    assert ref.metrics()["device/latency_calibrated"] == 0.0
    assert cmsis.calibrated and cmsis.latency_low_ms <= 181.9174 <= cmsis.latency_high_ms  # MLPerf Tiny v0.5
    assert xcube.calibrated and xcube.latency_low_ms <= 62.873 <= xcube.latency_high_ms  # v1.1, X-CUBE-AI 8.1
    assert ref.latency_ms_est > cmsis.latency_ms_est > xcube.latency_ms_est
    assert cmsis.energy_source.startswith("measured") and "TFLite Micro" in cmsis.energy_source
    assert cmsis.energy_mj_est == pytest.approx(cmsis.latency_ms_est * 0.041, rel=0.03)  # ~41 mW on the L4R5


def test_default_runtimes_of_the_mcu_profiles():
    """The file edgebench writes decides the runtime: TFLite Micro with the core's kernels; the ESP32-S3 is calibrated
    on Espressif's figures; a board nobody measured (Arduino) gets the wider band; an ONNX file has no estimate's
    runtime on an MCU."""
    from edgebench.devices import published as P
    from edgebench.devices.estimate import evaluate_device

    ops = P.graphs()["mlperf_vww"]

    def run(name, fmt="tflite_micro"):
        return evaluate_device(load_device(name), [], dtype="int8", artifact_bytes=300_000,
                               peak_activation_bytes=100_000, artifact_format=fmt, arena_bytes=100_000, ops=ops)

    assert run("stm32l4").runtime == "tflite_micro+cmsis_nn"
    esp = run("esp32_s3")
    assert esp.runtime == "tflite_micro+esp_nn" and "ESP32_S3" in esp.calibration and esp.energy_mj_est is None
    nano, l4 = run("arduino_nano_33_ble_sense"), run("stm32l4")
    assert "not measured" in nano.calibration
    assert nano.latency_high_ms / nano.latency_ms_est > l4.latency_high_ms / l4.latency_ms_est  # board-out errors
    assert nano.latency_ms_est == pytest.approx(l4.latency_ms_est * 120 / 64, rel=1e-6)  # same core, clock ratio
    h7 = run("stm32h7")
    assert "core factor" in h7.calibration and "another runtime" in h7.energy_source
    sphere = run("azure_sphere_mt3620")
    assert sphere.runtime == "tflite_micro+cmsis_nn" and not sphere.fits  # its weights live in TCM/SYSRAM too
    assert "arena + weights 400,000 B > memory 262,144 B" in sphere.reasons[0]
    onnx = run("stm32l4", "onnx")
    assert not onnx.fits and onnx.runtime is None
    # no runtime loads it, so no latency or energy is estimated for it (an estimate is for the runtime that loads it)
    assert onnx.latency_ms_est is None and onnx.energy_mj_est is None and onnx.latency_text() == "no estimate"
    assert "no runtime of stm32l4 loads a onnx file" in onnx.note and "device/latency_ms_est" not in onnx.metrics()


def test_an_uncalibrated_estimate_is_never_shown_as_a_plain_figure():
    """Leaderboard and report cells, the report's axis label and the summary's text all carry the band or say
    'uncalibrated' (runs logged before bands existed count as uncalibrated)."""
    import pandas as pd

    from edgebench.devices.estimate import DeviceReport
    from edgebench.report.render import latency_cell
    from edgebench.report.table import latency_label

    assert latency_cell({"latency_ms_est": 12.34, "latency_low": 9.0, "latency_high": 20.0}) == "12.3 (9-20)"
    assert latency_cell({"latency_ms_est": 12.34}) == "~12.3 (uncalibrated)"
    assert latency_cell({"latency_ms_est": float("nan")}) == "–"
    df = pd.DataFrame({"device": ["stm32l4", "stm32l4"], "latency_ms": [10.0, 20.0],
                       "device/latency_calibrated": [1.0, float("nan")], "device.runtime": ["x_cube_ai"] * 2})
    assert "UNCALIBRATED" in latency_label(df, "stm32l4") and "x_cube_ai" in latency_label(df, "stm32l4")
    df["device/latency_calibrated"] = 1.0
    assert "UNCALIBRATED" not in latency_label(df, "stm32l4")
    r = DeviceReport("x", True, latency_ms_est=5.0, runtime="tflite")
    assert r.latency_text() == "~5 ms (uncalibrated)" and r.metrics()["device/latency_calibrated"] == 0.0


def test_the_arena_estimates_band_is_the_corpus_check_in_the_results():
    """results/tflm_zoo.json holds the arena corpus (at least 15 architectures, most out of sample, covering
    padding, depthwise, residual adds, pooling, concatenation, wide and deep MLPs) and the band a run states when it
    uses the estimate is that corpus's out-of-sample error range."""
    from edgebench.measure.memory import ARENA_ESTIMATE_BAND, ARENA_ESTIMATE_CORPUS
    from edgebench.report.figures.arena_corpus import corpus, summary

    rows = json.loads((ROOT / "results" / "tflm_zoo.json").read_text())["extra"]["arena_corpus"]
    assert len(rows) >= 15 and {r["model"] for r in rows} == set(corpus())
    for r in rows:
        assert r["error"] == pytest.approx(r["estimate"] / r["arena"] - 1)
    s = summary(rows)
    assert s["n_out_of_sample"] == ARENA_ESTIMATE_CORPUS
    assert ARENA_ESTIMATE_BAND == pytest.approx((s["min_error"], s["max_error"]), abs=0.005)
    covers = " ".join(r["covers"] for r in rows)
    for what in ("padding", "depthwise", "residual", "pooling", "concatenated", "wide MLP", "deep MLP"):
        assert what in covers, what


def test_the_simulated_kernel_counts_are_consistent():
    """The committed instruction-set simulation: every kernel's output matched the portable C build, and each
    per-unit figure is its count over its MACs (or elements)."""
    d = json.loads((ROOT / "edgebench" / "devices" / "data" / "cmsis_nn_cortex_m4.json").read_text())
    assert len(d["cmsis_nn_commit"]) == 40 and "cortex-m4" in d["cflags"]
    for k in d["kernels"]:
        assert k["matches_host_reference"] and k["status"] == 0, k["name"]
        if k.get("macs"):
            assert k["instructions_per_mac"] == pytest.approx(k["instructions"] / k["macs"], rel=1e-3)
            assert k["est_cycles"] >= k["instructions"]  # no instruction takes less than a cycle in the model
