"""One edgebench run, stage by stage. This module owns the order; every stage lives elsewhere.

    validate config (and the chain of steps) -> load data -> steps[0].check(model) -> open MLflow run
      -> dense baseline (cache or train) -> each step in order on the previous step's model (a child run
      per step of a chain, measured in full) -> export (the registry, by export= and the last step's
      QuantSpec) -> evaluate on test -> measure the artifact -> log metrics and the model -> summary
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

import edgebench
from edgebench import cache, export, measure, methods, naming, plots, progress, store, sweep, training
from edgebench.config import ConfigError, EdgebenchConfig, Runtime, validate
from edgebench.data import EdgeDataModule, load_data
from edgebench.models import build_model
from edgebench.summary import print_summary
from edgebench.tracking import Tracker, claim_lock, flatten, git_sha, run_model_id, run_process_alive, ui_command

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str]
    baseline_from_cache: bool
    history: list[dict] = field(default_factory=list)
    device_report: object = None  # edgebench.devices.DeviceReport
    deployable: str | None = None  # where the deployable file lies in MLflow's artifact store (its local path)
    skipped: bool = False  # resume: an earlier FINISHED run with this config was returned instead
    model_id: str | None = None  # the deployable's LoggedModel: mlflow.pyfunc.load_model(f"models:/{model_id}")


def _choices(cfg: DictConfig) -> dict[str, str]:
    """The config option names chosen for each group (model=..., data=...)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = dict(HydraConfig.get().runtime.choices)
    except Exception:  # composed without Hydra's runtime (e.g. from Python)
        choices = {}
    plain = plain_config(cfg)  # a config rerun from its config.yaml has no group choices: use the names in it
    return {
        "model": str(choices.get("model") or plain["model"]["name"]),
        "data": str(choices.get("data") or plain["data"]["name"]),
        "device": str(choices.get("device") or plain["device"]["name"]),
        "method": str(choices.get("method") or (plain["method"] or {}).get("name") or _chain(plain) or "none"),
    }


def _chain(plain: dict) -> str:
    """``a->b`` for ``steps=[a,b]`` (the tags ``method`` and ``pipeline``), else ''."""
    return "->".join(s if isinstance(s, str) else s["name"] for s in plain.get("steps") or [])


def _sweep_tags(tracker: Tracker, ctx: dict | None) -> dict[str, str]:
    """sweep_id, job number and the parent run, for a job of a multirun (``ctx``: edgebench.sweep.job_context())."""
    if ctx is None:
        return {}
    tags = {"sweep_id": str(ctx.get("sweep_id") or Path(ctx["sweep_dir"]).name), "hydra.job.num": str(ctx["job_num"])}
    if ctx.get("parent_run_id") and ctx.get("experiment_id") == tracker.experiment_id:
        tags["mlflow.parentRunId"] = ctx["parent_run_id"]
    return tags


def _context(spec: EdgebenchConfig, model_in, dm: EdgeDataModule, example, output_dir, build, baseline_key,
             keep_zeros: bool = False, trained=None, dense=None, step: int = 0) -> methods.MethodContext:
    """What a step may use. ``model_in`` is the step's input (the dense model, or the previous step's output);
    with ``keep_zeros`` its pruned weights stay zero through any retraining the step does."""
    zeros = training.KeepZeros.of(model_in) if keep_zeros else None

    def fit(net, epochs, callbacks=(), loss=None, val_check_interval=1.0, val_points=None, lr=None):
        # the schedule spans this training; a method may fine-tune at its own learning rate
        cfg = dataclasses.replace(spec.trainer, max_epochs=max(epochs, 1), lr=lr or spec.trainer.lr)
        if zeros is not None:
            callbacks = (*callbacks, zeros)
        return training.fit(net, dm, cfg, callbacks=callbacks, loss=loss, max_epochs=epochs,
                            val_check_interval=val_check_interval, val_points=val_points)

    def retrain(net, epochs, callbacks=(), loss=None, lr=None):
        return fit(net, epochs, callbacks, loss, lr=lr)

    batches = len(dm.train_dataloader())
    return methods.MethodContext(
        model_in=model_in, datamodule=dm, example_input=example, retrain=retrain,
        evaluate=lambda net: training.evaluate(net, dm.test_dataloader()),
        train_batches_per_epoch=max(1, int(batches * spec.trainer.limit_train_batches)),
        output_dir=Path(output_dir), seed=spec.seed, build_model=build, cache_dir=Path(spec.paths.cache_dir),
        baseline_key=baseline_key, fit=fit, trained=trained, dense=dense, step=step,
    )


