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
    format: str  # "onnx" or "torch.export"
    exporter: str  # which exporter wrote it
    dtype: str  # the dtype the weights are stored in: fp32, fp16, bf16, int8
    runtime: str = "onnxruntime"  # what runs it on the host: onnxruntime, or torch where ORT has no kernels
    note: str = ""  # how it was produced / what runs it, logged as the tag export.note


def strip_debug_info(path: Path) -> None:
    """Keep what a runtime needs (graph, weights, input/output types) in one file; drop the rest.

    Dropped: the exporter's per-node debug metadata (source locations, module paths; ~50% of a
    small int8 file) and the intermediate shape annotations (``value_info``) left by shape
    inference, which runtimes recompute at load. Applied to every artifact, fp32 and low precision
    alike, so their sizes compare like with like. Weights stay inside the .onnx file unless it
    would pass protobuf's 2 GB limit.
    """
    import onnx

    model = onnx.load(str(path))  # with any external data
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.graph.value_info[:]
    for old in path.parent.glob(path.name + "*"):
        old.unlink()
    large = sum(t.ByteSize() for t in model.graph.initializer) > 1_800_000_000
    onnx.save(model, str(path), save_as_external_data=large, location=path.name + ".data" if large else None)


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
