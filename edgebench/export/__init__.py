"""Exporters in one registry: ``(model, example, spec) -> Artifact``, chosen by ``export=`` (default ``auto``).

=============  =====  ============  ============  ==========================================
name           dtype  format        host runtime  when ``export=auto`` picks it
=============  =====  ============  ============  ==========================================
onnx           fp32   onnx          onnxruntime   a float model (no quantisation spec)
onnx_fp16      fp16   onnx          onnxruntime   a step's spec says fp16 (+method=fp16)
onnx_int8      int8   onnx          onnxruntime   a step's spec says int8 (ptq_int8, qat_int8)
torch_export   bf16   torch.export  torch         a step's spec says bf16 (+method=bf16)
tflite         fp32   tflite        litert        never (export=tflite)
tflite_int8    int8   tflite        litert        never (export=tflite_int8 after ptq_int8 / qat_int8)
tflite_micro   int8   tflite_micro  litert        never (export=tflite_micro: + TFLM arena, C array)
=============  =====  ============  ============  ==========================================

A step never writes a file: a quantising step returns its model plus a :class:`QuantSpec`; the
pipeline resolves the exporter (``resolve``: a ConfigError for an unknown name or an impossible
choice, before any training), writes the artifact, evaluates it where its numerics differ from
the fp32 model (``predictor``), and hands it to ``measure_model``. A new format is one function
decorated with ``@register(name, dtype=..., format=..., runtime=...)``.
"""

from edgebench.export.artifact import Artifact, QuantSpec, strip_debug_info
from edgebench.export.registry import AUTO, DEVICE, EXPORTERS, Exporter, check, compatible, export, for_device, get, names, register, resolve
from edgebench.export.onnx import export_onnx  # registers onnx, onnx_fp16
from edgebench.export.ort_int8 import quantize_int8  # registers onnx_int8
from edgebench.export.torch_export import export_program  # registers torch_export
from edgebench.export import tflite  # registers tflite, tflite_int8, tflite_micro (packages imported when used)
from edgebench.export.runtime import OnnxPredictor, load_program, predictor

__all__ = ["Artifact", "QuantSpec", "strip_debug_info", "AUTO", "DEVICE", "for_device", "EXPORTERS", "Exporter", "check", "compatible",
           "export", "get", "names", "register", "resolve", "export_onnx", "quantize_int8", "export_program",
           "OnnxPredictor", "load_program", "predictor"]
