"""ONNX exporters: ``onnx`` (fp32) and ``onnx_fp16``, and ONNX Runtime, which runs every ONNX file on the host
(:class:`OnnxPredictor` for test accuracy, :func:`onnxruntime_runner` for latency; ``onnx_int8`` uses them too)."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from edgebench.export.artifact import Artifact, QuantSpec, strip_debug_info
from edgebench.export.registry import register

log = logging.getLogger(__name__)

DEVICES = ("onnxruntime", "tensorrt")  # device runtimes that load an ONNX file (trtexec builds its engine from it)
PACKAGES = ("onnx", "onnxruntime", "numpy")


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


def onnxruntime_runner(path: str | Path, example_input: torch.Tensor, threads: int) -> Callable[[], object]:
    """One batch-1 call of an ONNX file in ONNX Runtime, set up for timing (sequential, no spinning pool threads)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting pool threads: they would steal the CPU from the runnable measured next
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    feed = {name: example_input.detach().cpu().numpy()}

    def run():
        return sess.run(None, feed)

    return run


def ort_predictor(artifact: Artifact, threads: int = 0) -> OnnxPredictor:
    return OnnxPredictor(artifact.path, threads)


def ort_runner(artifact: Artifact, example: torch.Tensor, threads: int) -> Callable[[], object]:
    return onnxruntime_runner(artifact.path, example, threads)


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


# fp32 ONNX computes what the eager model does: its test accuracy is the eager model's (accuracy_from_file=False)
@register("onnx", dtype="fp32", format="onnx", runtime="onnxruntime", predictor=ort_predictor, runner=ort_runner,
          baseline="onnx", devices=DEVICES, label="ONNX", accuracy_from_file=False, packages=PACKAGES)
def onnx_fp32(model: nn.Module, example: torch.Tensor, spec: QuantSpec | None, out_dir: Path) -> Artifact:
    return export_onnx(model, example, out_dir / "model.onnx")


@register("onnx_fp16", dtype="fp16", format="onnx", runtime="onnxruntime", predictor=ort_predictor, runner=ort_runner,
          baseline="onnx", devices=DEVICES, label="ONNX", after="+method=fp16", packages=PACKAGES)
def onnx_fp16(model: nn.Module, example: torch.Tensor, spec: QuantSpec | None, out_dir: Path) -> Artifact:
    art = export_onnx(as_half(model, torch.float16), example, out_dir / "model.onnx", dtype="fp16")
    art.note = ("fp16 weights and activations; ONNX Runtime's CPU provider has few fp16 kernels and inserts "
                "casts to fp32 around the others, so host latency reflects that, not native fp16")
    return art
