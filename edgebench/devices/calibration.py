"""Published latency measurements that the device efficiencies are calibrated on.

Each point: a device profile, a model (built here so its MACs come from our own counter), the
input shape it was measured at, the dtype it ran in, and the published latency with its source.
``fit_efficiency`` solves the roofline of estimate.py for the compute efficiency that reproduces
each point; a device's efficiency is the geometric mean over its points, and with two or more
points the leave-one-out error is the honest accuracy figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from edgebench.config import DeviceConfig
from edgebench.devices.estimate import estimate_latency_s
from edgebench.measure.compute import layer_profile


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


def _tv(name: str) -> Callable[[], nn.Module]:
    def build():
        import torchvision

        return torchvision.models.get_model(name, weights=None)
    return build


@dataclass(frozen=True)
class CalibrationPoint:
    device: str
    model: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]
    dtype: str
    latency_ms: float
    source: str


POINTS = [
    CalibrationPoint("stm32l4", "ResNet-8 (MLPerf Tiny IC)", ResNet8, (3, 32, 32), "int8", 1000 / 4.407,
                     "mlcommons/tiny_results_v1.0 closed/STMicroelectronics NUCLEO_L4R5ZI ic: 4.407 inf/s"),
    CalibrationPoint("stm32h7", "ResNet-8 (MLPerf Tiny IC)", ResNet8, (3, 32, 32), "int8", 1000 / 18.401,
                     "mlcommons/tiny_results_v1.0 closed/STMicroelectronics NUCLEO-H7A3ZI-Q ic: 18.401 inf/s"),
    CalibrationPoint("coral_dev_board", "MobileNet v2", _tv("mobilenet_v2"), (3, 224, 224), "int8", 2.6,
                     "coral.ai/docs/edgetpu/benchmarks: Dev Board, MobileNet v2 224x224, 2.6 ms"),
    CalibrationPoint("coral_dev_board", "ResNet-50", _tv("resnet50"), (3, 299, 299), "int8", 56.0,
                     "coral.ai/docs/edgetpu/benchmarks: Dev Board, ResNet-50 V1 299x299, 56 ms"),
]


def point_layers(p: CalibrationPoint):
    return layer_profile(p.build().eval(), torch.zeros(1, *p.input_shape))


def fit_efficiency(profile: DeviceConfig, layers, dtype: str, latency_ms: float) -> float:
    """The compute efficiency at which the roofline estimate equals ``latency_ms`` (bisection in log space)."""
    lo, hi = 1e-6, 1.0
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        t = estimate_latency_s(layers, replace(profile, compute_efficiency=mid), dtype) * 1e3
        lo, hi = (lo, mid) if t < latency_ms else (mid, hi)
    return math.sqrt(lo * hi)


def calibrate(profiles: dict[str, DeviceConfig]) -> dict[str, dict]:
    """Per device: the fitted efficiency, each point's own fit, and leave-one-out errors."""
    out: dict[str, dict] = {}
    cache = {}
    for p in POINTS:
        key = (p.model, p.input_shape)
        if key not in cache:
            cache[key] = point_layers(p)
        eta = fit_efficiency(profiles[p.device], cache[key], p.dtype, p.latency_ms)
        macs = sum(l.macs for l in cache[key])
        out.setdefault(p.device, {"points": []})["points"].append(
            {"model": p.model, "input": list(p.input_shape), "dtype": p.dtype, "macs": macs,
             "published_ms": p.latency_ms, "source": p.source, "efficiency": eta})
    for device, d in out.items():
        etas = [pt["efficiency"] for pt in d["points"]]
        d["efficiency"] = math.exp(sum(map(math.log, etas)) / len(etas))
        if len(etas) > 1:
            for i, pt in enumerate(d["points"]):
                others = etas[:i] + etas[i + 1:]
                eta = math.exp(sum(map(math.log, others)) / len(others))
                p = [q for q in POINTS if q.device == device][i]
                est = estimate_latency_s(cache[(p.model, p.input_shape)],
                                         replace(profiles[device], compute_efficiency=eta), p.dtype) * 1e3
                pt["leave_one_out_ms"] = est
                pt["leave_one_out_error"] = est / pt["published_ms"] - 1
    return out
