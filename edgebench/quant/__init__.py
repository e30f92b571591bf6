"""Quantisation: weight quantisers, half precision, QAT fake quantisation, KURE.

Methods (``edgebench.methods.quantization``) use this package and return a ``QuantSpec``; the int8,
fp16 and bf16 files are written by the exporters in :mod:`edgebench.export`, which also hold the
host runtimes (``OnnxPredictor``, ``load_program``).
"""

from edgebench.quant.kure import KureLoss, kurtosis
from edgebench.quant.qat import Int8FakeQuant
from edgebench.quant.quantizers import (Quantized, SharedCodebook, UniformSTE, kmeans_quantize, quantized_bits,
                                        uniform_quantize)
from edgebench.quant.runtime import HalfPrecision

__all__ = ["KureLoss", "kurtosis", "Int8FakeQuant", "Quantized", "SharedCodebook", "UniformSTE", "kmeans_quantize",
           "quantized_bits", "uniform_quantize", "HalfPrecision"]
