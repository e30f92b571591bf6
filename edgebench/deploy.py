"""Deployment: the exporter resolved once, the artifact written, the deployed form evaluated, measured and fitted.

    the last step's output (its QuantSpec) + export= + the device's runtimes -> exporter (the registry)
      -> artifact (a half-written one removed on failure) -> test accuracy and select/val_acc of the deployed
      form -> measure.measure_model (beside the dense baseline's own file where the runtime times both) -> fit

Returns one :class:`Deployed`; never logs (:mod:`edgebench.record` writes it down). The formats themselves are
:mod:`edgebench.export`'s and :mod:`edgebench.measure`'s.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from edgebench import export, measure, methods, training
from edgebench.config import ConfigError, EdgebenchConfig, Runtime

if TYPE_CHECKING:
    from edgebench.chain import Dense, Env

log = logging.getLogger("edgebench.pipeline")  # the run's log lines keep the logger name they always had


@dataclass
class Deployed:
    """What deployment produced: the model as deployed, its exporter's name (``none``), the metrics of the run's
    contract (test accuracy of the deployed form, ``select/val_acc``, the measurement, the delta to the dense
    baseline), the :class:`edgebench.measure.Measurement` (its artifact, device report, tags) and tags of the
    export (``quant.runtime``)."""
    model: torch.nn.Module
    exporter: str
    metrics: dict[str, float]
    measured: measure.Measurement
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def artifact(self):
        return self.measured.artifact


def exporter(spec: EdgebenchConfig, needs) -> export.Exporter | None:
    """The exporter for ``export=`` and a step output that needs ``needs`` (its QuantSpec, dtype or None).

    ConfigError for an unknown name or an impossible choice, and for an artifact that only ONNX
    Runtime runs (int8) with ``measure.runtime=torch``."""
    exp = export.resolve(spec.export, needs, enabled=spec.measure.export, runtimes=spec.device.runtimes)
    if (exp is not None and not exp.eager_equivalent and spec.measure.latency
            and spec.measure.runtime != Runtime.onnxruntime):
        raise ConfigError(f"measure.runtime={spec.measure.runtime.value}: export={exp.name} writes a {exp.dtype} "
                          f"file that only {exp.runtime} runs; use measure.runtime=onnxruntime (the artifact in its "
                          "own runtime)")
    return exp


def check(spec: EdgebenchConfig, needs, build, example) -> None:
    """Before any training or MLflow run: ``export=`` against what the last step's output will need, and the ops
    TFLite lacks, found on the untrained model (``build()``)."""
    exp = exporter(spec, needs)
    if exp is not None and exp.precheck is not None:  # ops the format lacks (TFLite): found on the untrained model
        exp.precheck(build(), example, f"model={spec.model.name.value}")

def deploy(out: methods.CompressionResult, dense: "Dense", env: "Env", compressed: bool) -> Deployed:
    """Export ``out`` (the last step's output, or the dense baseline as it is), evaluate the deployed form on the
    test and validation splits, and measure it (beside the dense baseline when ``compressed``)."""
    spec, model, example = env.spec, out.model, env.example
    artifact_dir = env.work_dir / "artifact"
    exp = exporter(spec, out.spec)  # the registry: export= and what the output needs
    env.phases.start(f"export ({exp.name if exp is not None else 'none'}), test and measure")
    try:
        artifact = exp(model, example, artifact_dir, out.spec) if exp is not None else None
    except BaseException:  # Ctrl-C, a full disk, a converter failure: no empty or half-written artifact/ stays
        shutil.rmtree(artifact_dir, ignore_errors=True)
        try:
            env.work_dir.rmdir()  # the run's folder, when the artifact was all it held
        except OSError:
            pass
        raise
    tags = {"quant.runtime": artifact.note} if artifact is not None and out.spec is not None else {}
    predict = out.predict or model
    if artifact is not None and exp.accuracy_from_file:
        predict = exp.predict(artifact)  # a low-precision or converted file: its own outputs count
    test = training.evaluate(predict, env.dm.test_dataloader())  # the deployed form's accuracy
    # what sweeps and every "best" choice select on: the same deployed form on the validation split, never the test split
    val = training.evaluate(predict, env.dm.val_dataloader())
    test["select/val_acc"], test["select/val_loss"] = val["test/acc"], val["test/loss"]
    log.info("test accuracy %.4f (dense %.4f); measuring size, compute, memory and host latency",
             test["test/acc"], dense.test_acc)
    dtype = artifact.dtype if artifact is not None else (out.spec.dtype if out.spec else out.dtype)
    measured = _measure(model, example, spec, artifact, baseline=dense.model if compressed else None,
                        dtype=dtype, analytic_bytes=out.analytic_bytes, artifact_dir=artifact_dir)
    metrics = {**test, **measured, "baseline/test_acc": dense.test_acc, "delta/acc": test["test/acc"] - dense.test_acc}
    return Deployed(model, exp.name if exp is not None else "none", metrics, measured, tags)


def child(model: torch.nn.Module, dense: "Dense", env: "Env") -> tuple[dict[str, float], measure.Measurement]:
    """A model along the way (a lottery level, a chain's earlier step) measured by the same contract: its test
    accuracy, its float file (``export=`` where it applies: onnx_int8 needs the final spec), the measurement and the
    delta to the dense baseline. The file lives in a temporary folder only."""
    spec = env.spec
    test = training.evaluate(model, env.dm.test_dataloader())
    try:
        exp = exporter(spec, None)
    except ConfigError:
        exp = export.resolve(export.AUTO, None, enabled=spec.measure.export)
    with tempfile.TemporaryDirectory(prefix="edgebench-child-") as tmp:
        art = exp(model, env.example, tmp) if exp is not None else None
        measured = _measure(model, env.example, spec, art, baseline=dense.model)
    return {**test, **measured, "baseline/test_acc": dense.test_acc,
            "delta/acc": test["test/acc"] - dense.test_acc}, measured


def _measure(model, example, spec: EdgebenchConfig, artifact, baseline=None, **kw) -> measure.Measurement:
    """measure_model on the exported artifact; the baseline's file is written (to a temporary folder) by the
    artifact's exporter's ``baseline`` exporter when the artifact's own runner times the model, so the baseline is
    timed beside it in the same runtime (ONNX for ONNX Runtime, .tflite for LiteRT)."""
    with tempfile.TemporaryDirectory(prefix="edgebench-baseline-") as tmp:
        base_art = None
        base_exp = measure.baseline_exporter(spec.measure, artifact)
        if baseline is not None and base_exp is not None:
            base_art = export.export(base_exp, baseline, example, tmp)
        return measure.measure_model(model, example, device=spec.device, config=spec.measure, baseline=baseline,
                                     artifact=artifact, baseline_artifact=base_art, **kw)
