"""``torch_export``: a bf16 ``torch.export`` program (``model.pt2``) that PyTorch loads and runs.

ONNX Runtime has no bf16 convolution on CPU (and the ONNX exporter keeps conv weights in fp32
around casts), so the bf16 deployable is a program, not an ONNX file. PyTorch runs it on the host (accuracy and
latency, the program itself); the dense baseline it is timed against is the fp32 model in PyTorch eager.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgebench.export.artifact import Artifact, QuantSpec
from edgebench.export.onnx import as_half
from edgebench.export.registry import register


def load_program(path: str | Path):
    """A saved ``torch.export`` program as a function from inputs to logits (it is always in eval mode)."""
    module = torch.export.load(str(path)).module()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run


def program_predictor(artifact: Artifact, threads: int = 0):
    return load_program(artifact.path)


def export_program(model: nn.Module, example_input: torch.Tensor, path: str | Path, dtype: str) -> Artifact:
    """Save ``model`` as a ``torch.export`` program at ``path`` (dynamic batch)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = example_input[:1].repeat(2, *([1] * (example_input.dim() - 1)))  # own storage; batch 1 would be specialised
    program = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return Artifact(path, [path], "torch.export", "torch.export", dtype, "torch")


@register("torch_export", dtype="bf16", format="torch.export", runtime="torch", predictor=program_predictor,
          devices=("pytorch",), label="torch.export", after="+method=bf16")
def torch_export_bf16(model: nn.Module, example: torch.Tensor, spec: QuantSpec | None, out_dir: Path) -> Artifact:
    art = export_program(as_half(model, torch.bfloat16), example, out_dir / "model.pt2", "bf16")
    art.note = ("bf16 weights and activations in a torch.export program, run by PyTorch "
                "(no ONNX Runtime bf16 convolution on CPU)")
    return art
