"""Real low-precision artifacts and how they run: ONNX Runtime int8 (static and dynamic) and half precision.

The one place that knows the quantisation back end. Static int8 follows what measured fastest on
this kind of x86 CPU (shared/guide/environment.md): ``quant_pre_process`` (shape inference, BN
folding, graph optimisation), then QDQ with U8 activations and S8 weights, per-channel weights and
``reduce_range`` (7-bit weights, which avoids the saturation of the u8*s8 instructions of CPUs
without VNNI). Dynamic int8 quantises MatMul/Gemm only: ONNX Runtime's dynamic convolution
(ConvInteger) is several times slower than fp32 on these CPUs.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from edgebench.measure.export import Artifact, export_onnx, strip_debug_info

log = logging.getLogger(__name__)


def _quiet() -> None:
    for name in ("onnxruntime.quantization",):
        logging.getLogger(name).setLevel(logging.WARNING)


def quantize_int8(model: nn.Module, example_input: torch.Tensor, out_path: str | Path, *, mode: str = "static",
                  calibration: Iterable[torch.Tensor] = (), per_channel: bool = True, reduce_range: bool = True,
                  calibrate_method: str = "minmax") -> Artifact:
    """Export ``model`` (eval mode, fp32) and quantise it into a real int8 ONNX file at ``out_path``.

    ``calibration`` yields input batches (static mode only; ignored by dynamic mode).
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_dynamic, quantize_static)

    _quiet()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgebench-int8-") as tmp:
        tmp = Path(tmp)
        fp32 = export_onnx(model, example_input[:1], tmp / "fp32" / "model.onnx")
        pre = tmp / "pre.onnx"
        quant_pre_process(str(fp32.path), str(pre), skip_symbolic_shape=True)
        if mode == "static":
            batches = [x.detach().cpu().numpy().astype(np.float32) for x in calibration]
            if not batches:
                raise ValueError("static int8 quantisation needs calibration batches (method.calibration_batches >= 1)")

            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.it = iter(batches)

                def get_next(self):
                    b = next(self.it, None)
                    return None if b is None else {"input": b}

            methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                       "percentile": CalibrationMethod.Percentile}
            quantize_static(str(pre), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=per_channel, reduce_range=reduce_range,
                            calibrate_method=methods[calibrate_method])
            note = (f"ONNX Runtime static int8: QDQ, U8 activations / S8 weights, "
                    f"{'per-channel' if per_channel else 'per-tensor'} weights, reduce_range={reduce_range}, "
                    f"{calibrate_method} calibration on {sum(len(b) for b in batches)} training images")
        elif mode == "dynamic":
            quantize_dynamic(str(pre), str(out_path), weight_type=QuantType.QInt8, per_channel=per_channel,
                             reduce_range=reduce_range, op_types_to_quantize=["MatMul", "Gemm"])
            note = ("ONNX Runtime dynamic int8: MatMul/Gemm weights int8, activations quantised at run time; "
                    "convolutions stay fp32")
        else:
            raise ValueError(f"unknown int8 mode {mode!r}; use static or dynamic")
    strip_debug_info(out_path)
    return Artifact(out_path, [out_path], "onnx", fp32.exporter, "int8", "onnxruntime", note)


class HalfPrecision(nn.Module):
    """A model stored and run in fp16 or bf16 behind an fp32 interface (inputs cast in, logits cast out)."""

    def __init__(self, net: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.net = net.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.dtype)).float()


def export_half(model: HalfPrecision, example_input: torch.Tensor, out_dir: str | Path) -> Artifact:
    """The half-precision deployable in ``out_dir``.

    fp16: an ONNX file, run by ONNX Runtime. bf16: ONNX Runtime has no bf16 convolution on CPU (and
    the ONNX exporter keeps conv weights in fp32 around casts), so the deployable is a
    ``torch.export`` program (``model.pt2``, bf16 weights) that PyTorch loads and runs.
    """
    out_dir = Path(out_dir)
    if model.dtype == torch.float16:
        art = export_onnx(model, example_input[:1], out_dir / "model.onnx", dtype="fp16")
        art.note = ("fp16 weights and activations; ONNX Runtime's CPU provider has few fp16 kernels and inserts "
                    "casts to fp32 around the others, so host latency reflects that, not native fp16")
        return art
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.pt2"
    x = example_input[:1].repeat(2, *([1] * (example_input.dim() - 1)))  # own storage; batch 1 would be specialised
    program = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return Artifact(path, [path], "torch.export", "torch.export", "bf16", "torch",
                    "bf16 weights and activations in a torch.export program, run by PyTorch (no ONNX Runtime bf16 convolution on CPU)")


def load_program(path: str | Path):
    """A saved ``torch.export`` program as a function from inputs to logits (it is always in eval mode)."""
    module = torch.export.load(str(path)).module()

    def run(x: torch.Tensor) -> torch.Tensor:
        return module(x)

    return run


class OnnxPredictor:
    """Run an ONNX file on batches of torch tensors: ``logits = OnnxPredictor(path)(x)`` (for test accuracy)."""

    def __init__(self, path: str | Path, threads: int = 0):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(out)
