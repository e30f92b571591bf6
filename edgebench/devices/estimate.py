"""What a model costs on a target device: does it fit, and estimated latency and energy.

Fit: the artifact's format must be one the device's runtimes run as they are (each exporter lists the
device runtimes that load its file: ``edgebench.export.loaded_by``; an ONNX file on a microcontroller
does not fit, whatever its size), the device must support the model's dtype,
the artifact must fit the device's storage, and the working memory must fit its memory: the
tensor arena TFLite Micro measured when the artifact is a ``tflite_micro`` file
(``ram_source = tflm_arena``), else the estimated peak activations (``estimate``), plus the weights
where the device loads them into RAM. Latency is an estimate from a per-layer roofline:

    t_layer = max(2 * MACs / (peak_ops[dtype] * compute_efficiency),
                  bytes_moved / (bandwidth * memory_efficiency)) + layer_overhead_s
    bytes_moved = (weights + input + output elements) * bytes per element

summed over the convolution and linear layers in execution order (other ops are not modelled).
A device without bandwidth figure (on-chip memory, MCUs) gets the compute term only.
Energy = power_w x latency. Both carry the ``_est`` suffix in MLflow.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgebench import export
from edgebench.config import DeviceConfig, DeviceKind
from edgebench.measure.compute import LayerInfo

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


@dataclass
class DeviceReport:
    name: str
    fits: bool
    reasons: list[str] = field(default_factory=list)  # why it does not fit (empty when it fits)
    flash_bytes: int = 0
    ram_bytes: int = 0
    latency_ms_est: float | None = None
    energy_mj_est: float | None = None
    note: str = ""  # why an estimate is missing, or what it assumes
    ram_source: str = "estimate"  # tflm_arena: ram_bytes holds TFLite Micro's measured arena; estimate: peak activations

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"device/fits": float(self.fits), "device/flash_bytes": self.flash_bytes,
                                 "device/ram_bytes": self.ram_bytes}
        if self.latency_ms_est is not None:
            out["device/latency_ms_est"] = self.latency_ms_est
        if self.energy_mj_est is not None:
            out["device/energy_mj_est"] = self.energy_mj_est
        return out


def host_profile(profile: DeviceConfig, results_dir: str | Path = ".") -> DeviceConfig:
    """Fill the host profile's memory and storage from this machine."""
    if profile.kind != DeviceKind.host:
        return profile
    mem = profile.memory_bytes or os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    d = Path(results_dir)
    while not d.exists() and d != d.parent:
        d = d.parent
    disk = profile.storage_bytes or shutil.disk_usage(d).free
    return replace(profile, memory_bytes=int(mem), storage_bytes=int(disk))


def _check_estimate_fields(profile: DeviceConfig) -> None:
    """The estimate's own profile fields: a depthwise efficiency in (0, 1] and no negative overhead."""
    dw = profile.depthwise_efficiency
    if dw is not None and not 0 < dw <= 1:
        raise ValueError(f"device.depthwise_efficiency must be in (0, 1] or null, got {dw}")
    if profile.inference_overhead_s < 0:
        raise ValueError(f"device.inference_overhead_s must be >= 0, got {profile.inference_overhead_s}")


def estimate_latency_s(layers: list[LayerInfo], profile: DeviceConfig, dtype: str) -> float | None:
    """Roofline estimate of one batch-1 inference in seconds; None when the profile has no peak for ``dtype``.

        t = inference_overhead_s + sum over layers of
            max(2 * MACs / (peak_ops[dtype] * efficiency), bytes_moved / (bandwidth * memory_efficiency))
            + layer_overhead_s

    where ``efficiency`` is ``depthwise_efficiency`` for depthwise convolutions (``LayerInfo.depthwise``)
    when the profile sets one and ``compute_efficiency`` otherwise. The per-inference overhead (invoke,
    kernel launches, transfers) is added once, so a tiny model costs at least that much.
    """
    peak = profile.peak_ops.get(dtype)
    if not peak:
        return None
    _check_estimate_fields(profile)
    size = BYTES[dtype]
    compute_rate = peak * profile.compute_efficiency
    depthwise_rate = peak * (profile.depthwise_efficiency or profile.compute_efficiency)
    memory_rate = profile.bandwidth_bytes_per_s * profile.memory_efficiency if profile.bandwidth_bytes_per_s else None
    total = profile.inference_overhead_s
    for layer in layers:
        t = 2 * layer.macs / (depthwise_rate if getattr(layer, "depthwise", False) else compute_rate)
        if memory_rate:
            moved = (layer.weight_params + layer.input_elems + layer.output_elems) * size
            t = max(t, moved / memory_rate)
        total += t + profile.layer_overhead_s
    return total


