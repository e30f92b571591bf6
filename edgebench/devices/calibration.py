"""Published latency measurements that the roofline profiles (GPU, Edge TPU) are calibrated on, and the benchmark
models' definitions (the MLPerf Tiny reference models and others) whose graphs the op-level model reads.

Each point: a device profile, a model (built here so its MACs come from our own counter), the
input shape it was measured at, the dtype it ran in, and the published latency with its source.

``fit_device`` fits the roofline of estimate.py to a device's points: the compute efficiency and,
where the points can tell them apart (at least one point with depthwise convolutions and one
without), a separate depthwise efficiency; the profile's ``inference_overhead_s`` and
``layer_overhead_s`` are inputs, not fitted. The fit minimises the squared log error over the
points (a grid search in log space). With two or more points the leave-one-out error (refit
without the point, predict it) is the honest accuracy figure; with one point the fit is exact on
it and the error band is unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from edgebench.config import DeviceConfig
from edgebench.devices.estimate import BYTES, estimate_latency_s
from edgebench.measure.compute import LayerInfo, layer_profile

UNKNOWN_BAND = "unknown: one calibration point (the fit is exact on it)"


class ResNet8(nn.Module):
    """MLPerf Tiny's image-classification reference model (ResNet-8 for CIFAR-10, 32x32x3)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        blocks, cin = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks.append(nn.ModuleDict({
                "conv1": nn.Conv2d(cin, width, 3, stride, 1), "conv2": nn.Conv2d(width, width, 3, 1, 1),
                "short": nn.Conv2d(cin, width, 1, stride) if stride != 1 else nn.Identity(),
            }))
            cin = width
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = torch.relu(b["conv2"](torch.relu(b["conv1"](x))) + b["short"](x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, padding=None) -> nn.Sequential:
    padding = k // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class MobileNetV1(nn.Module):
    """MobileNet v1 (Howard et al. 2017): a 3x3 stem and 13 depthwise-separable blocks; ``alpha`` scales widths.

    alpha=1 at 224x224 is Coral's "MobileNet v1 (224x224)"; alpha=0.25 at 96x96 with 2 classes is MLPerf
    Tiny's visual-wake-words reference model.
    """

    CFG = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
           (512, 1), (1024, 2), (1024, 1))

    def __init__(self, alpha: float = 1.0, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        cin = int(32 * alpha)
        layers = [_conv_bn(in_channels, cin, 3, 2)]
        for width, stride in self.CFG:
            cout = int(width * alpha)
            layers += [_conv_bn(cin, cin, 3, stride, groups=cin), _conv_bn(cin, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class DSCNN(nn.Module):
    """MLPerf Tiny's keyword-spotting reference model: DS-CNN (Hello Edge, arXiv:1711.07128) on 49x10 MFCCs.

    A 10x4 stride-2 convolution to 64 channels, four depthwise-separable blocks (3x3 depthwise, 1x1 to
    64), average pooling and a 12-way classifier.
    """

    def __init__(self, num_classes: int = 12):
        super().__init__()
        layers = [_conv_bn(1, 64, (10, 4), 2, padding=(5, 1))]
        for _ in range(4):
            layers += [_conv_bn(64, 64, 3, groups=64), _conv_bn(64, 64, 1)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class ToyCarAutoencoder(nn.Module):
    """MLPerf Tiny's anomaly-detection reference model: a dense autoencoder 640-128x4-8-128x4-640."""

    def __init__(self, dims: int = 640):
        super().__init__()
        widths = [dims, 128, 128, 128, 128, 8, 128, 128, 128, 128]
        layers = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Linear(128, dims))

    def forward(self, x):
        return self.body(torch.flatten(x, 1))


def _tv(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build():
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kwargs)
    return build


@dataclass(frozen=True)
class CalibrationPoint:
    device: str
    model: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    dtype: str
    latency_ms: float
    source: str


_CORAL = "coral.ai/docs/edgetpu/benchmarks, Table 1 'Time per inference', Dev Board column: {model} {ms} ms"
_KENTAROY = ("github.com/kentaroy47/benchmark-FP32-FP16-INT8-with-TensorRT README, 'Hardware: Jetson Nano', "
             "TensorRT, latency of (1,3,256,256) inference: {model} {prec} {ms} ms")


POINTS = [
    # (the MCU profiles use the op-level model of edgebench.devices.published instead)
    # Coral Dev Board (Edge TPU, int8), Coral's own benchmark table
    CalibrationPoint("coral_dev_board", "MobileNet v1", MobileNetV1, (3, 224, 224), "int8", 2.4,
                     _CORAL.format(model="MobileNet v1 (224x224)", ms=2.4)),
    CalibrationPoint("coral_dev_board", "MobileNet v2", _tv("mobilenet_v2"), (3, 224, 224), "int8", 2.6,
                     _CORAL.format(model="MobileNet v2 (224x224)", ms=2.6)),
    CalibrationPoint("coral_dev_board", "Inception v1 (GoogLeNet)", _tv("googlenet", init_weights=False),
                     (3, 224, 224), "int8", 4.1, _CORAL.format(model="Inception v1 (224x224)", ms=4.1)),
    # Jetson Nano (TensorRT); the 4 GB kit: same 128-core Maxwell GPU and 25.6 GB/s as the 2 GB profile
    CalibrationPoint("jetson_nano_2gb", "ResNet-18", _tv("resnet18"), (3, 256, 256), "fp32", 26.0,
                     _KENTAROY.format(model="resnet18", prec="FP32", ms=26)),
    CalibrationPoint("jetson_nano_2gb", "ResNet-18", _tv("resnet18"), (3, 256, 256), "fp16", 18.0,
                     _KENTAROY.format(model="resnet18", prec="FP16", ms=18)),
    CalibrationPoint("jetson_nano_2gb", "ResNet-34", _tv("resnet34"), (3, 256, 256), "fp32", 48.0,
                     _KENTAROY.format(model="resnet34", prec="FP32", ms=48)),
    CalibrationPoint("jetson_nano_2gb", "ResNet-34", _tv("resnet34"), (3, 256, 256), "fp16", 30.0,
                     _KENTAROY.format(model="resnet34", prec="FP16", ms=30)),
    CalibrationPoint("jetson_nano_2gb", "ResNet-50", _tv("resnet50"), (3, 256, 256), "fp32", 79.0,
                     _KENTAROY.format(model="resnet50", prec="FP32", ms=79)),
    CalibrationPoint("jetson_nano_2gb", "ResNet-50", _tv("resnet50"), (3, 256, 256), "fp16", 42.0,
                     _KENTAROY.format(model="resnet50", prec="FP16", ms=42)),
    CalibrationPoint("jetson_nano_2gb", "MobileNet v2", _tv("mobilenet_v2"), (3, 224, 224), "fp32", 27.1622,
                     "github.com/snap-research/EfficientFormer issue #10: trtexec on a Jetson Nano 4G devkit, "
                     "mobilenetv2-7.onnx mean = 27.1622 ms (trtexec default precision, fp32)"),
]

# Published points outside a profile's model, estimated and reported (with why) but not fitted on.
VALIDATION = [
    (CalibrationPoint("coral_dev_board", "ResNet-50", _tv("resnet50"), (3, 299, 299), "int8", 56.0,
                      _CORAL.format(model="ResNet-50 V1 (299x299)", ms=56)),
     "its ~25 MB of int8 weights exceed the Edge TPU's ~8 MB on-chip parameter cache, so they stream from "
     "board memory every inference; the Coral profile has no bandwidth figure and cannot model that, so "
     "estimates of models over ~8 MB of weights are optimistic"),
]

# Published figures seen but not used, and why (kept here so the choice is visible).
NOT_USED = [
    "coral.ai/docs/edgetpu/benchmarks Dev Board: VGG16 343 ms, VGG19 357 ms, Inception v4 102 ms, ResNet-152 V2 "
    "151 ms, DenseNet 25 ms, SqueezeNet 2 ms, EfficientNet-EdgeTpu S/M/L -- VGG's 138M+ weights stream from "
    "off-chip memory, which the Coral profile cannot model (no bandwidth figure); the others are architectures "
    "(Inception v4, ResNet V2, EfficientNet-EdgeTpu) or variants (DenseNet, SqueezeNet) not built here",
    "google-coral/edgetpu issue #89: MNIST 784-128-10 on the Dev Board, 50k images in 1876 ms -- the timing "
    "method is not stated (batching, Python loop), so it was not used as a per-inference figure",
]


def point_layers(p: CalibrationPoint) -> list[LayerInfo]:
    return layer_profile(p.build().eval(), torch.zeros(1, *p.input_shape))


def _has_depthwise(layers: list[LayerInfo]) -> bool:
    return any(l.depthwise for l in layers)


def _layer_times(layers: list[LayerInfo], profile: DeviceConfig, dtype: str, grid: np.ndarray, depthwise: bool):
    """Per grid efficiency, the summed roofline time (s) of the layers whose depthwise flag equals ``depthwise``."""
    peak = profile.peak_ops[dtype]
    rate = profile.bandwidth_bytes_per_s * profile.memory_efficiency if profile.bandwidth_bytes_per_s else None
    total = np.zeros_like(grid)
    for l in layers:
        if l.depthwise != depthwise:
            continue
        t = 2 * l.macs / (peak * grid)
        if rate:
            t = np.maximum(t, (l.weight_params + l.input_elems + l.output_elems) * BYTES[dtype] / rate)
        total += t
    return total


def fit_device(profile: DeviceConfig, data: list[tuple[list[LayerInfo], str, float]]) -> tuple[float, float | None]:
    """Compute (and depthwise) efficiency minimising the squared log error over ``data`` = [(layers, dtype, ms)].

    The depthwise efficiency is fitted on its own only when the points include at least one model with
    depthwise convolutions and one without; otherwise it is None (depthwise layers use the compute one).
    """
    separate = any(_has_depthwise(l) for l, _, _ in data) and any(not _has_depthwise(l) for l, _, _ in data)
    lo, hi = 1e-5, 1.0
    best = (1.0, 1.0)
    for _ in range(3):  # coarse grid, then two refinements around the best point
        grid = np.geomspace(lo, hi, 241)
        loss = 0.0
        for layers, dtype, ms in data:
            fixed = profile.inference_overhead_s + len(layers) * profile.layer_overhead_s
            tc = _layer_times(layers, profile, dtype, grid, depthwise=False)
            td = _layer_times(layers, profile, dtype, grid, depthwise=True)
            pred = fixed + (tc[:, None] + td[None, :] if separate else (tc + td)[:, None])
            loss = loss + (np.log(pred * 1e3) - math.log(ms)) ** 2
        i, j = np.unravel_index(int(np.argmin(loss)), loss.shape)
        best = (float(grid[i]), float(grid[j]) if separate else None)
        step = (hi / lo) ** (1 / 240)
        lo, hi = max(1e-6, best[0] / step ** 3), min(1.0, best[0] * step ** 3)
        if separate:  # refine both axes on the same window scale around each optimum
            lo = min(lo, max(1e-6, best[1] / step ** 3))
            hi = max(hi, min(1.0, best[1] * step ** 3))
    return best


def _with(profile: DeviceConfig, eff: tuple[float, float | None]) -> DeviceConfig:
    return replace(profile, compute_efficiency=eff[0], depthwise_efficiency=eff[1])


def calibrate(profiles: dict[str, DeviceConfig]) -> dict[str, dict]:
    """Per device: the fitted efficiencies, each point's in-sample and leave-one-out estimate, the error band."""
    cache: dict = {}
    by_device: dict[str, list[CalibrationPoint]] = {}
    for p in POINTS:
        by_device.setdefault(p.device, []).append(p)
        key = (p.model, p.input_shape)
        if key not in cache:
            cache[key] = point_layers(p)
    out: dict[str, dict] = {}
    for device, pts in by_device.items():
        prof = profiles[device]
        data = [(cache[(p.model, p.input_shape)], p.dtype, p.latency_ms) for p in pts]
        eff = fit_device(prof, data)
        fitted = _with(prof, eff)
        rows = []
        for i, (p, (layers, dtype, ms)) in enumerate(zip(pts, data)):
            row = {"model": p.model, "input": list(p.input_shape), "dtype": dtype,
                   "macs": sum(l.macs for l in layers), "depthwise_macs": sum(l.macs for l in layers if l.depthwise),
                   "published_ms": ms, "source": p.source,
                   "fit_ms": estimate_latency_s(layers, fitted, dtype) * 1e3}
            row["fit_error"] = row["fit_ms"] / ms - 1
            if len(pts) > 1:
                loo = fit_device(prof, data[:i] + data[i + 1:])
                row["leave_one_out_ms"] = estimate_latency_s(layers, _with(prof, loo), dtype) * 1e3
                row["leave_one_out_error"] = row["leave_one_out_ms"] / ms - 1
            rows.append(row)
        d = {"compute_efficiency": eff[0], "depthwise_efficiency": eff[1],
             "inference_overhead_s": prof.inference_overhead_s, "layer_overhead_s": prof.layer_overhead_s,
             "n_points": len(pts), "points": rows}
        if len(pts) > 1:
            errs = [abs(r["leave_one_out_error"]) for r in rows]
            d["leave_one_out"] = {"mean_abs_error": sum(errs) / len(errs), "max_abs_error": max(errs),
                                  "min_error": min(r["leave_one_out_error"] for r in rows),
                                  "max_error": max(r["leave_one_out_error"] for r in rows)}
            d["error_band"] = (f"leave-one-out error {d['leave_one_out']['min_error']:+.0%} to "
                               f"{d['leave_one_out']['max_error']:+.0%} over {len(pts)} points "
                               f"(mean |error| {d['leave_one_out']['mean_abs_error']:.0%})")
        else:
            d["leave_one_out"] = None
            d["error_band"] = UNKNOWN_BAND
        val = [(p, why) for p, why in VALIDATION if p.device == device]
        if val:
            d["validation"] = []
            for p, why in val:
                layers = cache.setdefault((p.model, p.input_shape), point_layers(p))
                est = estimate_latency_s(layers, fitted, p.dtype) * 1e3
                d["validation"].append({"model": p.model, "input": list(p.input_shape), "dtype": p.dtype,
                                        "macs": sum(l.macs for l in layers), "published_ms": p.latency_ms,
                                        "source": p.source, "estimate_ms": est,
                                        "error": est / p.latency_ms - 1, "not_fitted_because": why})
        out[device] = d
    return out


# ---- graphs of the published benchmark models, as a TFLite converter lays them out --------------------------------

# model key -> (description, builder, input shape (C, H, W) or (features,))
BENCHMARK_MODELS = {
    "mlperf_ic": ("ResNet-8, MLPerf Tiny image classification, 32x32x3", ResNet8, (3, 32, 32)),
    "mlperf_kws": ("DS-CNN, MLPerf Tiny keyword spotting, 49x10x1 MFCCs", DSCNN, (1, 49, 10)),
    "mlperf_vww": ("MobileNet v1 0.25, MLPerf Tiny visual wake words, 96x96x3", lambda: MobileNetV1(0.25, 2), (3, 96, 96)),
    "mlperf_ad": ("FC autoencoder, MLPerf Tiny anomaly detection, 640 inputs", ToyCarAutoencoder, (640,)),
    "person_detection": ("MobileNet v1 0.25, TFLite Micro person_detection example, 96x96x1",
                         lambda: MobileNetV1(0.25, 2, in_channels=1), (1, 96, 96)),
    "mobilenet_v3_small_224": ("MobileNet v3 small (torchvision), 224x224x3, 1000 classes",
                               _tv("mobilenet_v3_small"), (3, 224, 224)),
    "mobilenet_v1_224": ("MobileNet v1 1.0, 224x224x3, 1000 classes", MobileNetV1, (3, 224, 224)),
    "mobilenet_v2_224": ("MobileNet v2 (torchvision), 224x224x3, 1000 classes", _tv("mobilenet_v2"), (3, 224, 224)),
    "inception_v1_224": ("Inception v1 / GoogLeNet (torchvision), 224x224x3",
                         _tv("googlenet", init_weights=False, aux_logits=False), (3, 224, 224)),
    "resnet50_299": ("ResNet-50 (torchvision), 299x299x3", _tv("resnet50"), (3, 299, 299)),
}


def benchmark_graph(key: str, seed: int = 0) -> dict:
    """Convert one benchmark model (random weights) to an int8 TFLite file and read back its ops."""
    import tempfile

    from edgebench.devices.ops import Op, ops_from_tflite
    from edgebench.export import QuantSpec, export

    what, build, shape = BENCHMARK_MODELS[key]
    torch.manual_seed(seed)
    net = build().eval()
    x = torch.rand(1, *shape)
    with tempfile.TemporaryDirectory() as tmp:
        art = export("tflite_int8", net, x, tmp, QuantSpec("int8", calibration=[torch.rand(4, *shape)]))
        ops = ops_from_tflite(art.path)
    fixed = []
    first_input_channels = shape[0] if len(shape) == 3 else None
    for i, o in enumerate(ops):
        if o.name in ("TRANSPOSE", "PAD"):
            continue
        if o.kind == "depthwise" and first_input_channels == 1 and not any(f.kind in ("conv", "depthwise") for f in fixed):
            o = Op("conv", o.macs, o.elems, o.weights, "CONV_2D")  # one input channel: Keras keeps CONV_2D
        fixed.append(o)
    return {"what": what, "input": list(shape),
            "source": "edgebench's int8 TFLite export of edgebench.devices.calibration's definition, "
                      "input TRANSPOSE and PAD ops dropped (the Keras reference files have neither)",
            "ops": [o.to_dict() for o in fixed]}
