"""ONNX exporters: ``onnx`` (fp32) and ``onnx_fp16``, both run by ONNX Runtime on the host."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from edgebench.export.artifact import Artifact, QuantSpec, strip_debug_info
from edgebench.export.registry import register

log = logging.getLogger(__name__)


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: str | Path, dtype: str = "fp32") -> Artifact:
    """Export ``model`` to ONNX at ``path``: torch.export-based exporter first, TorchScript-based as fallback.

    The batch dimension is dynamic (one file serves batch-1 latency and batched test evaluation);
    the other dimensions are fixed at ``example_input``'s.
    """
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
                                  output_names=["logits"], verbose=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
            except Exception as e:  # some graphs only export through TorchScript
                log.warning("dynamo ONNX export failed (%s: %s); using the TorchScript exporter",
                            type(e).__name__, str(e)[:200])
                for old in path.parent.glob(path.name + "*"):
                    old.unlink()
                exporter = "torchscript"
                torch.onnx.export(model, (example_input,), str(path), dynamo=False, input_names=["input"],
                                  output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    finally:
        model.train(was_training)
    strip_debug_info(path)
    files = sorted(p for p in path.parent.glob(path.name + "*") if p.is_file())
    return Artifact(path, files, "onnx", exporter, dtype)


def as_half(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``model`` stored and run in ``dtype`` behind an fp32 interface (a copy; a model already so is used as is)."""
    from edgebench.quant.runtime import HalfPrecision

    if isinstance(model, HalfPrecision) and model.dtype == dtype:
        return model.eval()
    return HalfPrecision(copy.deepcopy(model).eval(), dtype).eval()


@register("onnx", dtype="fp32", format="onnx", runtime="onnxruntime")
def onnx_fp32(model: nn.Module, example: torch.Tensor, spec: QuantSpec | None, out_dir: Path) -> Artifact:
    return export_onnx(model, example, out_dir / "model.onnx")


@register("onnx_fp16", dtype="fp16", format="onnx", runtime="onnxruntime")
def onnx_fp16(model: nn.Module, example: torch.Tensor, spec: QuantSpec | None, out_dir: Path) -> Artifact:
    art = export_onnx(as_half(model, torch.float16), example, out_dir / "model.onnx", dtype="fp16")
    art.note = ("fp16 weights and activations; ONNX Runtime's CPU provider has few fp16 kernels and inserts "
                "casts to fp32 around the others, so host latency reflects that, not native fp16")
    return art
