"""Export of the deployable artifact: an ONNX file (with its external-data file, if any)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class Artifact:
    path: Path  # the file a runtime opens
    files: list[Path]  # every file of the artifact (e.g. model.onnx and model.onnx.data)
    format: str  # "onnx"
    exporter: str  # which exporter wrote it
    dtype: str  # the dtype the weights are stored in: fp32, fp16, int8


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: str | Path) -> Artifact:
    """Export ``model`` to ONNX at ``path``: torch.export-based exporter first, TorchScript-based as fallback."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(path.name + "*"):
        old.unlink()
    for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch._export", "torch.export"):
        logging.getLogger(name).setLevel(logging.WARNING)  # the exporter reports every graph pass at INFO
    was_training = model.training
    model.eval()
    exporter = "dynamo"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(model, (example_input,), str(path), dynamo=True, input_names=["input"],
                                  output_names=["logits"], verbose=False)
            except Exception as e:  # some graphs only export through TorchScript
                log.warning("dynamo ONNX export failed (%s: %s); using the TorchScript exporter",
                            type(e).__name__, str(e)[:200])
                for old in path.parent.glob(path.name + "*"):
                    old.unlink()
                exporter = "torchscript"
                torch.onnx.export(model, (example_input,), str(path), dynamo=False, input_names=["input"],
                                  output_names=["logits"])
    finally:
        model.train(was_training)
    files = sorted(p for p in path.parent.glob(path.name + "*") if p.is_file())
    return Artifact(path, files, "onnx", exporter, "fp32")
