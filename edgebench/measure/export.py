"""Moved to :mod:`edgebench.export` (the exporter registry); kept so old imports keep working."""

from edgebench.export import Artifact, export_onnx, strip_debug_info

__all__ = ["Artifact", "export_onnx", "strip_debug_info"]
