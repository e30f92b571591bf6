"""Quantisation: weight quantisers, the int8/half-precision runtime adapter, QAT fake quantisation, KURE.

Methods (``edgebench.methods.quantization``) use only this package; it is the one place that
knows ONNX Runtime's quantisation tools.
"""

from edgebench.quant.kure import KureLoss, kurtosis
from edgebench.quant.qat import Int8FakeQuant
from edgebench.quant.quantizers import (Quantized, SharedCodebook, UniformSTE, kmeans_quantize, quantized_bits,
                                        uniform_quantize)
from edgebench.quant.runtime import HalfPrecision, OnnxPredictor, export_half, load_program, quantize_int8

__all__ = ["KureLoss", "kurtosis", "Int8FakeQuant", "Quantized", "SharedCodebook", "UniformSTE", "kmeans_quantize",
           "quantized_bits", "uniform_quantize", "HalfPrecision", "OnnxPredictor", "export_half", "load_program",
           "quantize_int8"]
