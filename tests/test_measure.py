"""Each figure of the measurement API against an independent count."""

from __future__ import annotations

import os
import time

import pytest
import torch
from torch import nn

from edgebench.config import ConfigError, DeviceConfig, MeasureConfig, ModelConfig, Runtime
from edgebench.devices import evaluate_device, estimate_latency_s
from edgebench.devices.calibration import POINTS, point_layers
from edgebench.export import export
from edgebench.measure import (
    count_macs,
    layer_profile,
    load_device,
    macs_nonzero,
    measure_latency,
    measure_model,
    peak_activation_bytes,
    sparse_bytes,
)
from edgebench.measure.size import tensor_sparse_bits
from edgebench.models import build_model


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(10, 20), nn.Linear(20, 5)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(x)))


def test_peak_memory_of_a_chain_by_hand():
    # x(10) -> a(20) -> relu(20) -> b(5): the largest live pair is a's output and relu's output
    assert peak_activation_bytes(Chain(), torch.zeros(1, 10)) == (20 + 20) * 4
    assert peak_activation_bytes(Chain(), torch.zeros(1, 10), bytes_per_element=1) == 40


def test_peak_memory_keeps_the_residual_input_live():
    # x stays live until the add: at relu, x(8) + a-out(8) + relu-out(8) are live
    assert peak_activation_bytes(Residual(), torch.zeros(1, 8)) == 24 * 4


def test_peak_memory_lenet_300_100():
    net = build_model(ModelConfig(name="lenet_300_100"), (1, 28, 28), 10)
    assert peak_activation_bytes(net, torch.zeros(1, 1, 28, 28)) == (784 + 300) * 4


def test_macs_nonzero_scale_with_weight_density():
    net = build_model(ModelConfig(name="lenet_300_100"), (1, 28, 28), 10)
    x = torch.zeros(1, 1, 28, 28)

    def nonzero_weights():  # at batch 1 a linear layer does one MAC per nonzero weight
        return sum(int(torch.count_nonzero(m.weight)) for m in (net.fc1, net.fc2, net.fc3))

    assert count_macs(net, x) == 784 * 300 + 300 * 100 + 100 * 10
    # (a random init can contain an exact 0.0: count, do not assume)
    assert macs_nonzero(net, x) == nonzero_weights()
    with torch.no_grad():
        net.fc1.weight[:, :392].zero_()  # half of fc1
    assert macs_nonzero(net, x) == nonzero_weights() <= 392 * 300 + 300 * 100 + 100 * 10


def test_conv_layer_profile_by_hand():
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    (layer,) = layer_profile(conv, torch.zeros(1, 3, 8, 8))
    assert layer.macs == 8 * 8 * 4 * 3 * 3 * 3 == count_macs(conv, torch.zeros(1, 3, 8, 8))
    with torch.no_grad():
        conv[0].weight[0].zero_()  # one of four filters
    assert layer_profile(conv, torch.zeros(1, 3, 8, 8))[0].macs_nonzero == 8 * 8 * 3 * 27


def test_sparse_size_by_hand():
    t = torch.zeros(100, 10)
    t[0, :5] = 1.0  # 5 nonzeros of 1000
    # dense 32000 bits; bitmask 1000 + 5*32 = 1160; CSR 5*(32+32) + 101*32 = 3552
    assert tensor_sparse_bits(t, 32) == 1160
    assert tensor_sparse_bits(torch.ones(10, 10), 32) == 3200  # dense wins when nothing is zero
    lin = nn.Linear(10, 100, bias=False)
    with torch.no_grad():
        lin.weight.copy_(t)
    assert sparse_bytes(lin) == 1160 // 8


def test_exported_artifact_size_is_the_files_size(tmp_path):
    net = build_model(ModelConfig(name="lenet_300_100"), (1, 28, 28), 10)
    x = torch.zeros(1, 1, 28, 28)
    m = measure_model(net, x, config=MeasureConfig(latency=False), artifact=export("onnx", net, x, tmp_path))
    files = sorted(tmp_path.iterdir())
    assert files and all(f.name.startswith("model.onnx") for f in files)
    assert m["size/bytes_artifact"] == sum(os.path.getsize(f) for f in files)
    assert 4 * 266_610 <= m["size/bytes_artifact"] <= 4 * 266_610 + 64_000
    assert 0 < m["size/bytes_gzip"] < m["size/bytes_artifact"]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 1, 28, 28)
    ref = net.eval()(x).detach().numpy()
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert abs(out - ref).max() < 1e-4


