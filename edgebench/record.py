"""The run record: the one writer of MLflow for a run, and the run's identity.

    Record.open: the store's experiment, dead runs reaped, identity (config hash, replicate group, sweep job),
      name, tags; under the claim lock, an earlier FINISHED run of this config (or one RUNNING elsewhere) is
      returned instead (``rec.skipped``), else the run is opened: params, config.yaml, datasets
    rec.curve (the baseline's curves), rec.teacher (a teacher's child run), rec.step (a step's report, its
      children and, before the last step, its own child run), rec.finish (the contract, the LoggedModel),
      rec.result (the :class:`RunResult`, after the run is closed)
    Record.load(run_id, tracking_uri): a run read back for a report (:class:`LoadedRun`: params, metrics, tags,
      its child runs)

The run closes FINISHED when the ``with`` block ends, KILLED on Ctrl-C or SIGTERM and FAILED on an exception
(:meth:`edgebench.tracking.Tracker.run`, the low-level MLflow wrapper this builds on).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import edgebench
from edgebench.naming import PARENT_TAG, REUSED_TAG  # noqa: F401 (the sweep's tag names; edgebench.sweep re-exports)
from edgebench import naming
from edgebench.report import method_plots
from edgebench.config import ConfigError, EdgebenchConfig
from edgebench.store import digest
from edgebench.tracking import (Tracker, claim_lock, deployable_location, flatten, git_sha, run_model_id,
                                run_process_alive, ui_command)

if TYPE_CHECKING:
    from edgebench import deploy, methods
    from edgebench.chain import Dense, Env, StepResult

# Light to import (no torch): edgebench.sweep's launcher and the report read run identity from here, so the modules
# that need torch (edgebench.methods, edgebench.deploy) are imported where a run uses them.

log = logging.getLogger("edgebench.pipeline")  # the run's log lines keep the logger name they always had

# --- run identity ---------------------------------------------------------------------------------------------

SWEEP_FILE = "sweep.json"  # in a multirun's folder: its parent run, sweep id and config snapshot (edgebench.sweep)
CHILD_TAG = "edgebench.child"  # "true" on a method's child run (never matched by resume)


def config_hash(resolved: dict, data_digest: str | None = None) -> str:
    """What identifies a job's result: the resolved config without paths, names, resume switches and the replicate
    count (replicate i of ``seed=s replicates=3`` is the job ``seed=s+i``), and the data's content digest when
    given (other files at the same ``data.root`` are another job: resume never returns a run on the old ones)."""
    keep = {k: v for k, v in resolved.items() if k not in ("paths", "hydra", "resume", "run_name", "replicates")
            and not (k == "tags" and not v)}  # no tags: the hash runs had before ``tags`` existed
    return digest({**keep, "data_digest": data_digest} if data_digest else keep)


def replicate_group(resolved: dict, data_digest: str | None = None) -> str:
    """What replicates share: the config hash without the seed (tag ``replicate_group``; the report averages a
    group's runs), with the data's content digest when given."""
    keep = {k: v for k, v in resolved.items()
            if k not in ("paths", "hydra", "resume", "run_name", "replicates", "seed", "experiment_name")
            and not (k == "tags" and not v)}
    return digest({**keep, "data_digest": data_digest} if data_digest else keep)


def job_context() -> dict[str, Any] | None:
    """The sweep this process's Hydra job belongs to (parent run id, sweep id, job number), or None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return None
        path = Path(hc.sweep.dir) / SWEEP_FILE
        info = json.loads(path.read_text()) if path.exists() else {}
        return {**info, "job_num": hc.job.num, "sweep_dir": str(hc.sweep.dir)}
    except Exception:  # composed without Hydra's runtime (from Python, tests)
        return None


def conf_tags(ctx: dict[str, Any] | None) -> dict[str, str]:
    """``conf_digest`` of a sweep job: the digest of the sweep's config snapshot when the job was composed from it,
    else ``live`` (composed from the config folders as they were when the job started)."""
    if not ctx or not ctx.get("conf_digest"):
        return {}
    try:
        from hydra.core.hydra_config import HydraConfig

        used = {str(s.path) for s in HydraConfig.get().runtime.config_sources}
    except Exception:
        return {}
    snap = str(ctx.get("conf_snapshot"))
    return {"conf_digest": ctx["conf_digest"] if any(u.startswith(snap) for u in used) else "live"}


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


@dataclass
class LoadedRun:
    """A run read back from MLflow (:meth:`Record.load`): what it logged, and its child runs (a chain's earlier
    steps, lottery levels, teachers; a sweep parent's jobs), each read back the same way, oldest first."""

    run_id: str
    name: str
    status: str  # FINISHED, RUNNING, KILLED, FAILED
    experiment_id: str
    params: dict[str, str]
    metrics: dict[str, float]  # the last value of each
    tags: dict[str, str]  # MLflow's own (mlflow.*) included: mlflow.parentRunId, mlflow.runName
    start_time: int | None  # ms since the epoch
    end_time: int | None
    children: list["LoadedRun"] = field(default_factory=list)

    @property
    def parent_run_id(self) -> str | None:
        return self.tags.get("mlflow.parentRunId")

    @property
    def child(self) -> bool:
        """Whether this is a method's child run (tag ``edgebench.child``), not a run of its own."""
        return self.tags.get(CHILD_TAG) == "true"


def _loaded(client, run, children: bool) -> LoadedRun:
    kids = []
    if children:
        found = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'",
                                   max_results=50000, order_by=["attributes.start_time ASC"])
        kids = [_loaded(client, c, True) for c in found]
    return LoadedRun(run.info.run_id, run.info.run_name or run.data.tags.get("mlflow.runName", ""),
                     run.info.status, run.info.experiment_id, dict(run.data.params), dict(run.data.metrics),
                     dict(run.data.tags), run.info.start_time, run.info.end_time, kids)


