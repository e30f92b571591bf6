"""MACs of a forward pass: the dense count, what a sparse kernel would do, and a per-layer profile."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgebench.measure.size import weight_layers


def count_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass (FlopCounterMode FLOPs / 2).

    Counts matrix products and convolutions; elementwise and normalisation ops are excluded.
    Run outside ``torch.inference_mode`` (counters see nothing inside it).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example_input)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)


@dataclass
class LayerInfo:
    """One convolution or linear layer as executed: what the roofline estimate needs."""

    name: str
    kind: str  # conv | linear
    macs: int  # dense MACs
    macs_nonzero: int  # MACs that touch a nonzero weight
    weight_params: int
    weight_nonzero: int
    input_elems: int
    output_elems: int
    depthwise: bool = False  # a depthwise convolution (groups == in_channels > 1): devices run it at their own efficiency


def layer_profile(model: nn.Module, example_input: torch.Tensor) -> list[LayerInfo]:
    """Conv and linear layers in execution order, with their MACs and tensor sizes at this input."""
    layers: list[LayerInfo] = []
    hooks = []

    def hook(name):
        def fn(mod, inputs, output):
            w = mod.weight
            nnz = int(torch.count_nonzero(w))
            depthwise = False
            if isinstance(mod, nn.modules.conv._ConvNd):
                per_out = output.numel() // w.shape[0]  # output positions per output channel
                kind = "conv"
                depthwise = mod.groups > 1 and mod.groups == mod.in_channels
            else:
                per_out = output.numel() // w.shape[0]  # rows of the input
                kind = "linear"
            layers.append(LayerInfo(name, kind, per_out * w.numel(), per_out * nnz, w.numel(), nnz,
                                    inputs[0].numel(), output.numel(), depthwise))
        return fn

    for name, mod in weight_layers(model):
        hooks.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return layers


def macs_nonzero(model: nn.Module, example_input: torch.Tensor, total_macs: int | None = None,
                 layers: list[LayerInfo] | None = None) -> int:
    """MACs a sparse kernel would do: conv/linear MACs scale with their weights' density.

    Matrix products outside conv/linear modules (e.g. attention) count as dense. Pass ``layers``
    (a ``layer_profile`` at this input) to avoid profiling the model again.
    """
    total = count_macs(model, example_input) if total_macs is None else total_macs
    layers = layer_profile(model, example_input) if layers is None else layers
    return int(total - sum(l.macs for l in layers) + sum(l.macs_nonzero for l in layers))