def _trainer_of(spec: EdgebenchConfig, splits, dm: EdgeDataModule, tracker: Tracker, parent_id: str, tags: dict):
    """``trained(model, trainer=None, seed=None)``: a trained model of another config on this run's data.

    It comes from the same store as the dense baseline (key: model, data, trainer, seed), trained once
    in its own child run (``edgebench.role=trained``, named ``teacher <model>``) that holds its curves, its test
    accuracy, params and MACs; the curves never enter the asking run's. A model already in the store gets the
    child run too, with the stored curves.
    """
    from edgebench.config import ModelConfig, ModelName, TrainerConfig

    def trained(model: str, trainer: dict | None = None, seed: int | None = None) -> torch.nn.Module:
        if model not in ModelName.__members__:
            raise ConfigError(f"trained model {model!r}: unknown model; zoo: {', '.join(ModelName.__members__)}")
        tcfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(spec.trainer), trainer or {}))
        assert isinstance(tcfg, TrainerConfig)
        other = dataclasses.replace(spec, model=ModelConfig(name=ModelName(model)), trainer=tcfg,
                                    seed=spec.seed if seed is None else seed)

        def build():
            torch.manual_seed(other.seed)
            return build_model(other.model, splits.input_shape, splits.num_classes)

        child_tags = _child_tags(tags, parent_id, {"model": model, "edgebench.role": "trained"}, f"teacher {model}")
        with tracker.run(f"teacher {model}", child_tags) as crun:
            crun.log_params({"model.name": model, "seed": other.seed,
                             **{f"trainer.{k}": getattr(v, "value", v) for k, v in dataclasses.asdict(tcfg).items()}})
            other_dm = EdgeDataModule(splits, tcfg.batch_size, tcfg.eval_batch_size, other.seed)

            def train(net):
                log.info("teacher: training %s for %s", model, progress.count(tcfg.max_epochs, "epoch"))
                return training.fit(net, other_dm, tcfg,
                                    epoch_sink=lambda epoch, row: crun.log_metrics(row, step=epoch))

            got = cache.get_or_train(other, spec.paths.cache_dir, build, train, num_classes=splits.num_classes,
                                     data=splits.digest, recheck=_val_recheck(other_dm), what=f"the teacher ({model})",
                                     keys="method.teacher.trainer")
            if got.from_cache:
                for row in got.history:
                    crun.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
            example = splits.test_x[:1]
            crun.log_metrics({**training.evaluate(got.model, dm.test_dataloader()),
                              **measure.basic_metrics(got.model, example)})
            crun.set_tags({"baseline.cache_hit": str(got.from_cache).lower(), "baseline.key": got.key_hash})
        return got.model.eval()

    return trained


def _step_phase(step, label: str) -> str:
    """A step's phase line: its label and the settings that say how long it takes (rounds, levels, epochs)."""
    knobs = ("rounds", "levels", "epochs", "retrain_epochs")
    said = [f"{k}={getattr(step.cfg, k)}" for k in knobs if getattr(step.cfg, k, None) is not None]
    return f"{label}" + (f": {', '.join(said)}" if said else "")


def _val_recheck(dm: EdgeDataModule):
    """``recheck(model) -> (validation accuracy, validation images)``: how a stored baseline is re-checked on load."""
    return lambda net: (training.evaluate(net, dm.val_dataloader())["test/acc"], len(dm.splits.val_y))