def choices(resolved: dict) -> dict[str, str]:
    """The config option names chosen for each group (model=..., data=...) of the resolved config ``resolved``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        chosen = dict(HydraConfig.get().runtime.choices)
    except Exception:  # composed without Hydra's runtime (e.g. from Python)
        chosen = {}
    # a config rerun from its config.yaml has no group choices: use the names in it
    return {
        "model": str(chosen.get("model") or resolved["model"]["name"]),
        "data": str(chosen.get("data") or resolved["data"]["name"]),
        "device": str(chosen.get("device") or resolved["device"]["name"]),
        "method": str(chosen.get("method") or (resolved["method"] or {}).get("name") or _chain(resolved) or "none"),
    }


def _chain(plain: dict) -> str:
    """``a->b`` for ``steps=[a,b]`` (the tags ``method`` and ``chain``), else ''."""
    return "->".join(s if isinstance(s, str) else s["name"] for s in plain.get("steps") or [])


def _sweep_tags(tracker: Tracker, ctx: dict | None) -> dict[str, str]:
    """sweep_id, job number and the parent run, for a job of a multirun (``ctx``: :func:`job_context`)."""
    if ctx is None:
        return {}
    tags = {"sweep_id": str(ctx.get("sweep_id") or Path(ctx["sweep_dir"]).name), "hydra.job.num": str(ctx["job_num"])}
    if ctx.get("parent_run_id") and ctx.get("experiment_id") == tracker.experiment_id:
        tags["mlflow.parentRunId"] = ctx["parent_run_id"]
    return tags


def _overrides() -> tuple[list[str], str | None]:
    """The command line's (or a sweep job's) overrides and the ``+chain=`` chosen, if any (``+pipeline=``, its old
    name, includes the same ``chain`` option)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        return list(hc.overrides.task), hc.runtime.choices.get("chain")
    except Exception:  # composed without Hydra's runtime
        return [], None


def run_name(spec: EdgebenchConfig, chosen: dict[str, str], job: dict | None) -> tuple[str, str]:
    """``(name, description)``: the name puts what tells runs apart first and short (:mod:`edgebench.naming`; the
    MLflow UI shows about 20 characters of it), the description holds every choice and override."""
    from edgebench import methods

    overrides, named_chain = _overrides()
    method = "dense" if chosen["method"] == "none" else (named_chain or chosen["method"])
    step_configs = methods.parse_steps(spec.method, spec.steps)
    swept = (job.get("swept_keys") or []) if job else []
    name = naming.run_name(method, step_configs, spec.export, chosen, overrides, swept)
    return name, naming.description(chosen["method"], spec.export, chosen, overrides)


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


