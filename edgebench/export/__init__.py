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
run resolves the exporter (``resolve``: a ConfigError for an unknown name or an impossible
choice, before any training), runs its ``precheck`` on the untrained model, writes the artifact,
evaluates it with the exporter's own ``predictor`` where its numerics differ from the eager model,
and hands it to ``measure_model``, which times it with the exporter's ``runner`` beside the dense
model's file of its ``baseline`` exporter and checks fit by the ``devices`` that load it.

A new format is one module: a function decorated with ``@register(name, dtype=..., format=...,
runtime=..., predictor=..., [runner=, baseline=, devices=, precheck=, label=, after=])`` (see
:mod:`edgebench.export.registry`), imported below (or by the user before the run).
"""

from edgebench.export.artifact import Artifact, QuantSpec, strip_debug_info
from edgebench.export.registry import (AUTO, DEVICE, EXPORTERS, Exporter, check, compatible, export, for_device, get,
                                       loaded_by, names, of, register, resolve)
from edgebench.export.onnx import export_onnx  # registers onnx, onnx_fp16
from edgebench.export.ort_int8 import quantize_int8  # registers onnx_int8
from edgebench.export.torch_export import export_program  # registers torch_export
from edgebench.export import tflite  # registers tflite, tflite_int8, tflite_micro (packages imported when used)
from edgebench.export.host import OnnxPredictor, load_program, predictor

__all__ = ["Artifact", "QuantSpec", "strip_debug_info", "AUTO", "DEVICE", "for_device", "EXPORTERS", "Exporter", "check", "compatible",
           "export", "get", "loaded_by", "names", "of", "register", "resolve", "export_onnx", "quantize_int8", "export_program",
           "OnnxPredictor", "load_program", "predictor"]
