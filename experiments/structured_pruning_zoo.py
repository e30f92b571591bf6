"""Which zoo models can structured pruning handle? Every model at Fashion-MNIST shape (1x28x28, 10 classes).

For each model: the method's pre-flight check, then Torch-Pruning at ratio 0.5 (L1 importance, output
layer kept), then a forward pass. Random weights (the dependency graph does not depend on them).

    python experiments/structured_pruning_zoo.py    # -> results/structured_pruning_zoo.md
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch_pruning as tp

from edgebench import methods
from edgebench.config import ConfigError, ModelConfig
from edgebench.measure import count_macs
from edgebench.measure.size import weight_layers
from edgebench.methods.pruning import StructuredPruningConfig
from edgebench.models import MODEL_NAMES, build_model


def main() -> None:
    lines = ["# Structured pruning across the zoo", "",
             f"`experiments/structured_pruning_zoo.py`, {time.strftime('%Y-%m-%d %H:%M')}: every model at 1x28x28 with 10 "
             "classes (torchvision models behind the input adapter), Torch-Pruning at ratio 0.5, L1 importance, output "
             "layer kept; then a forward pass.", "",
             "| model | result | params before | params after | MACs before | MACs after |", "|---|---|---:|---:|---:|---:|"]
    shape = (1, 28, 28)
    for name in MODEL_NAMES:
        torch.manual_seed(0)
        model = build_model(ModelConfig(name=name), shape, 10).eval()
        x = torch.randn(1, *shape)
        try:
            methods.build(StructuredPruningConfig(ratio=0.5)).check(model, x)
            p0, m0 = sum(p.numel() for p in model.parameters()), count_macs(model, x)
            tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.5,
                                 ignored_layers=[weight_layers(model)[-1][1]]).step()
            assert model(x).shape == (1, 10)
            p1, m1 = sum(p.numel() for p in model.parameters()), count_macs(model, x)
            lines.append(f"| {name} | pruned | {p0:,} | {p1:,} | {m0 / 1e6:.1f} M | {m1 / 1e6:.1f} M |")
        except ConfigError as e:
            lines.append(f"| {name} | refused: {e} | | | | |")
        except Exception as e:  # report, do not hide
            lines.append(f"| {name} | FAILED: {type(e).__name__}: {str(e)[:100]} | | | | |")
        print(lines[-1], flush=True)
    out = Path("results/structured_pruning_zoo.md")
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