def child_tags(tags: dict, parent_id: str, extra: dict, name: str) -> dict:
    """A child run's tags: its parent's, without the ``config_hash`` that resume matches and the parent's
    description, plus ``extra``; its ``replicate_group`` is its parent's and its own name, so the report averages
    the same child of every replicate (level 3 of every seed) and never a child with its parent."""
    out = {**{k: v for k, v in tags.items() if k not in ("config_hash", naming.DESCRIPTION_TAG)}, **extra,
           "mlflow.parentRunId": parent_id, CHILD_TAG: "true"}
    if "replicate_group" in tags:
        out["replicate_group"] = f"{tags['replicate_group']} / {name}"
    return out


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
        if parent and PARENT_TAG not in tracker.client.get_run(parent).data.tags:
            continue  # a child of a method's run, not of a sweep
        if status == "RUNNING" and not run_process_alive(r):
            continue
        return r
    return None


# --- the record ---------------------------------------------------------------------------------------------


class Record:
    """One run's record in MLflow. Made by :meth:`open`; ``skipped`` is the :class:`RunResult` of an earlier run
    returned instead (resume), and then nothing else may be called."""

    def __init__(self, tracker: Tracker, tags: dict[str, str], run=None, skipped: RunResult | None = None,
                 steps: int = 0, output_dir: str | Path = "."):
        self.tracker, self.tags, self.run, self.skipped = tracker, tags, run, skipped
        self.curve_prefix = "baseline/" if steps else ""  # a compressed run's curves are its dense baseline's
        self.work_dir = Path(output_dir) / run.run_id if run is not None else None  # this run's files only
        self.step_metrics: dict[str, float] = {}  # what the steps logged under their own names (distill/teacher_*)
        self.step_tags: dict[str, str] = {}  # the last step's tags
        self._earlier_knobs: dict[str, float] = {}  # a chain's steps before the last
        self._model_id: str | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def ui(self) -> str:
        """The command that opens the MLflow UI on this run's store and experiment."""
        return ui_command(self.tracker.uri, self.tracker.artifact_dir, self.tracker.experiment_id)

    @classmethod
    @contextlib.contextmanager
    def open(cls, spec: EdgebenchConfig, resolved: dict, splits, steps: list) -> Iterator["Record"]:
        """The run of ``spec`` (resolved as ``resolved``) on ``splits`` with the chain ``steps``, open for the block.

        With resume (``resume=true``, the default in a sweep) an earlier FINISHED run of the same config hash, or
        one RUNNING in a live process, is returned instead (``rec.skipped``; a sweep's parent notes it as
        ``sweep.reused.<job>``); the check and the creation happen under one lock, so two launches of one sweep
        never both run a job."""
        paths = spec.paths
        tracker = Tracker(paths.mlflow_tracking_uri, paths.mlflow_artifact_dir, spec.experiment_name)
        tracker.reap_dead_runs()
        chosen = choices(resolved)
        chash = config_hash(resolved, splits.digest)
        job = job_context()
        sweep_tags = _sweep_tags(tracker, job)
        name, described = run_name(spec, chosen, job)
        name = spec.run_name or name
        tags = {**chosen, "edgebench.version": edgebench.__version__, "git_sha": git_sha(), "config_hash": chash,
                naming.DESCRIPTION_TAG: described,
                "replicate_group": replicate_group(resolved, splits.digest), "data.digest": splits.digest,
                **sweep_tags, **conf_tags(job), naming.CHAIN_TAG: "->".join(s.name for s in steps) or "none",
                **{str(k): str(v) for k, v in spec.tags.items()}}  # tags= of the config (a study's name, arm, budget)
        resume = spec.resume if spec.resume is not None else bool(sweep_tags)
        with contextlib.ExitStack() as opened:
            with claim_lock(tracker.uri):
                done = _finished_run(tracker, chash) if resume else None
                busy = _finished_run(tracker, chash, "RUNNING") if resume and done is None else None
                if done is None and busy is None:
                    mlrun = opened.enter_context(tracker.run(name, tags))
            if done is not None or busy is not None:
                yield cls(tracker, tags, skipped=_skip(tracker, chash, done, busy, sweep_tags))
                return
            rec = cls(tracker, tags, mlrun, steps=len(steps), output_dir=paths.output_dir)
            mlrun.log_params(_params(resolved, splits.input_shape))
            # JSON is YAML: one file that yaml.safe_load, OmegaConf.load, Hydra and mlflow.artifacts.load_dict all read
            mlrun.log_text(json.dumps(rerun_config(resolved), indent=2), "config.yaml")
            mlrun.log_dataset(splits.train_x.numpy(), splits.train_y.numpy(), splits.name, splits.source, "training")
            mlrun.log_dataset(splits.test_x.numpy(), splits.test_y.numpy(), splits.name, splits.source, "test")
            log.info("MLflow run %s (%s) in %s", mlrun.run_id, name, paths.mlflow_tracking_uri)
            yield rec

    @staticmethod
    def load(run_id: str, tracking_uri: str, children: bool = True) -> LoadedRun:
        """The run ``run_id`` of the store ``tracking_uri`` read back, of any status: its params, metrics (the last
        value of each), tags and, with ``children``, its child runs. The one way a report reads a single run; a
        store or a run that is not there is a :class:`edgebench.config.ConfigError` naming it (the store is never
        created)."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        from edgebench.tracking import RetryingClient, check_store

        check_store(tracking_uri, must_exist=True, hint="pass the store the run was logged to")
        client = RetryingClient(MlflowClient(tracking_uri))
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise ConfigError(f"no run {run_id} in MLflow store {tracking_uri}; pass a run id of that store "
                              "(the MLflow UI or edgebench.report's table names them)") from None
        return _loaded(client, run, children)

    def curve(self, epoch: int, row: dict) -> None:
        """One epoch of the dense baseline's curves, under the model they belong to: a dense run's are its own
        (``val/acc``), a compressed run's are its dense baseline's (``baseline/val/acc``)."""
        self.run.log_metrics({f"{self.curve_prefix}{k}": v for k, v in row.items()}, step=epoch)

    @contextlib.contextmanager
    def teacher(self, model: str, seed: int, trainer) -> Iterator["_TeacherLog"]:
        """A teacher's own child run (``teacher <model>``, ``edgebench.role=trained``) with its params; the log it
        yields takes its curves and, at the end, its figures (:func:`edgebench.chain.teachers`)."""
        import dataclasses

        name = f"teacher {model}"
        with self.tracker.run(name, child_tags(self.tags, self.run_id, {"model": model, "edgebench.role": "trained"},
                                               name)) as crun:
            crun.log_params({"model.name": model, "seed": seed,
                             **{f"trainer.{k}": getattr(v, "value", v)
                                for k, v in dataclasses.asdict(trainer).items()}})
            yield _TeacherLog(crun)

    def step(self, s: "StepResult", dense: "Dense", env: "Env") -> None:
        """A step's report on the run that holds its model, under the names a single run uses: the last step's on
        this run, an earlier step's on its own child run (``step <i> <method>``, tag ``chain.step``) measured
        in full. This run keeps the knobs, named figures and tags of the earlier steps too (``method/sparsity`` of
        a prune -> int8 chain), the last step's value where two share a name. The step's own children (lottery
        levels) are child runs measured by the same contract."""
        from edgebench import methods

        out, i = s.out, s.index
        self.run.set_tags({f"step.{i}.cache_hit": str(s.hit).lower(), f"step.{i}.key": s.key})
        if s.last:
            self.run.log_metrics({f"method/{k}": v for k, v in self._earlier_knobs.items() if k not in out.knobs})
            _log_step(self.run, out)
            self.step_tags = dict(out.tags)
        else:
            self._earlier_knobs.update(out.knobs)
            self.run.log_metrics(out.named_metrics)
            self.run.set_tags(out.tags)
        self.step_metrics.update(out.named_metrics)
        for c in out.children:
            self.child(self.tags, c, dense, env)
        if not s.last:  # what this step bought, measured in full as a child run with its report
            self.child({**self.tags, "method": s.step.name, naming.STEP_TAG: str(i)},
                       methods.base.ChildResult(f"step {s.label}", out.model, {}, out.tags), dense, env,
                       report=lambda crun: _log_step(crun, out))

    def child(self, tags: dict, c, dense: "Dense", env: "Env", report=None) -> None:
        """One child run (e.g. a lottery-ticket level), named by what it is (``level 3``, ``step 0
        magnitude_pruning``; the parent link shows whose), with the full per-model contract
        (:func:`edgebench.deploy.child`); ``report(run)`` logs more on it (a chain step's own report).

        It carries its parent's tags but not its ``config_hash``: resume must find the parent, not a level."""
        from edgebench import deploy

        with self.tracker.run(c.name, child_tags(tags, self.run_id, c.tags, c.name)) as crun:
            if report is not None:
                report(crun)
            metrics, measured = deploy.child(c.model, dense, env)
            crun.log_metrics({**c.metrics, **metrics})
            crun.set_tags(measured.tags())

    def finish(self, out: "deploy.Deployed", dense: "Dense", env: "Env") -> None:
        """The contract on this run: the model's own figures, the deployable as the run's LoggedModel with the
        metrics on it, the baseline's and the export's tags; then this run's work folder goes (the deployable and
        the steps' files are in MLflow's artifact store now, the steps' outputs in the store)."""
        if out.tags:
            self.run.set_tags(out.tags)
        _log_model_plots(self.run, out.model, env.splits)
        measured = out.measured
        if measured.artifact is not None:  # the deployable as the run's LoggedModel, with the metrics below on it
            model_tags = {**{k: self.tags[k] for k in ("model", "data", "method", "device")}, **measured.tags()}
            self._model_id = self.run.log_model(measured.artifact, env.example, "model", model_tags)
            log.info("model logged: models:/%s (%s)", self._model_id, measured.artifact.format)
        self.run.log_metrics(out.metrics, model_id=self._model_id)
        self.run.set_tags({"baseline.cache_hit": str(dense.from_cache).lower(), "baseline.key": dense.key,
                           **measured.tags()})
        # Hydra's .hydra/ and log stay beside it: no second copy of the run's files under results/runs
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def result(self, out: "deploy.Deployed", dense: "Dense") -> RunResult:
        """What the run logged, read back once it is closed (where its deployable file lies in the artifact store)."""
        measured = out.measured
        deployable = (deployable_location(self.tracker.client, self.run_id, measured.artifact.path.name)
                      if measured.artifact is not None else None)
        return RunResult(self.run_id, {**self.step_metrics, **out.metrics},
                         {**self.tags, **self.step_tags, **measured.tags()}, dense.from_cache, dense.history,
                         measured.device_report, deployable=deployable, model_id=self._model_id)


class _TeacherLog:
    """A teacher's child run, as :func:`edgebench.chain.teachers` writes to it."""

    def __init__(self, run):
        self.run = run

    def curve(self, epoch: int, row: dict) -> None:
        self.run.log_metrics(row, step=epoch)

    def done(self, metrics: dict[str, float], from_cache: bool, key: str) -> None:
        self.run.log_metrics(metrics)
        self.run.set_tags({"baseline.cache_hit": str(from_cache).lower(), "baseline.key": key})


def _skip(tracker: Tracker, chash: str, done, busy, sweep_tags: dict) -> RunResult:
    """The :class:`RunResult` of the earlier run a resumed job returns (``done``: FINISHED, else ``busy``: RUNNING
    elsewhere); a sweep's parent notes it (``sweep.reused.<job>``) so the sweep's report includes it."""
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
        tracker.client.set_tag(parent, f"{REUSED_TAG}.{sweep_tags['hydra.job.num']}", other.info.run_id)
    return RunResult(other.info.run_id, dict(other.data.metrics), dict(other.data.tags), done is not None,
                     skipped=True, model_id=run_model_id(tracker.client, other.info.run_id))


def _log_step(mlrun, out: "methods.CompressionResult") -> None:
    """One step's report on the run that holds its model (a single method's run, a chain's last step's run, or the
    child run of a chain's earlier step), under the same names everywhere: its knobs (``method/<knob>``), per-step
    series (step = the row's ``round``), tags, tables, files and plots (drawn here by :mod:`edgebench.report.method_plots` from
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
                local = method_plots.draw(plot, Path(d) / artifact_path)
                mlrun.log_artifact(local, str(Path(artifact_path).parent))


def _log_model_plots(mlrun, model, splits) -> None:
    """Figures a model draws of itself on a few test images (a recurrent attention model: where it looked)."""
    for m in model.modules():
        if callable(getattr(m, "report_plots", None)):
            _log_plots(mlrun, m.report_plots(splits.test_x[:8], splits.test_y[:8], splits.class_names))
            return


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
