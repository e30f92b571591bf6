"""Deployment: the exporter resolved once, the artifact written, the deployed form evaluated, measured and fitted.

    the last step's output (its QuantSpec) + export= + the device's runtimes -> exporter (the registry)
      -> artifact (a half-written one removed on failure) -> test accuracy and select/val_acc of the deployed
      form -> measure.measure_model (beside the dense baseline's own file where the runtime times both) -> fit

Returns one :class:`Deployed`; never logs (:mod:`edgebench.record` writes it down). The formats themselves are
:mod:`edgebench.export`'s and :mod:`edgebench.measure`'s.

The exported file and its evaluation are kept in the store (kind ``deployments``), keyed by the deployed model's own
store key (the dense baseline's, or the last step's) and the exporter: devices that load the same format (a study over
devices deploys one model on eleven profiles) convert and evaluate it once; what depends on the device (fit, the
latency estimate, the measurement) is done for each run. The precheck of an exporter on an untrained model is kept
the same way (kind ``prechecks``, keyed by the model's config, its input and the exporter).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from edgebench import export, measure, methods, store, training
from edgebench.config import ConfigError, DeviceKind, EdgebenchConfig, Runtime

if TYPE_CHECKING:
    from edgebench.chain import Dense, Env

log = logging.getLogger("edgebench.pipeline")  # the run's log lines keep the logger name they always had

DEPLOY_VERSION = 1  # of the stored deployments and prechecks: raise it when an exporter's output changes


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


def check(spec: EdgebenchConfig, needs, build, example) -> str | None:
    """Before any training or MLflow run: ``export=`` against what the last step's output will need, and the ops
    TFLite lacks, found on the untrained model (``build()``). A refusal raises, except under ``export=auto`` or
    ``device`` on a device profile: there the device's own format not holding the model is a result (the run
    trains, records that it does not fit and why, and other devices of a study still get the model), returned as
    the reason for :func:`deploy`."""
    exp = exporter(spec, needs)
    if exp is None or exp.precheck is None:
        return None

    def precheck() -> bool:  # ops the format lacks (TFLite): found on the untrained model (a refusal raises)
        exp.precheck(build(), example, f"model={spec.model.name.value}")
        return True

    try:
        if not spec.use_baseline_cache:
            precheck()
            return None
        # a passed precheck is kept: the same model config, input and exporter pass again (tens of seconds)
        key = {"model": store.plain(spec.model), "input": list(example.shape[1:]), "exporter": exp.name,
               "version": DEPLOY_VERSION}
        store.Store(spec.paths.store_dir).get_or_make("prechecks", key, precheck, lambda ok, folder: {"passed": ok},
                                                      lambda folder: True, name=exp.name, what=f"{exp.name} precheck")
    except ConfigError as e:
        if not _device_format(spec):
            raise
        reason = _cannot_hold(exp, e)
        log.warning("%s; the run trains and records that it does not fit %s", reason, spec.device.name)
        return reason
    return None


def _device_format(spec: EdgebenchConfig) -> bool:
    """Whether the exporter is the device's own format chosen for it (``export=auto``/``device`` on a device
    profile), so that its failure is a result (does not fit) rather than an error."""
    return spec.export in (export.AUTO, export.DEVICE) and spec.device.kind != DeviceKind.host


def _cannot_hold(exp: export.Exporter, e: BaseException) -> str:
    return f"{exp.label} ({exp.name}) cannot hold this model: {str(e).splitlines()[0][:300]}"


def deploy(out: methods.CompressionResult, dense: "Dense", env: "Env", compressed: bool, key: str,
           refused: str | None = None) -> Deployed:
    """Export ``out`` (the last step's output, or the dense baseline as it is), evaluate the deployed form on the
    test and validation splits, and measure it (beside the dense baseline when ``compressed``). ``key`` is the
    store key digest of ``out`` (the last step's, or the dense baseline's): the exported file and its accuracy are
    stored under it and the exporter, so a second device that loads the same format reuses both. ``refused``: the
    reason :func:`check` found that the device's own format cannot hold the model (not converted again)."""
    spec, model, example = env.spec, out.model, env.example
    artifact_dir = env.work_dir / "artifact"
    exp = exporter(spec, out.spec)  # the registry: export= and what the output needs
    env.phases.start(f"export ({exp.name if exp is not None else 'none'}), test and measure")
    try:
        hit, unloadable = None, refused
        if exp is None or refused:
            artifact, test = None, _evaluate(out.predict or model, env)
        else:
            try:
                artifact, test, hit = _stored_export(exp, out, env, key, artifact_dir)
            except Exception as e:  # noqa: BLE001 - the device's own format failed: recorded as not fitting
                if not _device_format(spec):
                    raise  # a format asked for by name fails the run
                shutil.rmtree(artifact_dir, ignore_errors=True)
                unloadable = str(e) if isinstance(e, CannotHold) else _cannot_hold(exp, e)
                log.warning("%s; the run records that it does not fit %s", unloadable, spec.device.name)
                artifact, test = None, _evaluate(out.predict or model, env)
    except BaseException:  # Ctrl-C, a full disk, a converter failure: no empty or half-written artifact/ stays
        shutil.rmtree(artifact_dir, ignore_errors=True)
        try:
            env.work_dir.rmdir()  # the run's folder, when the artifact was all it held
        except OSError:
            pass
        raise
    tags = {"quant.runtime": artifact.note} if artifact is not None and out.spec is not None else {}
    if hit is not None:  # the file and its accuracy came from the store (another device loads the same format)
        tags["export.cache_hit"] = str(hit).lower()
    if unloadable:
        tags["export.failed"] = unloadable
    log.info("test accuracy %.4f (dense %.4f); measuring size, compute, memory and host latency",
             test["test/acc"], dense.test_acc)
    dtype = artifact.dtype if artifact is not None else (out.spec.dtype if out.spec else out.dtype)
    measured = _measure(model, example, spec, artifact, baseline=dense.model if compressed else None,
                        dtype=dtype, analytic_bytes=out.analytic_bytes, artifact_dir=artifact_dir,
                        unloadable=unloadable)
    metrics = {**test, **measured, "baseline/test_acc": dense.test_acc, "delta/acc": test["test/acc"] - dense.test_acc}
    return Deployed(model, exp.name if exp is not None and not unloadable else "none", metrics, measured, tags)


def _evaluate(predict, env: "Env") -> dict[str, float]:
    """The deployed form's test accuracy and loss, and ``select/val_acc`` / ``select/val_loss``: the same form on the
    validation split, which sweeps and every "best" choice select on (never the test split)."""
    test = training.evaluate(predict, env.dm.test_dataloader())
    val = training.evaluate(predict, env.dm.val_dataloader())
    test["select/val_acc"], test["select/val_loss"] = val["test/acc"], val["test/loss"]
    return test


def _export_and_evaluate(exp: export.Exporter, out: methods.CompressionResult, env: "Env",
                         artifact_dir: Path) -> tuple[export.Artifact, dict[str, float]]:
    artifact = exp(out.model, env.example, artifact_dir, out.spec)
    predict = out.predict or out.model
    if exp.accuracy_from_file:
        predict = exp.predict(artifact)  # a low-precision or converted file: its own outputs count
    return artifact, _evaluate(predict, env)


_PATHS = ("path", "files", "extra_files")  # the Artifact fields that hold paths (kept relative to its folder)


class CannotHold(Exception):
    """The device's own format cannot hold the model (its conversion refused it, or its runtime cannot run the file):
    the reason, as found by this run or stored by another device's run of the same model and format."""


# what a format's refusal raises: a conversion's ConfigError, or TFLite Micro's CannotRun (kept in the store: the same
# model and exporter fail the same way on the next device of that format)
REFUSALS = (ConfigError, export.tflite.CannotRun)


def _stored_export(exp: export.Exporter, out: methods.CompressionResult, env: "Env", key: str,
                   artifact_dir: Path) -> tuple[export.Artifact, dict[str, float], bool]:
    """The file ``exp`` writes for the stored model ``key``, its evaluation and whether the store had them (made and
    stored otherwise; None with ``use_baseline_cache=false``, which stores nothing); the run gets its own copy in
    ``artifact_dir``. Under ``export=auto``/``device`` a refusal of the format (:data:`REFUSALS`) is stored too and
    raised as :class:`CannotHold`, so the next device of that format does not convert again."""
    if not env.spec.use_baseline_cache:
        return (*_export_and_evaluate(exp, out, env, artifact_dir), None)

    def make():
        try:
            return _export_and_evaluate(exp, out, env, artifact_dir)
        except REFUSALS as e:
            if not _device_format(env.spec):
                raise
            shutil.rmtree(artifact_dir, ignore_errors=True)
            return CannotHold(_cannot_hold(exp, e))

    def save(made, folder: Path) -> dict:
        if isinstance(made, CannotHold):
            (folder / "refused.json").write_text(json.dumps({"reason": str(made)}))
            return {"exporter": exp.name, "refused": True}
        art, metrics = made
        fields = {k: v for k, v in dataclasses.asdict(art).items() if k not in _PATHS}
        rel = {k: _relative(getattr(art, k), art.path.parent) for k in _PATHS}
        for name in {*rel["files"], *rel["extra_files"], rel["path"]}:
            (folder / "artifact" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(art.path.parent / name, folder / "artifact" / name)
        (folder / "deployed.json").write_text(json.dumps({"artifact": {**fields, **rel}, "metrics": metrics}))
        return {"exporter": exp.name}

    def load(folder: Path):
        if (folder / "refused.json").is_file():
            return CannotHold(store.read_json(folder / "refused.json")["reason"])
        got = store.read_json(folder / "deployed.json")
        for name in got["artifact"]["files"]:
            if not (folder / "artifact" / name).is_file():
                raise store.UnreadableFileError(f"{folder / 'artifact' / name}: missing")
        return got, folder / "artifact"

    entry = store.Store(env.spec.paths.store_dir).get_or_make(
        "deployments", store.child_key(key, {"exporter": exp.name, "version": DEPLOY_VERSION}),
        make, save, load, name=exp.name, what=f"deployed file ({exp.name})")
    if isinstance(entry.value, CannotHold):
        if entry.hit:
            log.info("%s (found in the store: %s)", entry.value, entry.path)
        raise entry.value
    if not entry.hit:
        return (*entry.value, False)
    got, src = entry.value
    log.info("deployed file (%s) and its accuracy reused from the store (%s)", exp.name, entry.path)
    shutil.copytree(src, artifact_dir, dirs_exist_ok=True)
    a = got["artifact"]
    art = export.Artifact(**{k: v for k, v in a.items() if k not in _PATHS}, path=artifact_dir / a["path"],
                          files=[artifact_dir / f for f in a["files"]],
                          extra_files=[artifact_dir / f for f in a["extra_files"]])
    return art, {k: float(v) for k, v in got["metrics"].items()}, True


def _relative(value, root: Path):
    return [str(Path(v).relative_to(root)) for v in value] if isinstance(value, list) else str(Path(value).relative_to(root))


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
