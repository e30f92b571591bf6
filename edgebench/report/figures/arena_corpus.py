"""The arena corpus: how close ``memory/tflm_arena_bytes_est`` comes to the arena TFLite Micro measures, on
architectures it was not tuned on.

Every model is converted with random weights and random calibration to an int8 TFLite Micro file (the arena does
not depend on the weights' values), its arena measured by TFLite Micro (``export=tflite_micro``), and compared with
edgebench's estimate made from the PyTorch model before any conversion. The corpus: the zoo's small nets, the MLPerf
Tiny reference models, and generated nets that each stress one thing the planner must handle (padding, depthwise,
residual adds, pooling, concatenation, wide and deep MLPs). The estimate's constants were read off the allocation
reports of lenet_300_100, lenet5, conv2 and resnet20 (``tuned`` = in sample); every other row is out of sample.
"""

from __future__ import annotations

import tempfile
from typing import Any, Callable

TUNED_ON = ("lenet_300_100", "lenet5", "conv2", "resnet20")


def _generated() -> dict[str, tuple[str, Callable, tuple[int, ...]]]:
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 16, 3, padding=1)
            self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                                      nn.Conv2d(16, 16, 3, padding=1)) for _ in range(2))
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            for b in self.blocks:
                x = torch.relu(x + b(x))
            return self.fc(x.mean((2, 3)))

    class Concat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 8, 1)
            self.b = nn.Conv2d(1, 8, 3, padding=1)
            self.c = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(1, 8, 1))
            self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(24, 16, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten(), nn.Linear(16, 10))

        def forward(self, x):
            return self.head(torch.cat([self.a(x), self.b(x), self.c(x)], 1))

    def mlp(*widths):
        layers = [nn.Flatten()]
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers[:-1])

    return {
        "gen_padded_strided": ("5x5 and 3x3 stride-2 convolutions with zero padding",
                               lambda: nn.Sequential(nn.Conv2d(1, 8, 5, 2, 2), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                                                     nn.ReLU(), nn.Flatten(), nn.Linear(16 * 7 * 7, 10)), (1, 28, 28)),
        "gen_depthwise_separable": ("two depthwise-separable blocks (3x3 depthwise, 1x1 pointwise)",
                                    lambda: nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU(),
                                                          nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.Conv2d(16, 32, 1),
                                                          nn.ReLU(), nn.Conv2d(32, 32, 3, 2, 1, groups=32),
                                                          nn.Conv2d(32, 32, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                                          nn.Flatten(), nn.Linear(32, 10)), (1, 28, 28)),
        "gen_residual_adds": ("two residual blocks (the skip tensor lives across the block)", Residual, (1, 28, 28)),
        "gen_pooling": ("max and average pooling between convolutions",
                        lambda: nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                                              nn.Conv2d(16, 32, 3, 1, 1), nn.ReLU(), nn.AvgPool2d(2),
                                              nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                              nn.Flatten(), nn.Linear(32, 10)), (1, 28, 28)),
        "gen_concatenation": ("an inception-style block: three branches concatenated", Concat, (1, 28, 28)),
        "gen_wide_mlp": ("a wide MLP, 784-1024-1024-10", lambda: mlp(784, 1024, 1024, 10), (1, 28, 28)),
        "gen_deep_mlp": ("a deep MLP, 784 then eight layers of 64, 10", lambda: mlp(784, *[64] * 8, 10), (1, 28, 28)),
    }


def corpus() -> dict[str, tuple[str, Callable, tuple[int, ...]]]:
    """name -> (what it covers, builder, input shape)."""
    from edgebench.config import ModelConfig
    from edgebench.devices.calibration import DSCNN, MobileNetV1, ResNet8, ToyCarAutoencoder
    from edgebench.models import build_model

    def zoo(name, shape=(1, 28, 28)):
        return lambda: build_model(ModelConfig(name=name), shape, 10)

    out = {name: (f"zoo: {name}" + (" (tuned on)" if name in TUNED_ON else ""), zoo(name), (1, 28, 28))
           for name in ("lenet_300_100", "lenet5", "conv2", "conv4", "conv6", "conv2_small", "resnet20",
                        "mobilenet_v2", "mobilenet_v3_small")}
    out |= {
        "mlperf_resnet8": ("MLPerf Tiny image classification, 32x32x3", ResNet8, (3, 32, 32)),
        "mlperf_dscnn": ("MLPerf Tiny keyword spotting, 49x10x1", DSCNN, (1, 49, 10)),
        "mlperf_mobilenet_v1_025": ("MLPerf Tiny visual wake words, 96x96x3", lambda: MobileNetV1(0.25, 2), (3, 96, 96)),
        "mlperf_autoencoder": ("MLPerf Tiny anomaly detection, 640 inputs", ToyCarAutoencoder, (640,)),
    }
    return out | _generated()