# Which device runtimes load which file, and how to get one, is each exporter's (Exporter.devices, .after):
# edgebench.export.loaded_by(format), edgebench.export.registry.how_to_get(runtimes).
EDGETPU_NOTE = ("int8 .tflite not compiled for the Edge TPU (edgetpu_compiler is not installable here): ops the "
                "Edge TPU lacks would fall back to its CPU, which this estimate does not model")


def format_reason(profile: DeviceConfig, artifact_format: str) -> str | None:
    """Why ``profile`` cannot run an artifact of ``artifact_format``, with what to do; None when one of its runtimes can."""
    if export.loaded_by(artifact_format) & set(profile.runtimes):
        return None
    fixes = export.registry.how_to_get(profile.runtimes)
    todo = f"; use {fixes}" if fixes else "; edgebench writes no artifact its runtimes load"
    return f"{profile.name} runs {', '.join(profile.runtimes)}, which cannot load a {artifact_format} file{todo}"


def evaluate_device(profile: DeviceConfig, layers: list[LayerInfo], *, dtype: str, artifact_bytes: int,
                    peak_activation_bytes: int, artifact_format: str | None = None,
                    arena_bytes: int | None = None) -> DeviceReport:
    """Fit check and estimates of one deployable model (its format, dtype, file size and memory) on ``profile``.

    ``artifact_format`` None (nothing exported) skips the format check, and the note says so.
    ``arena_bytes`` (TFLite Micro's measured arena) replaces ``peak_activation_bytes``, the estimated
    working memory (on a TFLite Micro device, int8: the arena estimate; else the peak activations).
    """
    working = arena_bytes if arena_bytes is not None else peak_activation_bytes
    ram = working + (artifact_bytes if profile.weights_in_ram else 0)
    reasons = []
    if artifact_format is not None and profile.runtimes and profile.kind != DeviceKind.host:
        why = format_reason(profile, artifact_format)
        if why:
            reasons.append(why)
    if dtype not in profile.dtypes:
        reasons.append(f"{profile.name} runs {', '.join(profile.dtypes)} only; this model is {dtype}"
                       + (" (quantise it to int8)" if "int8" in profile.dtypes else ""))
    if profile.storage_bytes is not None and artifact_bytes > profile.storage_bytes:
        reasons.append(f"model file {artifact_bytes:,} B > storage {profile.storage_bytes:,} B")
    if profile.memory_bytes is not None and ram > profile.memory_bytes:
        what = "TFLite Micro arena" if arena_bytes is not None else "estimated working memory"
        what += " + weights" if profile.weights_in_ram else ""
        reasons.append(f"{what} {ram:,} B > memory {profile.memory_bytes:,} B")
    report = DeviceReport(profile.name, not reasons, reasons, artifact_bytes, ram,
                          ram_source="tflm_arena" if arena_bytes is not None else "estimate")
    notes = []
    if artifact_format is None and profile.kind != DeviceKind.host:
        notes.append("format not checked: no artifact was exported")
    if "tflite_edgetpu" in profile.runtimes and artifact_format is not None \
            and "tflite_edgetpu" in export.loaded_by(artifact_format):
        notes.append(EDGETPU_NOTE)
    if profile.kind == DeviceKind.host:
        report.note = "host latency is measured (latency/host_*), not estimated"
        return report
    est_dtype = dtype if profile.peak_ops.get(dtype) else None
    if est_dtype is None:
        report.note = "; ".join([f"no estimate: {profile.name} has no peak compute figure for {dtype}", *notes])
        return report
    t = estimate_latency_s(layers, profile, est_dtype)
    report.latency_ms_est = t * 1e3
    if profile.power_w is not None:
        report.energy_mj_est = profile.power_w * t * 1e3
    report.note = "; ".join(notes)
    return report
