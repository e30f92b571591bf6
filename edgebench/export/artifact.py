"""What an exporter writes (:class:`Artifact`) and what a quantising step asks it for (:class:`QuantSpec`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class Artifact:
    path: Path  # the file a runtime opens
    files: list[Path]  # every file of the artifact (e.g. model.onnx and model.onnx.data)
    format: str  # onnx | torch.export | tflite | tflite_micro
    exporter: str  # which exporter wrote it (dynamo, torchscript, torch.export)
    dtype: str  # the dtype the weights are stored in: fp32, fp16, bf16, int8
    runtime: str = "onnxruntime"  # what runs it on the host: onnxruntime, litert (.tflite), or torch (bf16)
    note: str = ""  # how it was produced / what runs it, logged as the tag export.note
    name: str = ""  # the registry name of the exporter (onnx, onnx_fp16, onnx_int8, torch_export), tag export.name
    arena_bytes: int | None = None  # TFLite Micro: the tensor arena measured by running the file in TFLM
    extra_files: list[Path] = field(default_factory=list)  # deployment files beside it (C array source), not sized


@dataclass
class QuantSpec:
    """What a quantising step hands the exporter instead of writing a file itself.

    ``dtype`` picks the exporter under ``export=auto`` (fp16 -> onnx_fp16, bf16 -> torch_export,
    int8 -> onnx_int8); the other fields are the int8 quantiser's settings and its calibration batches.
    """

    dtype: str  # fp16 | bf16 | int8
    mode: str = "static"  # int8: static (calibrated activation ranges) | dynamic (MatMul/Gemm only)
    per_channel: bool = True  # int8: a weight scale per output channel
    reduce_range: bool = True  # int8: 7-bit weight codes
    calibrate_method: str = "minmax"  # int8 static: minmax | entropy | percentile
    calibration: list[torch.Tensor] = field(default_factory=list, repr=False)  # int8 static: input batches


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
