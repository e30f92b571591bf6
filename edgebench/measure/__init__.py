"""Measurements of a model: size and compute (latency, memory and export come with issue 3).

Every function takes any ``nn.Module``; the pipeline calls them for every run.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> dict[str, float]:
    """``size/params``, ``size/params_nonzero`` and ``size/bytes_fp32`` (= 4 bytes x params)."""
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return {"size/params": params, "size/params_nonzero": nonzero, "size/bytes_fp32": 4 * params}


def count_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass (FlopCounterMode FLOPs / 2).

    Counts matrix products and convolutions; elementwise and normalisation ops are excluded.
    ``example_input`` should have batch size 1.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example_input)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def basic_metrics(model: nn.Module, example_input: torch.Tensor) -> dict[str, float]:
    return {**count_params(model), "compute/macs": count_macs(model, example_input)}


__all__ = ["count_params", "count_macs", "basic_metrics"]
