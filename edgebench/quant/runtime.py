"""Half precision as a model transform (:class:`HalfPrecision`).

The files themselves are written by the exporters in :mod:`edgebench.export` (``onnx_fp16``,
``torch_export`` for bf16, ``onnx_int8`` for ONNX Runtime int8 from a step's ``QuantSpec``), which
also hold the host runtimes (``OnnxPredictor``, ``load_program``).
"""

from __future__ import annotations

import torch
from torch import nn


class HalfPrecision(nn.Module):
    """A model stored and run in fp16 or bf16 behind an fp32 interface (inputs cast in, logits cast out)."""

    def __init__(self, net: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.net = net.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.dtype)).float()