def test_measure_model_contract_keys_and_speedups():
    dense = build_model(ModelConfig(name="lenet_300_100"), (1, 8, 8), 10)
    sparse = build_model(ModelConfig(name="lenet_300_100"), (1, 8, 8), 10)
    with torch.no_grad():
        for p in sparse.parameters():
            p.mul_((torch.rand_like(p) > 0.9).float())
    m = measure_model(sparse, torch.zeros(1, 1, 8, 8), baseline=dense,
                      config=MeasureConfig(runtime=Runtime.torch, export=False, threads=1))
    for key in ("size/params", "size/params_nonzero", "size/sparsity", "size/bytes_sparse", "compute/macs",
                "compute/macs_nonzero", "compute/theoretical_speedup", "memory/peak_activation_bytes",
                "latency/host_p50_ms", "latency/host_p90_ms", "latency/host_iqr_ms", "latency/host_threads",
                "latency/host_speedup", "size/compression_ratio", "device/fits", "device/flash_bytes",
                "device/ram_bytes"):
        assert key in m, key
    assert 0.85 < m["size/sparsity"] < 0.95
    assert 7 < m["compute/theoretical_speedup"] < 14
    assert m["latency/host_threads"] == 1
    assert "size/bytes_artifact" not in m  # not exported: left out, not made up
    assert "device/latency_ms_est" not in m  # the host is measured, not estimated


def test_interleaved_latency_sees_a_known_ratio():
    runners = {"fast": lambda: time.sleep(0.002), "slow": lambda: time.sleep(0.004)}
    s = measure_latency(runners, threads=1, warmup=2, calls=100, max_noise=10)
    assert 1.5 < s["slow"].p50_ms / s["fast"].p50_ms < 2.5
    assert s["fast"].calls == 100 and s["fast"].p90_ms >= s["fast"].p50_ms


def _lenet_layers():
    net = build_model(ModelConfig(name="lenet_300_100"), (1, 28, 28), 10)
    return layer_profile(net, torch.zeros(1, 1, 28, 28))


def test_coral_without_the_edgetpu_compiler_runs_the_file_on_its_cpu(monkeypatch):
    """No edgetpu_compiler: the .tflite runs on the Dev Board's Cortex-A53 under LiteRT (fp32 too), and the summary
    says so; with the compiler, the Edge TPU path: int8 only."""
    from edgebench.devices import estimate as est

    monkeypatch.setattr(est.shutil, "which", lambda name: None)
    r = evaluate_device(load_device("coral_dev_board"), _lenet_layers(), dtype="fp32",
                        artifact_bytes=1_070_000, peak_activation_bytes=4336, artifact_format="tflite")
    assert r.fits and r.runtime == "tflite" and "edgetpu_compiler" in r.note and "CPU" in r.note
    monkeypatch.setattr(est.shutil, "which", lambda name: "/usr/bin/" + name)
    r = evaluate_device(load_device("coral_dev_board"), _lenet_layers(), dtype="fp32",
                        artifact_bytes=1_070_000, peak_activation_bytes=4336, artifact_format="tflite")
    assert r.runtime == "tflite_edgetpu" and not r.fits and "int8 only" in r.reasons[0]
    assert r.metrics()["device/fits"] == 0.0


def test_fit_decisions_on_microcontrollers():
    layers = _lenet_layers()
    nano = load_device("arduino_nano_33_ble_sense")
    ok = evaluate_device(nano, layers, dtype="fp32", artifact_bytes=1_000_000, peak_activation_bytes=4336)
    assert ok.fits and ok.ram_bytes == 4336  # weights stay in flash on an MCU
    too_big = evaluate_device(nano, layers, dtype="fp32", artifact_bytes=1_100_000, peak_activation_bytes=4336)
    assert not too_big.fits and "storage" in too_big.reasons[0]
    too_much_ram = evaluate_device(nano, layers, dtype="int8", artifact_bytes=100_000, peak_activation_bytes=300_000)
    assert not too_much_ram.fits and "memory" in too_much_ram.reasons[0]
    pi = evaluate_device(load_device("raspberry_pi_4"), layers, dtype="fp32", artifact_bytes=1_000_000,
                         peak_activation_bytes=4336)
    assert pi.fits and pi.ram_bytes == 1_004_336  # a Linux board loads the weights into RAM
    assert pi.latency_ms_est > 0 and pi.energy_mj_est == pytest.approx(5.0 * pi.latency_ms_est)