def _stored_step(spec: EdgebenchConfig, step, parent: str, make, label: str):
    """A step's output from the store, or made and stored: ``(output, hit, its key's digest)``.

    Key = the parent's key digest (the dense baseline's, or the previous step's) and this step's
    :meth:`edgebench.methods.Method.key` (its name, code version and the config fields it uses, normalised),
    so ``prune -> ptq_int8`` after ``prune -> qat_int8`` reuses the finished prune. The output is kept
    whole (model, knobs, per-step series, plots' data, children, spec) with copies of its files, and read back
    with :func:`edgebench.store.load_objects` (weights only, a fixed allowlist of classes: it runs no code). With
    ``use_baseline_cache=false`` nothing is stored.
    """
    key = store.child_key(parent, step.key())  # name, code version and the config fields it uses, one spelling
    h = store.digest(key)
    if not spec.use_baseline_cache:
        return make(), False, h

    def save(out: methods.CompressionResult, folder: Path) -> dict:
        files = {}
        for n, (apath, local) in enumerate(out.files.items()):
            rel = f"files/{n}-{Path(local).name}"
            (folder / "files").mkdir(exist_ok=True)
            shutil.copy2(local, folder / rel)
            files[apath] = rel
        torch.save(dataclasses.replace(out, files={}, predict=None), folder / "output.pt")
        (folder / "files.json").write_text(json.dumps(files))
        return {"step": step.name}

    def load(folder: Path) -> methods.CompressionResult:
        # weights only, with the store's fixed allowlist: a file that names anything else runs nothing and is set aside
        out = store.read(folder / "output.pt", store.load_objects)
        if not isinstance(out, methods.CompressionResult):
            raise store.UnreadableFileError(f"{folder / 'output.pt'}: holds a {type(out).__name__}, not a step output")
        missing = {f.name for f in dataclasses.fields(methods.CompressionResult)} - set(vars(out))
        if missing:  # written by an older edgebench: the store moves it aside and the step runs again
            raise store.UnreadableFileError(f"{folder / 'output.pt'}: an older step output, without {sorted(missing)}")
        out.files = {a: folder / rel for a, rel in store.read_json(folder / "files.json").items()}
        return out

    entry = store.Store(spec.paths.cache_dir).get_or_make("steps", key, make, save, load, name=step.name,
                                                         what=f"stored output of step {label}")
    if entry.hit:
        log.info("step %s: output reused from the store (%s)", label, entry.path)
    return entry.value, entry.hit, h


def _log_step(mlrun, out: methods.CompressionResult) -> None:
    """One step's report on the run that holds its model (a single method's run, a chain's last step's run, or the
    child run of a chain's earlier step), under the same names everywhere: its knobs (``method/<knob>``), per-step
    series (step = the row's ``round``), tags, tables, files and plots (drawn here by :mod:`edgebench.plots` from
    the step's data)."""
    mlrun.log_metrics({f"method/{k}": v for k, v in out.knobs.items()})
    mlrun.log_metrics(out.named_metrics)
    mlrun.set_tags(out.tags)
    for row in out.series:
        mlrun.log_metrics({k: v for k, v in row.items() if k != "round"}, step=int(row["round"]))
    if out.layers:
        mlrun.log_dict({"layers": out.layers}, "method/layers.json")
        mlrun.log_text(_layers_markdown(out.layers), "method/layers.md")
    with tempfile.TemporaryDirectory(prefix="edgebench-files-") as tmp:
        for n, (artifact_path, local) in enumerate(out.files.items()):
            if Path(local).name != Path(artifact_path).name:  # a stored copy (files/<n>-<name>): log it by its own name
                (Path(tmp) / str(n)).mkdir()
                local = shutil.copy2(local, Path(tmp) / str(n) / Path(artifact_path).name)
            mlrun.log_artifact(local, str(Path(artifact_path).parent))
    _log_plots(mlrun, out.plots)


def _log_plots(mlrun, figures: dict) -> None:
    """Draw ``{artifact path: Plot}`` and log each file under its path."""
    if figures:
        with tempfile.TemporaryDirectory() as d:
            for artifact_path, plot in figures.items():
                local = plots.draw(plot, Path(d) / artifact_path)
                mlrun.log_artifact(local, str(Path(artifact_path).parent))


def _log_model_plots(mlrun, model: torch.nn.Module, splits) -> None:
    """Figures a model draws of itself on a few test images (a recurrent attention model: where it looked)."""
    for m in model.modules():
        if callable(getattr(m, "report_plots", None)):
            _log_plots(mlrun, m.report_plots(splits.test_x[:8], splits.test_y[:8], splits.class_names))
            return


CHILD_TAG = "edgebench.child"  # "true" on a method's child run (never matched by resume)