def _float_ops(path) -> list[str]:
    """Operators of the converted file whose output is float32: parts the converter left unquantised (their
    tensors take 4 bytes an element, which an estimate of a full-integer file does not expect)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    dtypes = {t["index"]: t["dtype"].__name__ for t in it.get_tensor_details()}
    return [o["op_name"] for o in it._get_ops_details() if dtypes[o["outputs"][0]] == "float32"]


def measure(name: str, seed: int = 0) -> dict[str, Any]:
    """One corpus model: its measured arena, the estimate and the relative error (estimate / arena - 1)."""
    import torch

    from edgebench.export import QuantSpec, export
    from edgebench.measure.memory import peak_activation_bytes, tflm_arena_estimate

    what, build, shape = corpus()[name]
    torch.manual_seed(seed)
    net = build().eval()
    x = torch.rand(1, *shape)
    with tempfile.TemporaryDirectory() as tmp:
        art = export("tflite_micro", net, x, tmp, QuantSpec("int8", calibration=[torch.rand(16, *shape)]))
        size = art.path.stat().st_size
        float_ops = _float_ops(art.path)
    est = tflm_arena_estimate(net, x)["total"]
    return {"model": name, "covers": what, "in_sample": name in TUNED_ON, "bytes_artifact": size,
            "arena": art.arena_bytes, "estimate": est, "error": est / art.arena_bytes - 1, "float_ops": float_ops,
            "peak_activations": peak_activation_bytes(net, x, 1), "params": sum(p.numel() for p in net.parameters())}


def summary(rows: list[dict]) -> dict[str, Any]:
    import statistics

    out = [r["error"] for r in rows if not r["in_sample"]]
    if not out:
        return {}
    return {"n_out_of_sample": len(out), "min_error": min(out), "max_error": max(out),
            "median_error": statistics.median(out), "median_abs_error": statistics.median(abs(e) for e in out),
            "within_10pct": sum(abs(e) <= 0.10 for e in out), "within_25pct": sum(abs(e) <= 0.25 for e in out)}


def markdown(rows: list[dict], seed: int) -> list[str]:
    s = summary(rows)
    lines = ["## The arena estimate on a corpus of architectures", "",
             f"{len(rows)} architectures converted with random weights and calibration (seed {seed}); the estimate "
             "(`memory/tflm_arena_bytes_est`, made from the PyTorch model before any conversion) against the arena "
             "TFLite Micro measures for the int8 file. Rows marked *tuned* are the four models whose allocation "
             "reports set the estimate's constants; the rest are out of sample.", ""]
    if s:
        lines += [f"**Out of sample ({s['n_out_of_sample']} architectures):** error (estimate / arena - 1) from "
                  f"{s['min_error']:+.0%} to {s['max_error']:+.0%}, median {s['median_error']:+.0%} (median |error| "
                  f"{s['median_abs_error']:.0%}); within 10%: {s['within_10pct']}, within 25%: {s['within_25pct']}. "
                  "This range is the band a run states when it uses the estimate (no TFLite Micro file written).", ""]
    lines += ["| model | covers | params | int8 file (B) | measured arena (B) | estimate (B) | error | peak activations (B) "
              "| float32 ops left by the converter |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: r["error"]):
        lines.append(f"| {r['model']} | {r['covers']}{' (tuned)' if r['in_sample'] and 'tuned' not in r['covers'] else ''} "
                     f"| {r['params']:,} | {r['bytes_artifact']:,} | {r['arena']:,} | {r['estimate']:,} | "
                     f"{r['error']:+.1%} | {r['peak_activations']:,} | {', '.join(r.get('float_ops', [])) or 'none'} |")
    floats = [r["model"] for r in rows if r.get("float_ops")]
    if floats:
        lines += ["", f"The converter left float32 operators in {', '.join(floats)} (last column): those tensors take "
                  "4 bytes an element in the arena, which the estimate (of a full-integer file) does not expect, and "
                  "TFLite Micro runs those ops in float. A run that writes such a file logs the measured arena, not "
                  "the estimate."]
    return lines + [""]
