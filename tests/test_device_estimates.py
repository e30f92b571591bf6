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


def test_calibration_json_matches_the_points():
    res = json.loads((ROOT / "results" / "device_calibration.json").read_text())
    by_device = {}
    for p in cal.POINTS:
        by_device[p.device] = by_device.get(p.device, 0) + 1
    for device, n in by_device.items():
        d = res[device]
        assert d["n_points"] == n
        if n == 1:
            assert d["leave_one_out"] is None and "unknown" in d["error_band"]
        else:
            assert len([p for p in d["points"] if "leave_one_out_error" in p]) == n
        prof = load_device(device)
        assert prof.compute_efficiency == pytest.approx(d["compute_efficiency"], rel=1e-3)
        if d["depthwise_efficiency"] is None:
            assert prof.depthwise_efficiency is None
        else:
            assert prof.depthwise_efficiency == pytest.approx(d["depthwise_efficiency"], rel=1e-3)
        assert prof.inference_overhead_s == d["inference_overhead_s"]