def _child_tags(tags: dict, parent_id: str, extra: dict, name: str) -> dict:
    """A child run's tags: its parent's, without the ``config_hash`` that resume matches and the parent's
    description, plus ``extra``; its ``replicate_group`` is its parent's and its own name, so the report averages
    the same child of every replicate (level 3 of every seed) and never a child with its parent."""
    out = {**{k: v for k, v in tags.items() if k not in ("config_hash", naming.DESCRIPTION_TAG)}, **extra,
           "mlflow.parentRunId": parent_id, CHILD_TAG: "true"}
    if "replicate_group" in tags:
        out["replicate_group"] = f"{tags['replicate_group']} / {name}"
    return out


def _exporter(spec: EdgebenchConfig, needs) -> export.Exporter | None:
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


BASELINE_EXPORT = {"onnxruntime": "onnx", "litert": "tflite"}  # the dense model's file, timed beside the artifact


def _measure(model, example, spec: EdgebenchConfig, artifact, baseline=None, **kw) -> measure.Measurement:
    """measure_model on the exported artifact; the baseline's fp32 file is written (to a temporary folder)
    only when the artifact's runtime times the model and so the baseline beside it (ONNX for ONNX Runtime,
    .tflite for LiteRT)."""
    with tempfile.TemporaryDirectory(prefix="edgebench-baseline-") as tmp:
        base_art = None
        runtime = measure.model_runtime(spec.measure, artifact)
        if baseline is not None and runtime in BASELINE_EXPORT:
            base_art = export.export(BASELINE_EXPORT[runtime], baseline, example, tmp)
        return measure.measure_model(model, example, device=spec.device, config=spec.measure, baseline=baseline,
                                     artifact=artifact, baseline_artifact=base_art, **kw)


def _child_run(tracker, parent_id, tags, child, dense, dense_acc, dm, example, spec, report=None) -> None:
    """One child run (e.g. a lottery-ticket level), named by what it is (``level 3``, ``step 0 magnitude_pruning``;
    the parent link shows whose), with the full per-model contract; ``report(run)`` logs more on it (a chain step's
    own report).

    It carries its parent's tags but not its ``config_hash``: resume must find the parent, not a level."""
    child_tags = _child_tags(tags, parent_id, child.tags, child.name)
    with tracker.run(child.name, child_tags) as crun:
        if report is not None:
            report(crun)
        test = training.evaluate(child.model, dm.test_dataloader())
        try:  # a float model along the way: export= applies where it can (onnx_int8 needs the final spec)
            exp = _exporter(spec, None)
        except ConfigError:
            exp = export.resolve(export.AUTO, None, enabled=spec.measure.export)
        with tempfile.TemporaryDirectory(prefix="edgebench-child-") as tmp:
            art = exp(child.model, example, tmp) if exp is not None else None
            measured = _measure(child.model, example, spec, art, baseline=dense)
        crun.log_metrics({**child.metrics, **test, **measured, "baseline/test_acc": dense_acc,
                          "delta/acc": test["test/acc"] - dense_acc})
        crun.set_tags(measured.tags())


def _layers_markdown(rows: list[dict]) -> str:
    """A method's per-layer table as markdown, with the columns its rows have."""
    def cell(v) -> str:
        if isinstance(v, (list, tuple)):
            return "x".join(map(str, v))
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)

    keys = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def compose(overrides: list[str] = (), root_dir: str | Path = ".", output_dir: str | Path | None = None) -> DictConfig:
    """The config ``python -m edgebench OVERRIDES`` would run, launched from ``root_dir`` (for use from Python).

    ``pipeline.run(pipeline.compose(["+method=lottery_ticket", "seed=1"]))`` is one run without the CLI.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from edgebench.config import config_dir

    root = Path(root_dir).resolve()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose("edgebench", overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(output_dir or root / "results" / "runs" / "python")
        del cfg["hydra"]
    return cfg


def plain_config(cfg: DictConfig) -> dict:
    """The resolved config as plain YAML/JSON values (enums as their names, never Python objects)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def rerun_config(resolved: dict) -> dict:
    """The run's ``config.yaml``: every resolved value but the machine's paths, plus the defaults list that
    brings back edgebench's schema, paths and Hydra settings. Rerun it with
    ``python -m edgebench --config-dir <folder holding it> --config-name config``."""
    defaults = ["edgebench_schema", "_self_", {"paths": "default"}, {"hydra": "default"}]
    return {"defaults": defaults, **{k: v for k, v in resolved.items() if k not in ("paths", "hydra")}}


