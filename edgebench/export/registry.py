"""The registry of exporters: one :class:`Exporter` per format, added with ``@register(name, ...)`` on a function
``(model, example, spec, out_dir) -> Artifact``.

An exporter is the only place that knows its format. Besides writing the file it owns:

- ``predictor(artifact, threads)``: the file run in its host runtime, ``logits = predictor(...)(x)`` (test accuracy);
- ``runner(artifact, example, threads)``: one batch-1 call of the file for host latency (default: the predictor);
- ``baseline``: the exporter whose file of the dense model is timed beside it, in the same runtime (``onnx`` for
  the ONNX exporters, ``tflite`` for the TFLite ones; None: the dense model in PyTorch);
- ``devices``: the device runtimes (a profile's ``runtimes:``) that load its file as it is, which give the fit check
  by format and what ``export=device`` picks;
- ``precheck(model, example, name)``: what the format refuses, found on the untrained model before any training;
- ``label`` (how the summary names the format) and ``after`` (the step it needs, for fix hints).

So a new format is one module with its ``@register`` (imported by :mod:`edgebench.export`, or by the user before
the run). The run resolves ``export=`` (a name, or ``auto``) against what the last step's output needs (its
:class:`QuantSpec`, or none for a float model) before any training, then calls the exporter.
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
Predict = Callable[[torch.Tensor], torch.Tensor]
PredictorFn = Callable[[Artifact, int], Predict]  # (artifact, threads; 0 = torch's) -> logits = predict(x)
RunnerFn = Callable[[Artifact, torch.Tensor, int], Callable[[], object]]  # (artifact, batch-1 input, threads)
PrecheckFn = Callable[[nn.Module, torch.Tensor, "str | None"], None]  # (untrained model, example, its name)

AUTO = "auto"
DEVICE = "device"  # the device's own format: the first of its runtimes that loads the output's dtype (own_format)


@dataclass(frozen=True)
class Exporter:
    name: str
    fn: ExportFn
    dtype: str  # the dtype it stores: fp32, fp16, bf16, int8
    format: str  # onnx | torch.export | tflite | tflite_micro
    runtime: str  # the host runtime that runs its artifact: onnxruntime | litert | torch (tag latency.runtime)
    needs_spec: bool = False  # True: only a step's QuantSpec says how to build it (int8 calibration)
    eager_equivalent: bool = True  # the model in PyTorch eager computes what the artifact does (not so for int8)
    requires: Callable[[], None] | None = None  # raises ConfigError when an optional package it needs is missing
    predictor: PredictorFn | None = None  # the file in its host runtime: test accuracy (and the default runner)
    runner: RunnerFn | None = None  # one batch-1 call of the file, for host latency; None: its predictor's
    baseline: str | None = None  # the exporter of the dense model's file timed beside it; None: the model in PyTorch
    devices: tuple[str, ...] = ()  # device runtimes that load its file as it is (fit by format, export=device)
    precheck: PrecheckFn | None = None  # refuses (ConfigError) a model the format cannot take, before training
    label: str = ""  # the format as the run summary names it (default: format)
    after: str = ""  # the step its input needs, for fix hints: "+method=ptq_int8 (or qat_int8)"
    accuracy_from_file: bool = True  # False: the eager model computes what the file does and is evaluated instead
    packages: tuple[str, ...] = ("torch", "numpy")  # pip names the predictor needs (the MLflow model's requirements)

    def __call__(self, model: nn.Module, example: torch.Tensor, out_dir: str | Path,
                 spec: QuantSpec | None = None) -> Artifact:
        check(self.name, spec)
        art = self.fn(model, example[:1], spec, Path(out_dir))
        art.name = self.name
        return art

    def predict(self, artifact: Artifact, threads: int = 0) -> Predict:
        """``logits = exporter.predict(artifact)(x)``: the file run in its host runtime."""
        if self.predictor is None:
            raise ValueError(f"export={self.name}: no host runtime runs its {self.format} file (register it with "
                             "predictor=...)")
        return self.predictor(artifact, threads)

    def host_runner(self, artifact: Artifact, example: torch.Tensor, threads: int) -> Callable[[], object]:
        """One batch-1 call of the file, timed for ``latency/host_*``: the registered runner, else the predictor."""
        if self.runner is not None:
            return self.runner(artifact, example[:1], threads)
        predict, x = self.predict(artifact, threads), example[:1].clone()

        def run():
            with torch.inference_mode():
                return predict(x)

        return run


EXPORTERS: dict[str, Exporter] = {}


def register(name: str, *, dtype: str, format: str, runtime: str, needs_spec: bool = False,
             eager_equivalent: bool = True, requires: Callable[[], None] | None = None,
             predictor: PredictorFn | None = None, runner: RunnerFn | None = None, baseline: str | None = None,
             devices: tuple[str, ...] | list[str] = (), precheck: PrecheckFn | None = None, label: str = "",
             after: str = "", accuracy_from_file: bool = True,
             packages: tuple[str, ...] | list[str] = ("torch", "numpy")) -> Callable[[ExportFn], ExportFn]:
    """Add an exporter under ``name`` (``export=name`` on the command line); see :class:`Exporter` for the fields.
    ``predictor`` is required: a written file's accuracy and latency come from running it."""

    def deco(fn: ExportFn) -> ExportFn:
        if name in EXPORTERS or name in (AUTO, DEVICE):
            raise ValueError(f"exporter {name!r} is already registered")
        if predictor is None:
            raise ValueError(f"exporter {name!r}: register it with predictor=(artifact, threads) -> logits function "
                             "(what runs its file on the host)")
        EXPORTERS[name] = Exporter(name, fn, dtype, format, runtime, needs_spec, eager_equivalent, requires,
                                   predictor, runner, baseline, tuple(devices), precheck, label or format, after,
                                   accuracy_from_file, tuple(packages))
        return fn

    return deco


