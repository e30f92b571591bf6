"""Measure what a model costs: ``measure_model(model, example_input, device="host", baseline=None, artifact=...)``.

Returns the metric contract's ``size/*``, ``compute/*``, ``memory/*``, ``latency/*`` and
``device/*`` keys (see README, "How figures are measured"). The run calls it for every run,
with the artifact its exporter wrote (:mod:`edgebench.export`); measuring never exports.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from edgebench.config import DeviceConfig, DeviceKind, MeasureConfig, Runtime
from edgebench.measure.compute import LayerInfo, count_macs, layer_profile, macs_nonzero
from edgebench.export import Artifact
from edgebench.export import of as exporter_of
from edgebench.measure.latency import LatencyStats, measure_latency, torch_runner
from edgebench.measure.memory import peak_activation_bytes, tflm_arena_estimate
from edgebench.measure.size import count_params, files_bytes, gzip_bytes, sparse_bytes

log = logging.getLogger(__name__)

BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8}


class Measurement(dict):
    """The metrics (a plain ``{key: float}`` dict) plus what produced them."""

    artifact: Artifact | None = None
    device_report = None  # edgebench.devices.DeviceReport
    latency: dict[str, LatencyStats] | None = None
    layers: list[LayerInfo] | None = None
    runtime: str | None = None  # what timed the model: onnxruntime, litert or torch

    def tags(self) -> dict[str, str]:
        t: dict[str, str] = {}
        if self.artifact is not None:
            t["export.format"], t["export.exporter"] = self.artifact.format, self.artifact.exporter
            t["export.dtype"] = self.artifact.dtype
            if self.artifact.name:
                t["export.name"] = self.artifact.name
            if self.artifact.note:
                t["export.note"] = self.artifact.note
        if self.runtime is not None:
            t["latency.runtime"] = self.runtime
        if self.device_report is not None:
            t["device.fit"] = "fits" if self.device_report.fits else "; ".join(self.device_report.reasons)
            r = self.device_report
            t["device.ram_source"] = r.ram_source
            if r.runtime:
                t["device.runtime"] = r.runtime
            if r.latency_ms_est is not None:  # exactly "uncalibrated" without a band (the metric contract)
                t["device.calibration"] = r.calibration if r.calibrated else "uncalibrated"
            if r.energy_source:
                t["device.energy_source"] = r.energy_source
            note = "; ".join(x for x in (r.note, "" if r.calibrated else r.calibration) if x)
            if note:
                t["device.estimate_note"] = note
        return t


def basic_metrics(model: nn.Module, example_input: torch.Tensor, layers: list[LayerInfo] | None = None) -> dict[str, float]:
    """Size and compute only: cheap, no export, no timing."""
    macs = count_macs(model, example_input)
    return {**count_params(model), "compute/macs": macs,
            "compute/macs_nonzero": macs_nonzero(model, example_input, macs, layers)}


def load_device(device: str | Path | DeviceConfig) -> DeviceConfig:
    """A device profile: a DeviceConfig, a profile name under conf/device/, or the path of a YAML file."""
    if isinstance(device, DeviceConfig):
        return device
    from omegaconf import OmegaConf

    from edgebench.config import config_dir

    path = Path(device) if str(device).endswith((".yaml", ".yml")) else config_dir() / "device" / f"{device}.yaml"
    if not path.exists():
        options = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"unknown device profile {device!r}; available: {', '.join(options)}")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DeviceConfig), OmegaConf.load(path)))


def _own(cfg: MeasureConfig, artifact: Artifact) -> bool:
    """Whether the artifact is timed by its exporter's own runner: ``measure.runtime=onnxruntime`` (the artifact in
    its own runtime, the default), or a file PyTorch itself runs (a torch.export program)."""
    return cfg.runtime == Runtime.onnxruntime or exporter_of(artifact).runtime == "torch"


def _runner(model: nn.Module, artifact: Artifact | None, x: torch.Tensor, cfg: MeasureConfig, threads: int):
    """(runner, runtime name): the artifact in its exporter's host runner, or the model in PyTorch eager."""
    if artifact is None:
        if cfg.runtime == Runtime.onnxruntime:
            raise ValueError("measure.runtime=onnxruntime needs the exported artifact (measure.export=true)")
        return torch_runner(model, x), "torch"
    exp = exporter_of(artifact)
    if _own(cfg, artifact):
        return exp.host_runner(artifact, x, threads), exp.runtime
    if not exp.eager_equivalent:
        raise ValueError(f"an {artifact.dtype} {artifact.format} artifact runs in {artifact.runtime} only; "
                         "use measure.runtime=onnxruntime (the artifact in its own runtime)")
    return torch_runner(model, x), "torch"


