"""What a model costs on a target device: does it fit, and estimated latency and energy, for the runtime that loads it.

Runtime: the profile's ``runtime`` if set, else the first of its ``runtimes`` that loads the artifact's format (each
exporter lists the device runtimes that load its file: ``edgebench.export.loaded_by``); a profile's ``per_runtime``
fields apply under that runtime (the Coral Dev Board without the Edge TPU compiler runs the file on its Cortex-A53).

Fit: the artifact's format must be one the device's runtimes run as they are (an ONNX file on a microcontroller
does not fit, whatever its size), the device must support the model's dtype, the artifact must fit the device's
storage, and the working memory must fit its memory: the tensor arena TFLite Micro measured when the artifact is a
``tflite_micro`` file (``ram_source = tflm_arena``), else the estimated peak activations (``estimate``), plus the
weights where the device loads them into RAM.

Latency: on a microcontroller profile with a core and clock, the op-level model of ``edgebench.devices.ops``
calibrated on published measurements for that runtime (``edgebench.devices.published``), over the ops of the
deployed .tflite file; its band comes from the calibration's leave-one-out errors. Elsewhere a per-layer roofline

    t_layer = max(2 * MACs / (peak_ops[dtype] * compute_efficiency),
                  bytes_moved / (bandwidth * memory_efficiency)) + layer_overhead_s

whose band is the profile's ``latency_band`` (leave-one-out errors of its fit) or none: ``uncalibrated``.
Energy = the average power MLPerf Tiny measured for the board and runtime x latency; where only a datasheet or
nameplate figure exists (``power_w``), an upper bound. Both carry the ``_est`` suffix in MLflow.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgebench import export
from edgebench.config import ConfigError, DeviceConfig, DeviceKind
from edgebench.devices import published
from edgebench.devices.ops import Op, ops_from_layers
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
    runtime: str | None = None  # the runtime the estimate is for (edgebench.devices.published.RUNTIME_LABEL keys)
    latency_low_ms: float | None = None  # the band from the calibration's leave-one-out errors; None: uncalibrated
    latency_high_ms: float | None = None
    calibration: str = ""  # what calibrates the latency estimate ("uncalibrated: ..." without a band)
    energy_source: str = ""  # measured average power, or an upper bound from nameplate power
    energy_low_mj: float | None = None  # measured power's range x the latency band (calibrated estimates only)
    energy_high_mj: float | None = None

    @property
    def calibrated(self) -> bool:
        return self.latency_low_ms is not None

    def latency_text(self) -> str:
        """The estimate as it may be shown: with its band, or labelled uncalibrated (never a plain figure)."""
        if self.latency_ms_est is None:
            return "no estimate"
        if not self.calibrated:
            return f"~{self.latency_ms_est:.3g} ms (uncalibrated)"
        return f"{self.latency_ms_est:.3g} ms (band {self.latency_low_ms:.3g}-{self.latency_high_ms:.3g} ms)"

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"device/fits": float(self.fits), "device/flash_bytes": self.flash_bytes,
                                 "device/ram_bytes": self.ram_bytes}
        if self.latency_ms_est is not None:
            out["device/latency_ms_est"] = self.latency_ms_est
            out["device/latency_calibrated"] = float(self.calibrated)
        if self.latency_low_ms is not None:
            out["device/latency_ms_low"] = self.latency_low_ms
            out["device/latency_ms_high"] = self.latency_high_ms
        if self.energy_mj_est is not None:
            out["device/energy_mj_est"] = self.energy_mj_est
        if self.energy_low_mj is not None:
            out["device/energy_mj_low"] = self.energy_low_mj
            out["device/energy_mj_high"] = self.energy_high_mj
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
EDGETPU_COMPILER = "edgetpu_compiler"
NO_EDGETPU = ("the Edge TPU runs only files compiled by edgetpu_compiler, which is not installed here, so the int8 "
              "file runs on the board's CPU (the Coral Dev Board's 4x Cortex-A53) under LiteRT")


def runtime_key(profile: DeviceConfig, runtime: str | None, dtype: str = "int8") -> str | None:
    """The calibration name of a runtime on this profile: TFLite Micro with the profile's kernels for an int8 model;
    with its reference kernels for a float one (CMSIS-NN and ESP-NN optimise int8 kernels only)."""
    if runtime == "tflite_micro":
        return f"tflite_micro+{profile.tflm_kernels if dtype == 'int8' else 'reference'}"
    return runtime


def choose_runtime(profile: DeviceConfig, artifact_format: str | None) -> tuple[DeviceConfig, str | None, list[str]]:
    """(the profile as that runtime sees it, the runtime that loads the artifact, notes).

    ``profile.runtime`` when set, else the first of ``profile.runtimes`` that loads ``artifact_format`` (the first
    runtime when nothing was exported). The Edge TPU is skipped, with a note, unless its compiler is installed.
    """
    loaders = export.loaded_by(artifact_format) if artifact_format is not None else set(profile.runtimes)
    if profile.runtime:
        if profile.runtime == "tflite_edgetpu" and shutil.which(EDGETPU_COMPILER) is None:
            raise ConfigError(f"device.runtime=tflite_edgetpu: {NO_EDGETPU}; install the Edge TPU compiler or "
                              "leave device.runtime unset")
        candidates = [profile.runtime]
    else:
        candidates = [r for r in profile.runtimes if r in loaders]
    notes, chosen = [], None
    for r in candidates:
        if r == "tflite_edgetpu" and shutil.which(EDGETPU_COMPILER) is None:
            notes.append(NO_EDGETPU)
            continue
        chosen = r
        break
    if chosen is not None and chosen in profile.per_runtime:
        profile = replace(profile, **dict(profile.per_runtime[chosen]))
    return profile, chosen, notes


def latency_estimate(profile: DeviceConfig, runtime: str | None, dtype: str, layers: list[LayerInfo],
                     ops: list[Op] | None = None) -> published.LatencyEstimate | None:
    """Batch-1 latency of the model on ``profile`` under ``runtime``: op-level where that runtime is calibrated on
    published measurements, else the profile's roofline; None without a figure for ``dtype`` (or without ops)."""
    key = runtime_key(profile, runtime, dtype)
    graph = ops if ops is not None else ops_from_layers(layers)
    if not graph:
        return None
    if key and profile.core and profile.clock_hz and dtype == "int8":
        est = published.estimate(key, profile.core, profile.board, graph, profile.clock_hz)
        if est is not None:
            if ops is None:
                est.calibration += "; ops from the PyTorch model's conv/linear layers (no .tflite file to read)"
            return est
    if not profile.peak_ops.get(dtype) or (runtime == "tflite_micro" and dtype != "int8"):
        # TFLite Micro's float kernels are the reference ones, far from the core's peak, and no published
        # measurement calibrates them: a roofline would rank a float file ahead of its calibrated int8 one
        return None
    ms = estimate_latency_s(layers, profile, dtype) * 1e3
    how = profile.calibration
    band = profile.latency_band
    if band:
        return published.LatencyEstimate(ms, ms / (1 + band[1]), ms / (1 + band[0]), key or "", how)
    if not how.startswith("uncalibrated"):
        how = f"uncalibrated: {how}"
    return published.LatencyEstimate(ms, None, None, key or "", how)


