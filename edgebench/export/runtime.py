"""The host runtimes that run an artifact: ONNX Runtime for ONNX files, LiteRT for .tflite, PyTorch for torch.export."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgebench.export.artifact import Artifact


def load_program(path: str | Path):
    """A saved ``torch.export`` program as a function from inputs to logits (it is always in eval mode)."""
    module = torch.export.load(str(path)).module()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run


class OnnxPredictor:
    """Run an ONNX file on batches of torch tensors: ``logits = OnnxPredictor(path)(x)`` (for test accuracy)."""

    def __init__(self, path: str | Path, threads: int = 0):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(out)


def predictor(artifact: Artifact) -> Callable[[torch.Tensor], torch.Tensor]:
    """``logits = predictor(artifact)(x)``: the artifact run in its host runtime (test accuracy of the deployable)."""
    if artifact.runtime == "onnxruntime":
        return OnnxPredictor(artifact.path)
    if artifact.format == "torch.export":
        return load_program(artifact.path)
    if artifact.runtime == "litert":
        from edgebench.export.tflite import LiteRT

        return LiteRT(artifact.path)
    raise ValueError(f"no host runtime for a {artifact.format} artifact run by {artifact.runtime}")