def model_runtime(config: MeasureConfig | None, artifact: Artifact | None) -> str | None:
    """What will time the model (the artifact's host runtime, e.g. onnxruntime or litert, or torch), None without
    latency."""
    cfg = config or MeasureConfig()
    if not cfg.latency:
        return None
    if artifact is None:
        return "onnxruntime" if cfg.runtime == Runtime.onnxruntime else "torch"
    return exporter_of(artifact).runtime if _own(cfg, artifact) else "torch"


def baseline_exporter(config: MeasureConfig | None, artifact: Artifact | None) -> str | None:
    """The exporter whose file of the dense baseline ``measure_model`` times beside ``artifact`` (the artifact's
    exporter's ``baseline``: ``onnx`` for ONNX Runtime, ``tflite`` for LiteRT); None when the baseline is timed in
    PyTorch eager (no latency, no artifact, ``measure.runtime=torch``, or a format timed against the eager model)."""
    cfg = config or MeasureConfig()
    if not cfg.latency or artifact is None or not _own(cfg, artifact):
        return None
    return exporter_of(artifact).baseline


def measure_model(model: nn.Module, example_input: torch.Tensor, device: str | DeviceConfig = "host",
                  baseline: nn.Module | None = None, *, config: MeasureConfig | None = None,
                  artifact: Artifact | None = None, baseline_artifact: Artifact | None = None,
                  dtype: str | None = None, analytic_bytes: int | None = None,
                  artifact_dir: str | Path | None = None, unloadable: str | None = None) -> Measurement:
    """Measure ``model`` at ``example_input`` (batch 1) for ``device``; never exports.

    ``artifact`` is the deployable an exporter wrote (``edgebench.export``): its files give
    ``size/bytes_artifact`` and ``size/bytes_gzip``, and its exporter's host runner times it
    (ONNX Runtime, LiteRT, PyTorch for a torch.export program). Without one those keys are left out and the model is timed
    in PyTorch (``measure.runtime=torch``). ``dtype`` is the deployed dtype (default: the
    artifact's, else fp32). ``analytic_bytes`` replaces ``size/bytes_sparse`` for a stored format
    that is not a plain dtype (k-bit codes).

    With ``baseline`` (the dense reference model), both are timed interleaved in this process and
    the ratio keys (``latency/host_speedup``, ``compute/theoretical_speedup``) are filled and
    ``size/compression_ratio`` is against the baseline's fp32 weights (else the model's own); when the artifact's
    runner times the model, ``baseline_artifact`` is the baseline's file written by its exporter's ``baseline``
    (:func:`baseline_exporter`: the fp32 ONNX file for ONNX Runtime, the fp32 .tflite for LiteRT).
    ``artifact_dir`` is where the host's free storage is read (default: the artifact's folder).
    ``unloadable``: why the device's own format could not be written or run (the model then does not fit).
    """
    from edgebench.devices import evaluate_device, host_profile

    cfg = config or MeasureConfig()
    dtype = dtype or (artifact.dtype if artifact is not None else "fp32")
    where = artifact_dir or (artifact.path.parent if artifact is not None else ".")
    profile = host_profile(load_device(device), where)
    x = example_input[:1]
    layers = layer_profile(model, x)
    m = Measurement(basic_metrics(model, x, layers))
    m.layers = layers
    m.artifact = artifact
    m["memory/peak_activation_bytes"] = peak_activation_bytes(model, x, BITS[dtype] // 8)
    m["size/bytes_sparse"] = analytic_bytes if analytic_bytes is not None else sparse_bytes(model, BITS[dtype])
    if artifact is not None:
        m["size/bytes_artifact"] = files_bytes(artifact.files)
        m["size/bytes_gzip"] = gzip_bytes(artifact.files)
        if artifact.arena_bytes is not None:
            m["memory/tflm_arena_bytes"] = artifact.arena_bytes
    # the dense fp32 weights' bytes over the smallest of the file, its gzip and the analytic encoding (the model's
    # own fp32 weights without a baseline: a dense run's file against its weights)
    base = basic_metrics(baseline, x) if baseline is not None else m
    smallest = min(v for k, v in m.items() if k in ("size/bytes_artifact", "size/bytes_gzip", "size/bytes_sparse"))
    m["size/compression_ratio"] = base["size/bytes_fp32"] / smallest
    if baseline is not None:
        m["compute/theoretical_speedup"] = base["compute/macs"] / max(m["compute/macs_nonzero"], 1)
    if cfg.latency:
        threads = cfg.threads or torch.get_num_threads()
        runner, m.runtime = _runner(model, artifact, x, cfg, threads)
        runners = {"model": runner}
        if baseline is not None:  # in the same runtime as the model (PyTorch for bf16), so the ratio compares dtypes
            base_exp = baseline_exporter(cfg, artifact)
            if base_exp is not None and baseline_artifact is None:
                raise ValueError(f"measure_model times the baseline in {m.runtime} like the model: pass its fp32 "
                                 f"file as baseline_artifact (edgebench.export.export({base_exp!r}, baseline, ...))")
            runners["baseline"] = (exporter_of(baseline_artifact).host_runner(baseline_artifact, x, threads)
                                   if base_exp is not None else torch_runner(baseline, x))
        stats = measure_latency(runners, threads=threads, warmup=cfg.warmup, calls=cfg.calls,
                                max_noise=cfg.max_noise, retries=cfg.retries)
        s = stats["model"]
        m.latency = stats
        m.update({"latency/host_p50_ms": s.p50_ms, "latency/host_p90_ms": s.p90_ms,
                  "latency/host_iqr_ms": s.iqr_ms, "latency/host_threads": s.threads,
                  "latency/host_noisy": float(s.noisy), "latency/host_calls": s.calls})
        if baseline is not None:
            m["latency/host_speedup"] = stats["baseline"].p50_ms / s.p50_ms

    artifact_bytes = int(m.get("size/bytes_artifact", m["size/bytes_fp32"] * BITS[dtype] // 32))
    working = int(m["memory/peak_activation_bytes"])
    arena_estimated = False
    if "tflite_micro" in profile.runtimes and dtype == "int8":  # what TFLite Micro would allocate, estimated
        m["memory/tflm_arena_bytes_est"] = working = tflm_arena_estimate(model, x)["total"]
        arena_estimated = artifact is None or artifact.arena_bytes is None
    ops = None
    if artifact is not None and artifact.format in ("tflite", "tflite_micro") and profile.kind != DeviceKind.host:
        from edgebench.devices.ops import ops_from_tflite

        ops = ops_from_tflite(artifact.path)  # the graph the device runtime executes, after the converter's fusions
    report = evaluate_device(profile, m.layers, dtype=dtype, artifact_bytes=artifact_bytes,
                             peak_activation_bytes=working,
                             artifact_format=artifact.format if artifact is not None else None,
                             arena_bytes=artifact.arena_bytes if artifact is not None else None, ops=ops,
                             unloadable=unloadable)
    if arena_estimated and report.ram_source == "estimate":  # the estimate is the RAM figure: say how far off it can be
        from edgebench.measure.memory import ARENA_ESTIMATE_NOTE

        report.note = "; ".join(x for x in (report.note, ARENA_ESTIMATE_NOTE) if x)
    m.device_report = report
    m.update(report.metrics())
    return m


__all__ = ["measure_model", "model_runtime", "baseline_exporter", "basic_metrics", "count_params", "count_macs", "macs_nonzero",
           "layer_profile", "peak_activation_bytes", "sparse_bytes", "measure_latency", "load_device", "Measurement"]