def names() -> list[str]:
    return [AUTO, DEVICE, *EXPORTERS]


def of(artifact: Artifact) -> Exporter:
    """The exporter that owns ``artifact``: the one that wrote it (``artifact.name``), else (a file written by a
    helper such as ``export_onnx``) the first registered exporter of its format and dtype."""
    if artifact.name in EXPORTERS:
        return EXPORTERS[artifact.name]
    for e in EXPORTERS.values():
        if e.format == artifact.format and e.dtype == artifact.dtype:
            return e
    raise ValueError(f"no exporter is registered for a {artifact.dtype} {artifact.format} artifact "
                     f"({artifact.path}); known: {', '.join(EXPORTERS)}")


def loaded_by(format: str) -> set[str]:
    """The device runtimes that load a file of ``format`` as it is (the union of its exporters' ``devices``)."""
    return {rt for e in EXPORTERS.values() if e.format == format for rt in e.devices}


def own_formats(runtime: str) -> dict[str, str]:
    """``{dtype: exporter}``: what a device ``runtime`` loads, by the dtype of the model (the first registered
    exporter of each dtype that lists the runtime in its ``devices``)."""
    out: dict[str, str] = {}
    for e in EXPORTERS.values():
        if runtime in e.devices:
            out.setdefault(e.dtype, e.name)
    return out


def how_to_get(runtimes: list[str] | tuple[str, ...]) -> str:
    """How to get a file one of the device ``runtimes`` loads, for a fit reason (empty when edgebench writes none):
    ``export=onnx or tflite, or export=onnx_int8 or tflite_int8 after +method=ptq_int8 (or qat_int8)``, and
    ``; int8 only`` for a runtime that loads some dtypes of its formats only (the Edge TPU: int8 .tflite files)."""
    by_step: dict[str, list[str]] = {}
    limits: list[str] = []
    for rt in runtimes:
        own = own_formats(rt)
        for name in own.values():
            names_ = by_step.setdefault(EXPORTERS[name].after, [])
            if name not in names_:
                names_.append(name)
        # a runtime that loads fewer dtypes of its formats than edgebench writes (the Edge TPU: int8 .tflite only)
        formats = {e.format for e in EXPORTERS.values() if rt in e.devices}
        written = [e.dtype for e in EXPORTERS.values() if e.format in formats]
        if own and set(own) < set(written):
            limits.append(f"{rt} loads {', '.join(own)} only")
    return ", or ".join(f"export={' or '.join(ns)}" + (f" after {after}" if after else "")
                        for after, ns in by_step.items()) + "".join(f"; {x}" for x in dict.fromkeys(limits))


def label(name: str | None, format: str | None) -> str:
    """The format as the summary names it, from the tags ``export.name`` / ``export.format``."""
    if name in EXPORTERS:
        return EXPORTERS[name].label
    return next((e.label for e in EXPORTERS.values() if e.format == format), format or "")


def for_device(runtimes: list[str] | tuple[str, ...], needs: QuantSpec | str | None) -> str | None:
    """The exporter ``export=device`` picks: the first of ``runtimes`` (a device profile's, in its order) that loads
    a model of the output's dtype (fp32 for a float model); None when none of them does (the run then writes what
    ``auto`` writes and the fit check says why it does not fit)."""
    dtype = _dtype(needs) or "fp32"
    for rt in runtimes:
        name = own_formats(rt).get(dtype)
        if name is not None:
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
