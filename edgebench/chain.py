"""The chain: the dense baseline, then each step in order on the previous step's model, one result per step.

Each model comes from the store when it was made before: the baseline by its key (model, data, trainer, seed),
a step's output by its parent's key and the step's own (:func:`stored_step`); teachers (``ctx.trained``) from the
same store. This module never logs, exports or measures: what reaches MLflow goes through the callables and the
teacher log it is given (:class:`edgebench.record.Record` supplies them), and deployment is
:mod:`edgebench.deploy`'s. It imports neither ``mlflow`` nor :mod:`edgebench.tracking`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import torch
from omegaconf import OmegaConf

from edgebench import cache, measure, methods, progress, store, training
from edgebench.config import ConfigError, EdgebenchConfig
from edgebench.data import EdgeDataModule
from edgebench.models import build_model

log = logging.getLogger("edgebench.pipeline")  # the run's log lines keep the logger name they always had

Curve = Callable[[int, dict], None]  # curve(epoch, row): one epoch's figures, to the run that holds the model


@dataclass
class Env:
    """What a run's models are made with: its config, data, an example input, ``build()`` (a fresh initialised
    model of the config), its own work folder, its phase lines and ``trained`` (teachers, :func:`teachers`)."""
    spec: EdgebenchConfig
    splits: object  # edgebench.data.Splits
    dm: EdgeDataModule
    example: torch.Tensor
    build: Callable[[], torch.nn.Module]
    work_dir: Path
    phases: progress.Phases
    trained: Callable | None = None


@dataclass
class Dense:
    """The dense baseline: its model, test accuracy, store key digest, whether the store had it, its curves."""
    model: torch.nn.Module
    test_acc: float
    key: str
    from_cache: bool
    history: list[dict]


@dataclass
class StepResult:
    """One step of the chain done: its index, the step, its label (``prune`` alone, ``0 prune`` in a chain), its
    output, whether that came from the store, the output's key digest, and whether it is the last step."""
    index: int
    step: methods.Method
    label: str
    out: methods.CompressionResult
    hit: bool
    key: str
    last: bool


def builder(spec: EdgebenchConfig, splits) -> Callable[[], torch.nn.Module]:
    """``build()``: the config's model, freshly initialised with the run's seed, for the data's shape."""
    def build():
        torch.manual_seed(spec.seed)
        return build_model(spec.model, splits.input_shape, splits.num_classes)

    return build


def baseline(env: Env, curve: Curve) -> Dense:
    """The dense baseline from the store, or trained and stored; ``curve`` gets its per-epoch figures either way
    (the run still carries the curves of the model it reports)."""
    spec, model_name = env.spec, env.spec.model.name.value

    def train(net):
        env.phases.start(f"baseline: training {model_name} for {progress.count(spec.trainer.max_epochs, 'epoch')}")
        return training.fit(net, env.dm, spec.trainer, epoch_sink=curve)

    got = cache.get_or_train(spec, spec.paths.store_dir, env.build, train, num_classes=env.splits.num_classes,
                             data=env.splits.digest, recheck=_val_recheck(env.dm))
    if got.from_cache:
        env.phases.start(f"baseline: {model_name} from the cache ({progress.count(len(got.history), 'epoch')})")
        for row in got.history:
            curve(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})
    acc = training.evaluate(got.model, env.dm.test_dataloader())["test/acc"]
    return Dense(got.model, acc, got.key_hash, got.from_cache, got.history)


def chain(steps: list[methods.Method], dense: Dense, env: Env) -> Iterator[StepResult]:
    """Each step on the previous step's model (the first on the dense baseline), checked against that model before
    it trains anything; one :class:`StepResult` per step, from the store when the same step ran on the same parent
    before."""
    model, parent_key = dense.model, dense.key  # a chain's outputs are stored by the key of their parent and step
    for i, step in enumerate(steps):
        if i:  # on the previous step's output, before this step trains anything
            try:
                step.check(model, env.example)
            except ConfigError as e:
                raise ConfigError(f"steps.{i} ({step.name}) cannot take the model of steps.{i - 1} "
                                  f"({steps[i - 1].name}): {e}") from None
        label = step.name if len(steps) == 1 else f"{i} {step.name}"
        env.phases.start(_step_phase(step, label))
        ctx = _context(env.spec, model, env.dm, env.example, env.work_dir / f"step{i}", env.build, dense.key,
                       keep_zeros=i > 0, trained=env.trained, dense=dense.model, step=i)
        out, hit, parent_key = stored_step(env.spec, step, parent_key, lambda: step.compress(ctx), label)
        model = out.model
        yield StepResult(i, step, label, out, hit, parent_key, i == len(steps) - 1)


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
        output_dir=Path(output_dir), seed=spec.seed, build_model=build, store_dir=Path(spec.paths.store_dir),
        baseline_key=baseline_key, fit=fit, trained=trained, dense=dense, step=step,
    )


def teachers(env: Env, open_log: Callable[[str, int, object], ContextManager]):
    """``trained(model, trainer=None, seed=None)``: a trained model of another config on this run's data.

    It comes from the same store as the dense baseline (key: model, data, trainer, seed), trained once. Its
    figures go to ``open_log(model, seed, trainer config)``, a context manager that yields a log with
    ``curve(epoch, row)`` and ``done(metrics, from_cache, key digest)`` (:meth:`edgebench.record.Record.teacher`:
    its own child run, ``edgebench.role=trained``, named ``teacher <model>``, that holds its curves, its test
    accuracy, params and MACs; the curves never enter the asking run's). A model already in the store gets
    its stored curves there too.
    """
    from edgebench.config import ModelConfig, ModelName, TrainerConfig

    spec, splits, dm = env.spec, env.splits, env.dm

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

        with open_log(model, other.seed, tcfg) as tlog:
            other_dm = EdgeDataModule(splits, tcfg.batch_size, tcfg.eval_batch_size, other.seed)

            def train(net):
                log.info("teacher: training %s for %s", model, progress.count(tcfg.max_epochs, "epoch"))
                return training.fit(net, other_dm, tcfg, epoch_sink=tlog.curve)

            got = cache.get_or_train(other, spec.paths.store_dir, build, train, num_classes=splits.num_classes,
                                     data=splits.digest, recheck=_val_recheck(other_dm), what=f"the teacher ({model})",
                                     keys="method.teacher.trainer")
            if got.from_cache:
                for row in got.history:
                    tlog.curve(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})
            example = splits.test_x[:1]
            tlog.done({**training.evaluate(got.model, dm.test_dataloader()),
                       **measure.basic_metrics(got.model, example)}, got.from_cache, got.key_hash)
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


def stored_step(spec: EdgebenchConfig, step, parent: str, make, label: str):
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

    entry = store.Store(spec.paths.store_dir).get_or_make("steps", key, make, save, load, name=step.name,
                                                         what=f"stored output of step {label}",
                                                         remember=training.SAME_EACH_TIME)
    if entry.hit:
        log.info("step %s: output reused from the store (%s)", label, entry.path)
    return entry.value, entry.hit, h
