"""Quantisation-aware training for the int8 artifact: fake quantisation that mimics ONNX Runtime's int8.

During fine-tuning every conv and linear layer computes with
* weights rounded to the int8 grid ONNX Runtime will use (symmetric, per output channel or per
  tensor; 7-bit codes with ``reduce_range``), gradients passed straight through;
* inputs rounded to uint8 with an affine scale from a running min/max (momentum 0.01).

Afterwards the rounded weights are baked in and the hooks removed; the model is then calibrated
and quantised by the `onnx_int8` exporter (:func:`edgebench.export.quantize_int8`) like any fp32 model. With
per-channel weights the grid survives ONNX Runtime's folding of BatchNorm into the convolution
(folding rescales each output channel, and so its scale, by one factor).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgebench.measure.size import weight_layers
from edgebench.quant.quantizers import UniformSTE


class ActivationFakeQuant:
    """Forward pre-hook: uint8 affine fake quantisation of a layer's input with running min/max."""

    def __init__(self, momentum: float = 0.01):
        self.momentum = momentum
        self.lo: float | None = None
        self.hi: float | None = None

    def __call__(self, module: nn.Module, args):
        x = args[0]
        if module.training:
            lo, hi = min(float(x.detach().min()), 0.0), max(float(x.detach().max()), 0.0)
            if self.lo is None:
                self.lo, self.hi = lo, hi
            else:
                self.lo += self.momentum * (lo - self.lo)
                self.hi += self.momentum * (hi - self.hi)
        if self.lo is None or self.hi <= self.lo:
            return None
        scale = (self.hi - self.lo) / 255
        zero = int(min(max(round(-self.lo / scale), 0), 255))
        return (torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255), *args[1:])


class Int8FakeQuant:
    """Attach int8 fake quantisation to ``model``'s conv and linear layers; ``remove()`` bakes the weights."""

    def __init__(self, model: nn.Module, per_channel: bool = True, reduce_range: bool = True):
        self.model = model
        self.handles = []
        self.layers = [m for _, m in weight_layers(model)]
        bits = 7 if reduce_range else 8
        for m in self.layers:
            bucket = m.weight[0].numel() if per_channel else 0  # one bucket per output channel
            parametrize.register_parametrization(m, "weight", UniformSTE(bits, True, bucket))
            self.handles.append(m.register_forward_pre_hook(ActivationFakeQuant()))

    def remove(self) -> nn.Module:
        for h in self.handles:
            h.remove()
        for m in self.layers:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        self.handles = []
        return self.model
