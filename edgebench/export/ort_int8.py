"""``onnx_int8``: a real int8 ONNX file made by ONNX Runtime's quantiser from a step's :class:`QuantSpec`.

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

from edgebench.export.artifact import Artifact, QuantSpec, strip_debug_info
from edgebench.export.onnx import DEVICES, PACKAGES, export_onnx, ort_predictor, ort_runner
from edgebench.export.registry import register

log = logging.getLogger(__name__)


def quantize_int8(model: nn.Module, example_input: torch.Tensor, out_path: str | Path, *, mode: str = "static",
                  calibration: Iterable[torch.Tensor] = (), per_channel: bool = True, reduce_range: bool = True,
                  calibrate_method: str = "minmax") -> Artifact:
    """Export ``model`` (eval mode, fp32) and quantise it into a real int8 ONNX file at ``out_path``.

    ``calibration`` yields input batches (static mode only; ignored by dynamic mode).
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_dynamic, quantize_static)

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
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


@register("onnx_int8", dtype="int8", format="onnx", runtime="onnxruntime", needs_spec=True, eager_equivalent=False,
          predictor=ort_predictor, runner=ort_runner, baseline="onnx", devices=DEVICES, label="ONNX",
          after="+method=ptq_int8 (or qat_int8)", packages=PACKAGES)
def onnx_int8(model: nn.Module, example: torch.Tensor, spec: QuantSpec | None, out_dir: Path) -> Artifact:
    assert spec is not None  # the registry refuses onnx_int8 without a spec
    model.eval()
    return quantize_int8(model, example, out_dir / "model.onnx", mode=spec.mode, calibration=spec.calibration,
                         per_channel=spec.per_channel, reduce_range=spec.reduce_range,
                         calibrate_method=spec.calibrate_method)
