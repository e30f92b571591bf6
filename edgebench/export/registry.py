"""The registry of exporters: ``@register(name, ...)`` on a function ``(model, example, spec, out_dir) -> Artifact``.

The pipeline resolves ``export=`` (a name, or ``auto``) against what the last step's output needs
(its :class:`QuantSpec`, or none for a float model) before any training, then calls the exporter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from edgebench.config import ConfigError
from edgebench.export.artifact import Artifact, QuantSpec

log = logging.getLogger(__name__)

ExportFn = Callable[[nn.Module, torch.Tensor, "QuantSpec | None", Path], Artifact]

AUTO = "auto"
DEVICE = "device"  # the device's own format: the first of its runtimes that runs the output's dtype (DEVICE_FORMATS)

# What each device runtime loads, by the dtype of the model it is given: export=device walks the profile's runtimes
# in order. Vendor toolchains (X-CUBE-AI, CMSIS-NN, ESP-DL, Vitis AI, a C library) are absent: nothing edgebench
# writes runs on them as it is (edgebench.devices.estimate.RUNS).
DEVICE_FORMATS: dict[str, dict[str, str]] = {
    "tflite_micro": {"int8": "tflite_micro"},
    "tflite_edgetpu": {"int8": "tflite_int8"},
    "tflite": {"int8": "tflite_int8", "fp32": "tflite"},
    "onnxruntime": {"fp32": "onnx", "fp16": "onnx_fp16", "int8": "onnx_int8"},
    "tensorrt": {"fp32": "onnx", "fp16": "onnx_fp16", "int8": "onnx_int8"},
    "pytorch": {"bf16": "torch_export"},
}


@dataclass(frozen=True)
class Exporter:
    name: str
    fn: ExportFn
    dtype: str  # the dtype it stores: fp32, fp16, bf16, int8
    format: str  # onnx | torch.export
    runtime: str  # the host runtime that runs its artifact: onnxruntime | torch
    needs_spec: bool = False  # True: only a step's QuantSpec says how to build it (int8 calibration)
    eager_equivalent: bool = True  # the model in PyTorch eager computes what the artifact does (not so for int8)
    requires: Callable[[], None] | None = None  # raises ConfigError when an optional package it needs is missing

    def __call__(self, model: nn.Module, example: torch.Tensor, out_dir: str | Path,
                 spec: QuantSpec | None = None) -> Artifact:
        check(self.name, spec)
        art = self.fn(model, example[:1], spec, Path(out_dir))
        art.name = self.name
        return art


EXPORTERS: dict[str, Exporter] = {}


def register(name: str, *, dtype: str, format: str, runtime: str, needs_spec: bool = False,
             eager_equivalent: bool = True, requires: Callable[[], None] | None = None) -> Callable[[ExportFn], ExportFn]:
    """Add an exporter under ``name`` (``export=name`` on the command line)."""

    def deco(fn: ExportFn) -> ExportFn:
        if name in EXPORTERS or name == AUTO:
            raise ValueError(f"exporter {name!r} is already registered")
        EXPORTERS[name] = Exporter(name, fn, dtype, format, runtime, needs_spec, eager_equivalent, requires)
        return fn

    return deco


def names() -> list[str]:
    return [AUTO, DEVICE, *EXPORTERS]


def for_device(runtimes: list[str] | tuple[str, ...], needs: QuantSpec | str | None) -> str | None:
    """The exporter ``export=device`` picks: the first of ``runtimes`` (a device profile's, in its order) that loads
    a model of the output's dtype (fp32 for a float model); None when none of them does (the run then writes what
    ``auto`` writes and the fit check says why it does not fit)."""
    dtype = _dtype(needs) or "fp32"
    for rt in runtimes:
        name = DEVICE_FORMATS.get(rt, {}).get(dtype)
        if name is not None and name in EXPORTERS:
            return name
    return None


def get(name: str) -> Exporter:
    try:
        return EXPORTERS[name]
    except KeyError:
        raise ConfigError(f"export={name}: unknown exporter; known: {', '.join(names())}") from None


def _dtype(needs: QuantSpec | str | None) -> str | None:
    return needs.dtype if isinstance(needs, QuantSpec) else needs


def compatible(needs: QuantSpec | str | None) -> list[str]:
    """The exporters that can write a model whose step output needs ``needs`` (a spec, its dtype, or None)."""
    dtype = _dtype(needs)
    if dtype is None:
        return [n for n, e in EXPORTERS.items() if not e.needs_spec]
    return [n for n, e in EXPORTERS.items() if e.dtype == dtype]


def check(name: str, needs: QuantSpec | str | None) -> None:
    """ConfigError unless exporter ``name`` can write a model whose step output needs ``needs``."""
    exp = get(name)
    if name in compatible(needs):
        return
    dtype = _dtype(needs)
    ok = ", ".join(compatible(needs)) or "none"
    if dtype is None:
        raise ConfigError(f"export={name}: writes {exp.dtype} from a quantisation spec, and this model has none "
                          f"(add a quantising step, e.g. +method=ptq_int8); exporters for it: {ok}")
    raise ConfigError(f"export={name}: writes {exp.dtype}, but the last step's output is {dtype}; "
                      f"use export=auto or one of: {ok}")


def resolve(requested: str, needs: QuantSpec | str | None, enabled: bool = True,
            runtimes: list[str] | tuple[str, ...] = ()) -> Exporter | None:
    """The exporter for ``export=requested`` and a step output that needs ``needs`` (a QuantSpec, its dtype, or None).

    ``auto`` (the default): the device's own format (:func:`for_device`; ``runtimes`` are the profile's) when its
    exporter is installed; otherwise the first registered exporter of the spec's dtype (``onnx`` for a float model,
    none with ``measure.export=false`` (``enabled``) unless the output needs its file: a quantised model's accuracy
    comes from its file), with a warning naming the missing extra. ``device``: the device's own format or a
    ConfigError naming what is missing. Raises ConfigError for an unknown name or an impossible choice.
    """
    dtype = _dtype(needs)
    if requested in (AUTO, DEVICE):
        own = for_device(runtimes, needs) if (enabled or dtype is not None) else None
        if own is not None:
            exp = EXPORTERS[own]
            try:
                if exp.requires is not None:
                    exp.requires()
                return exp
            except ConfigError as e:
                if requested == DEVICE:
                    raise
                log.warning("export=auto: the device's own format is %s, but %s; writing %s instead",
                            own, e, _fallback(dtype, enabled).name if _fallback(dtype, enabled) else "no file")
        elif requested == DEVICE:
            log.warning("export=device: none of the device's runtimes (%s) loads a %s model; writing what "
                        "export=auto writes, and the fit check says so", ", ".join(runtimes) or "none",
                        dtype or "fp32")
        return _fallback(dtype, enabled)
    check(requested, dtype)
    if not enabled:
        raise ConfigError(f"export={requested} writes an artifact, but measure.export=false; "
                          "drop one of the two (export=auto with measure.export=false writes none)")
    exp = EXPORTERS[requested]
    if exp.requires is not None:
        exp.requires()
    return exp


def _fallback(dtype: str | None, enabled: bool) -> Exporter | None:
    """What ``auto`` writes when the device's own format is not an option: ONNX for a float model, else the first
    exporter of the dtype."""
    if dtype is None:
        return EXPORTERS["onnx"] if enabled else None
    choices = compatible(dtype)
    if not choices:
        raise ConfigError(f"export=auto: no exporter writes {dtype}; known: {', '.join(names())}")
    return EXPORTERS[choices[0]]


def export(name: str, model: nn.Module, example: torch.Tensor, out_dir: str | Path,
           spec: QuantSpec | None = None) -> Artifact:
    """Write ``model`` with exporter ``name`` into ``out_dir``."""
    return get(name)(model, example, out_dir, spec)