def test_device_without_peak_gets_no_estimate():
    r = evaluate_device(load_device("vcu128"), _lenet_layers(), dtype="int8", artifact_bytes=300_000,
                        peak_activation_bytes=1000)
    assert r.fits and r.latency_ms_est is None and "no peak compute" in r.note


@pytest.mark.parametrize("point", POINTS, ids=[f"{p.device}-{p.model}" for p in POINTS])
def test_estimates_reproduce_their_calibration_points(point):
    """The committed profile gives what results/device_calibration.json says it fits (the README's error
    table is true of the code), and no fitted point is off by more than that device's worst held-out error."""
    import json
    from pathlib import Path

    est = estimate_latency_s(point_layers(point), load_device(point.device), point.dtype) * 1e3
    cal = json.loads((Path(__file__).parent.parent / "results" / "device_calibration.json").read_text())["roofline"][point.device]
    rec = next(r for r in cal["points"] if r["model"] == point.model and r["dtype"] == point.dtype)
    assert est == pytest.approx(rec["fit_ms"], rel=0.01)
    if cal["n_points"] == 1:
        assert est == pytest.approx(point.latency_ms, rel=0.01)  # one point: exact by construction
    else:
        worst = max(abs(r["leave_one_out_error"]) for r in cal["points"] if r["leave_one_out_error"] is not None)
        assert abs(est / point.latency_ms - 1) <= worst, (est, point.latency_ms, worst)


def test_roofline_memory_term_by_hand():
    prof = DeviceConfig(name="toy", peak_ops={"fp32": 1e9}, bandwidth_bytes_per_s=1e6, compute_efficiency=1.0,
                        memory_efficiency=1.0)
    layers = _lenet_layers()
    # fc1: 2*235200 ops / 1e9 = 0.47 ms; bytes (235200 + 784 + 300) * 4 / 1e6 = 0.94 s -> memory-bound
    t = estimate_latency_s(layers, prof, "fp32")
    expected = sum(max(2 * l.macs / 1e9, (l.weight_params + l.input_elems + l.output_elems) * 4 / 1e6) for l in layers)
    assert t == pytest.approx(expected) and t > 0.9


def test_a_user_profile_is_one_yaml_file(tmp_path):
    f = tmp_path / "my_board.yaml"
    f.write_text("name: my_board\nkind: mcu\npeak_ops: {int8: 1.0e9}\nmemory_bytes: 131072\n"
                 "storage_bytes: 524288\ndtypes: [int8]\nweights_in_ram: false\n")
    prof = load_device(f)
    assert prof.memory_bytes == 131072 and prof.dtypes == ["int8"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndtypes: [int4]\n")
    with pytest.raises(ConfigError, match="unknown dtype 'int4'"):
        load_device(bad)


def test_every_profile_names_sources():
    from tests.conftest import group_options

    for name in group_options("device"):
        prof = load_device(name)
        assert prof.sources, f"{name} has no sources"
        assert prof.calibration, name


def test_host_speed_summary_on_a_known_sample():
    """experiments/host_speed.py: the speedup is the geometric mean over processes with a t interval on the log
    ratios, and the verdict needs the interval to exclude 1x after Holm over every comparison of the file."""
    import importlib.util
    import math
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("host_speed", Path(__file__).parents[1] / "experiments/host_speed.py")
    hs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hs)

    def proc(int8, low):  # p50 ms of one process: fp32 10 ms; int8 and low rank given
        return {"m|onnxruntime|1": {"fp32": {"p50_ms": 10.0, "noisy": False}, "int8": {"p50_ms": int8, "noisy": False},
                                    "low rank": {"p50_ms": low, "noisy": False}}}

    rows = {r["variant"]: r for r in hs.summarise([proc(5.0, 9.0), proc(5.1, 11.0), proc(4.9, 10.5), proc(5.0, 9.5),
                                                   proc(5.05, 10.2)])}
    i8, low = rows["int8"], rows["low rank"]
    assert i8["speedup"] == pytest.approx(math.exp(sum(math.log(10 / t) for t in (5, 5.1, 4.9, 5, 5.05)) / 5))
    assert i8["low"] > 1.9 and i8["high"] < 2.1 and i8["verdict"] == "faster" and i8["p_holm"] < 0.05
    assert low["low"] < 1 < low["high"] and low["verdict"] == "not distinguishable"
    assert hs.has_vnni("avx2 avx512f avx512_vnni") and not hs.has_vnni("avx2 fma")