# Params left out of MLflow's params (they stay in config.yaml, paths excepted): the machine's paths, a device
# profile's prose and sources.
_PARAM_SKIP = ("paths.", "device.description", "device.calibration", "device.sources.", "device.unsourced")


def _params(resolved: dict, input_shape: tuple[int, ...]) -> dict:
    """The run's params: every config key but :data:`_PARAM_SKIP`, plus ``data.input_shape`` (``1x8x8``: the shape
    the data really has); ``data.image_size`` and ``data.channels`` only where the images have that size and
    channel count (they resize image folders; every other dataset has its own shape)."""
    params = {k: v for k, v in flatten(resolved).items() if not k.startswith(_PARAM_SKIP)}
    c, h, w = input_shape
    if params.get("data.image_size") != h or h != w:
        params.pop("data.image_size", None)
    if params.get("data.channels") != c:
        params.pop("data.channels", None)
    return {**params, "data.input_shape": "x".join(map(str, input_shape))}


def _overrides() -> tuple[list[str], str | None]:
    """The command line's (or a sweep job's) overrides and the ``+pipeline=`` preset chosen, if any."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        return list(hc.overrides.task), hc.runtime.choices.get("pipeline")
    except Exception:  # composed without Hydra's runtime
        return [], None


def _run_name(spec: EdgebenchConfig, choices: dict[str, str], job: dict | None) -> tuple[str, str]:
    """``(name, description)``: the name puts what tells runs apart first and short (:mod:`edgebench.naming`; the
    MLflow UI shows about 20 characters of it), the description holds every choice and override."""
    overrides, preset = _overrides()
    method = "dense" if choices["method"] == "none" else (preset or choices["method"])
    step_configs = methods.parse_steps(spec.method, spec.steps)
    swept = (job.get("swept_keys") or []) if job else []
    name = naming.run_name(method, step_configs, spec.export, choices, overrides, swept)
    return name, naming.description(choices["method"], spec.export, choices, overrides)


def _finished_run(tracker: Tracker, chash: str, status: str = "FINISHED"):
    """The newest FINISHED top-level run (a single run or a sweep job) of this experiment with this config hash.

    Child runs (lottery-ticket levels) are never a match, even from stores written before they stopped
    carrying their parent's ``config_hash``. With ``status="RUNNING"``: the newest such run still running, in a
    process that is alive (another launch of the same sweep, or another sweep)."""
    found = tracker.search(f"tags.config_hash = '{chash}' and attributes.status = '{status}'", max_results=50)
    for r in found:
        parent = r.data.tags.get("mlflow.parentRunId")
        if r.data.tags.get(CHILD_TAG) == "true":
            continue
        if parent and sweep.PARENT_TAG not in tracker.client.get_run(parent).data.tags:
            continue  # a child of a method's run, not of a sweep
        if status == "RUNNING" and not run_process_alive(r):
            continue
        return r
    return None


def run_replicates(cfg: DictConfig) -> list[RunResult]:
    """``cfg`` run ``replicates`` times with seeds ``seed``, ``seed + 1``, ...: one MLflow run each, all tagged with
    the same ``replicate_group`` (the report averages them); with several, their test accuracy's mean and 95% t
    interval is printed at the end."""
    import copy

    from omegaconf import open_dict

    from edgebench.stats import mean_ci

    n = int(cfg.get("replicates", 1) or 1)
    if n < 1:
        raise ConfigError(f"replicates: must be >= 1, got {n}")
    results = []
    for i in range(n):
        c = copy.deepcopy(cfg)
        with open_dict(c):
            c.seed = int(cfg.seed) + i
        if n > 1:
            log.info("replicate %d of %d (seed %d)", i + 1, n, c.seed)
        results.append(run(c))
    if n > 1:
        done = [r.metrics["test/acc"] for r in results if "test/acc" in r.metrics]
        elsewhere = n - len(done)  # skipped: running in another process, its accuracy not known yet
        note = f"; {elsewhere} still running elsewhere, not included" if elsewhere else ""
        if len(done) > 1:
            m, h = mean_ci(done)
            print(f"{n} replicates (seeds {cfg.seed}-{int(cfg.seed) + n - 1}): test accuracy {m:.4f} ± {h:.4f} "
                  f"(mean, 95% t interval over {len(done)}){note}")
        elif elsewhere:
            print(f"{n} replicates (seeds {cfg.seed}-{int(cfg.seed) + n - 1}): too few finished here for an "
                  f"interval{note}")
    return results


def run(cfg: DictConfig) -> RunResult:
    """Run one experiment from a composed config and return what it logged.

    Everything that can be refused (config, data, method against model) is checked before the MLflow
    run is opened, so a bad input leaves an error and no FAILED run.
    """
    spec: EdgebenchConfig = validate(cfg)  # before any data, model or MLflow work
    from edgebench import locks

    locks.TIMEOUT_S = spec.store_lock_timeout_s  # how long a wait for another process's store entry may last
    steps = [methods.build(c) for c in methods.parse_steps(spec.method, spec.steps)]  # the chain is checked here
    last = steps[-1] if steps else None
    # export= against what the last step's output will need (its QuantSpec's dtype): before any MLflow run or data
    _exporter(spec, getattr(last, "spec_dtype", None))
    training.quiet_lightning()
    progress.MODE = spec.trainer.progress_bar  # evaluations show their progress as training does
    choices = _choices(cfg)
    paths = spec.paths

    training.seed_everything(spec.seed)
    splits = load_data(spec.data, paths.data_dir)
    log.info("data %s from %s: %s, input %s, %d classes", splits.name, splits.source, splits.sizes(),
             splits.input_shape, splits.num_classes)

    def build():
        torch.manual_seed(spec.seed)
        return build_model(spec.model, splits.input_shape, splits.num_classes)

    example = splits.test_x[:1]
    if steps:  # refuse an impossible combination before any training or MLflow run
        steps[0].check(build(), example)
    exp = _exporter(spec, getattr(last, "spec_dtype", None))
    if exp is not None and exp.format.startswith("tflite"):  # ops TFLite lacks: found on the untrained model
        from edgebench.export.tflite import check_convertible, check_convertible_int8

        # int8 (tflite_int8, tflite_micro): the PT2E route with random calibration, which refuses ops fp32 takes
        check = check_convertible_int8 if exp.dtype == "int8" else check_convertible
        check(build(), example, f"model={spec.model.name.value}")

    tracker = Tracker(paths.mlflow_tracking_uri, paths.mlflow_artifact_dir, spec.experiment_name)
    tracker.reap_dead_runs()
    resolved = plain_config(cfg)
    chash = sweep.config_hash(resolved, splits.digest)
    job = sweep.job_context()
    sweep_tags = _sweep_tags(tracker, job)
    run_name, described = _run_name(spec, choices, job)
    run_name = spec.run_name or run_name
    tags = {**choices, "edgebench.version": edgebench.__version__, "git_sha": git_sha(), "config_hash": chash,
            naming.DESCRIPTION_TAG: described,
            "replicate_group": sweep.replicate_group(resolved, splits.digest), "data.digest": splits.digest,
            **sweep_tags, **sweep.conf_tags(job), "pipeline": "->".join(s.name for s in steps) or "none",
            **{str(k): str(v) for k, v in spec.tags.items()}}  # tags= of the config (a study's name, arm, budget)
    resume = spec.resume if spec.resume is not None else bool(sweep_tags)
    with contextlib.ExitStack() as opened:
        # the check and the creation of this run under one lock: two launches of one sweep never both run a job
        with claim_lock(tracker.uri):
            done = _finished_run(tracker, chash) if resume else None
            busy = _finished_run(tracker, chash, "RUNNING") if resume and done is None else None
            if done is None and busy is None:
                mlrun = opened.enter_context(tracker.run(run_name, tags))
        if done is not None or busy is not None:
            other = done or busy
            if done is not None:
                log.info("skipped: run %s already finished with this config (config_hash %s); resume=false reruns "
                         "it", done.info.run_id, chash)
            else:
                log.info("skipped: run %s with this config (config_hash %s) is running elsewhere (%s pid %s); "
                         "resume=false runs it here too", busy.info.run_id, chash,
                         busy.data.tags.get("edgebench.host"), busy.data.tags.get("edgebench.pid"))
            parent = sweep_tags.get("mlflow.parentRunId")
            if parent and other.data.tags.get("mlflow.parentRunId") != parent:  # the sweep's report includes it
                tracker.client.set_tag(parent, f"{sweep.REUSED_TAG}.{sweep_tags['hydra.job.num']}", other.info.run_id)
            return RunResult(other.info.run_id, dict(other.data.metrics), dict(other.data.tags), done is not None,
                             skipped=True, model_id=run_model_id(tracker.client, other.info.run_id))

        work_dir = Path(paths.output_dir) / mlrun.run_id  # this run's files only, whatever else runs beside it
        mlrun.log_params(_params(resolved, splits.input_shape))
        # JSON is YAML: one file that yaml.safe_load, OmegaConf.load, Hydra and mlflow.artifacts.load_dict all read
        mlrun.log_text(json.dumps(rerun_config(resolved), indent=2), "config.yaml")
        mlrun.log_dataset(splits.train_x.numpy(), splits.train_y.numpy(), splits.name, splits.source, "training")
        mlrun.log_dataset(splits.test_x.numpy(), splits.test_y.numpy(), splits.name, splits.source, "test")
        log.info("MLflow run %s (%s) in %s", mlrun.run_id, run_name, paths.mlflow_tracking_uri)
        dm = EdgeDataModule(splits, spec.trainer.batch_size, spec.trainer.eval_batch_size, spec.seed)
        phases = progress.Phases(len(steps) + 2)  # the baseline, each step, then export, test and measure
        model_name = spec.model.name.value

        # each curve under the model it belongs to: a dense run's are its own (val/acc), a compressed run's are its
        # dense baseline's (baseline/val/acc)
        curve = "baseline/" if steps else ""

        def train(net):
            phases.start(f"baseline: training {model_name} for {progress.count(spec.trainer.max_epochs, 'epoch')}")
            return training.fit(net, dm, spec.trainer, epoch_sink=lambda epoch, row: mlrun.log_metrics(
                {f"{curve}{k}": v for k, v in row.items()}, step=epoch))

        baseline = cache.get_or_train(spec, paths.cache_dir, build, train, num_classes=splits.num_classes,
                                      data=splits.digest, recheck=_val_recheck(dm))
        if baseline.from_cache:  # the run still carries the curves of the model it reports
            phases.start(f"baseline: {model_name} from the cache ({progress.count(len(baseline.history), 'epoch')})")
            for row in baseline.history:
                mlrun.log_metrics({f"{curve}{k}": v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        model = baseline.model
        base_test = training.evaluate(model, dm.test_dataloader())
        compressed = methods.CompressionResult(model)  # the dense run deploys the baseline as it is
        step_metrics: dict[str, float] = {}  # what the steps logged under their own names (distill/teacher_*)
        earlier_knobs: dict[str, float] = {}  # a chain's steps before the last
        parent_key = baseline.key_hash  # a chain's outputs are stored by the key of their parent and their step
        trained = _trainer_of(spec, splits, dm, tracker, mlrun.run_id, tags)  # teachers
        for i, step in enumerate(steps):
            if i:  # on the previous step's output, before this step trains anything
                try:
                    step.check(model, example)
                except ConfigError as e:
                    raise ConfigError(f"steps.{i} ({step.name}) cannot take the model of steps.{i - 1} "
                                      f"({steps[i - 1].name}): {e}") from None
            label = step.name if len(steps) == 1 else f"{i} {step.name}"
            phases.start(_step_phase(step, label))
            ctx = _context(spec, model, dm, example, work_dir / f"step{i}", build, baseline.key_hash,
                           keep_zeros=i > 0, trained=trained, dense=baseline.model, step=i)
            compressed, hit, parent_key = _stored_step(spec, step, parent_key, lambda: step.compress(ctx), label)
            mlrun.set_tags({f"step.{i}.cache_hit": str(hit).lower(), f"step.{i}.key": parent_key})
            model = compressed.model
            # a step's report goes on the run that holds its model, under the names a single run uses: the last
            # step's on this run, an earlier step's on its own child run (below); this run keeps the knobs, named
            # figures and tags of the earlier steps too (method/sparsity of a prune -> int8 chain), the last step's
            # value where two share a name
            if i == len(steps) - 1:
                mlrun.log_metrics({f"method/{k}": v for k, v in earlier_knobs.items() if k not in compressed.knobs})
                _log_step(mlrun, compressed)
            else:
                earlier_knobs.update(compressed.knobs)
                mlrun.log_metrics(compressed.named_metrics)
                mlrun.set_tags(compressed.tags)
            step_metrics.update(compressed.named_metrics)
            for child in compressed.children:
                _child_run(tracker, mlrun.run_id, tags, child, baseline.model, base_test["test/acc"], dm,
                           example, spec)
            if i < len(steps) - 1:  # what this step bought, measured in full as a child run with its report
                _child_run(tracker, mlrun.run_id, {**tags, "method": step.name, "pipeline.step": str(i)},
                           methods.base.ChildResult(f"step {label}", model, {}, compressed.tags),
                           baseline.model, base_test["test/acc"], dm, example, spec,
                           report=lambda crun, out=compressed: _log_step(crun, out))

        artifact_dir = work_dir / "artifact"
        exporter = _exporter(spec, compressed.spec)  # the registry: export= and what the output needs
        phases.start(f"export ({exporter.name if exporter is not None else 'none'}), test and measure")
        try:
            artifact = exporter(model, example, artifact_dir, compressed.spec) if exporter is not None else None
        except BaseException:  # Ctrl-C, a full disk, a converter failure: no empty or half-written artifact/ stays
            shutil.rmtree(artifact_dir, ignore_errors=True)
            try:
                work_dir.rmdir()  # the run's folder, when the artifact was all it held
            except OSError:
                pass
            raise
        if artifact is not None and compressed.spec is not None:
            mlrun.set_tags({"quant.runtime": artifact.note})
        predict = compressed.predict or model
        if artifact is not None and (artifact.dtype != "fp32" or artifact.runtime != "onnxruntime"):
            predict = export.predictor(artifact)  # a low-precision or converted file: its own outputs count
        test = training.evaluate(predict, dm.test_dataloader())  # the deployed form's accuracy
        # what sweeps and every "best" choice select on: the same deployed form on the validation split, never the test split
        test["select/val_acc"] = training.evaluate(predict, dm.val_dataloader())["test/acc"]
        _log_model_plots(mlrun, model, splits)
        log.info("test accuracy %.4f (dense %.4f); measuring size, compute, memory and host latency",
                 test["test/acc"], base_test["test/acc"])
        dtype = artifact.dtype if artifact is not None else (compressed.spec.dtype if compressed.spec else compressed.dtype)
        measured = _measure(model, example, spec, artifact, baseline=baseline.model if steps else None,
                            dtype=dtype, analytic_bytes=compressed.analytic_bytes, artifact_dir=artifact_dir)
        metrics = {**test, **measured, "baseline/test_acc": base_test["test/acc"],
                   "delta/acc": test["test/acc"] - base_test["test/acc"]}
        model_id = None
        if measured.artifact is not None:  # the deployable as the run's LoggedModel, with the metrics below on it
            model_tags = {**{k: tags[k] for k in ("model", "data", "method", "device")}, **measured.tags()}
            model_id = mlrun.log_model(measured.artifact, example, "model", model_tags)  # runs:/<run id>/model too
            log.info("model logged: models:/%s (%s)", model_id, measured.artifact.format)
        mlrun.log_metrics(metrics, model_id=model_id)
        mlrun.set_tags({"baseline.cache_hit": str(baseline.from_cache).lower(),
                        "baseline.key": baseline.key_hash, **measured.tags()})
        # The deployable (artifact/) and the steps' files (step<i>/) are in MLflow's artifact store now, and the
        # steps' outputs in the store: no second copy under results/runs (Hydra's .hydra/ and log stay beside it).
        shutil.rmtree(work_dir, ignore_errors=True)

    from edgebench.tracking import deployable_location

    deployable = (deployable_location(tracker.client, mlrun.run_id, measured.artifact.path.name)
                  if measured.artifact is not None else None)
    result = RunResult(mlrun.run_id, {**step_metrics, **metrics}, {**tags, **compressed.tags, **measured.tags()}, baseline.from_cache,
                       baseline.history, measured.device_report, deployable=deployable, model_id=model_id)
    print_summary(result, ui_command(paths.mlflow_tracking_uri, paths.mlflow_artifact_dir, tracker.experiment_id))
    return result
