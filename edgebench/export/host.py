"""An artifact run on the host by the exporter that owns its format (:attr:`Exporter.predictor`): ONNX Runtime for
ONNX files, LiteRT for .tflite, PyTorch for torch.export, or whatever a registered exporter names."""

from __future__ import annotations

from typing import Callable

import torch

from edgebench.export.artifact import Artifact
from edgebench.export.onnx import OnnxPredictor
from edgebench.export.registry import of
from edgebench.export.torch_export import load_program

__all__ = ["predictor", "OnnxPredictor", "load_program"]


def predictor(artifact: Artifact, threads: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """``logits = predictor(artifact)(x)``: the artifact run in its host runtime (test accuracy of the deployable)."""
    return of(artifact).predict(artifact, threads)