def format_reason(profile: DeviceConfig, artifact_format: str) -> str | None:
    """Why ``profile`` cannot run an artifact of ``artifact_format``, with what to do; None when one of its runtimes can."""
    if export.loaded_by(artifact_format) & set(profile.runtimes):
        return None
    fixes = export.registry.how_to_get(profile.runtimes)
    todo = f"; use {fixes}" if fixes else "; edgebench writes no artifact its runtimes load"
    return f"{profile.name} runs {', '.join(profile.runtimes)}, which cannot load a {artifact_format} file{todo}"


def evaluate_device(profile: DeviceConfig, layers: list[LayerInfo], *, dtype: str, artifact_bytes: int,
                    peak_activation_bytes: int, artifact_format: str | None = None,
                    arena_bytes: int | None = None, ops: list[Op] | None = None,
                    unloadable: str | None = None) -> DeviceReport:
    """Fit check and estimates of one deployable model (its format, dtype, file size and memory) on ``profile``.

    ``artifact_format`` None (nothing exported) skips the format check, and the note says so.
    ``arena_bytes`` (TFLite Micro's measured arena) replaces ``peak_activation_bytes``, the estimated
    working memory (on a TFLite Micro device, int8: the arena estimate; else the peak activations).
    ``ops``: the deployed file's operators (``edgebench.devices.ops.ops_from_tflite``); without them the latency
    model reads the PyTorch model's conv/linear ``layers``. ``unloadable``: why no file of the device's own format
    exists for the model (its conversion or its run there failed): a reason it does not fit.
    """
    base = profile
    profile, runtime, notes = choose_runtime(profile, artifact_format) if profile.kind != DeviceKind.host \
        else (profile, None, [])
    working = arena_bytes if arena_bytes is not None else peak_activation_bytes
    ram = working + (artifact_bytes if profile.weights_in_ram else 0)
    reasons = [unloadable] if unloadable else []
    if artifact_format is not None and base.runtimes and base.kind != DeviceKind.host:
        why = format_reason(base, artifact_format)
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
                          ram_source="tflm_arena" if arena_bytes is not None else "estimate",
                          runtime=runtime_key(profile, runtime, dtype))
    if artifact_format is None and profile.kind != DeviceKind.host:
        notes.append("format not checked: no artifact was exported")
    if profile.kind == DeviceKind.host:
        report.note = "host latency is measured (latency/host_*), not estimated"
        return report
    if runtime is None and artifact_format is not None and base.runtimes:
        # an estimate is for the runtime that loads the file: where none of the device's does, there is none
        report.note = "; ".join([f"no estimate: no runtime of {profile.name} loads a {artifact_format} file", *notes])
        return report
    est = latency_estimate(profile, runtime, dtype, layers, ops)
    if est is None:
        why = (f"no estimate: no published measurement calibrates TFLite Micro's {dtype} (reference) kernels, and "
               "they run far below the core's peak" if runtime == "tflite_micro" and dtype != "int8" else
               f"no estimate: {profile.name} has no peak compute figure or calibrated latency model for {dtype}"
               + (f" under {runtime}" if runtime else ""))
        report.note = "; ".join([why, *notes])
        return report
    report.latency_ms_est, report.latency_low_ms, report.latency_high_ms = est.ms, est.low_ms, est.high_ms
    report.calibration = est.calibration
    pw = published.power(profile.board, report.runtime) if report.runtime else None
    if pw is not None:
        report.energy_mj_est, report.energy_source = pw[0] * est.ms, pw[1]
        if est.calibrated:
            report.energy_low_mj, report.energy_high_mj = pw[2] * est.low_ms, pw[3] * est.high_ms
    elif profile.power_w is not None:
        src = profile.sources.get("power_w", "the profile's power_w")
        report.energy_mj_est = profile.power_w * est.ms
        report.energy_source = f"upper bound from nameplate power: the profile's power_w, {profile.power_w:g} W ({src})"
    report.note = "; ".join(notes)
    return report
