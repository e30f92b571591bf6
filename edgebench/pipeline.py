"""One edgebench run, stage by stage. This module owns the order; every stage lives elsewhere.

    validate config (the chain of steps, export=) -> load data -> steps[0].check(model) -> open the run record
      -> dense baseline (store or trained) -> the chain: each step on the previous step's model, from the store
      when done before (a child run per earlier step of a chain, measured in full) -> deploy: export (the registry,
      by export= and the last step's QuantSpec), evaluate on test, measure the artifact, fit -> the record's
      contract and model -> summary

:mod:`edgebench.chain` makes the models, :mod:`edgebench.deploy` exports, evaluates and measures the last one,
:mod:`edgebench.record` is the only writer of MLflow (and holds the run's identity).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from edgebench import chain, deploy, methods, progress, training
from edgebench.config import ConfigError, EdgebenchConfig, validate
from edgebench.data import EdgeDataModule, load_data
from edgebench.record import Record, RunResult, rerun_config
from edgebench.summary import print_summary

log = logging.getLogger(__name__)

__all__ = ["compose", "run", "run_replicates", "plain_config", "rerun_config", "RunResult"]


def run(cfg: DictConfig) -> RunResult:
    """Run one experiment from a composed config and return what it logged.

    Everything that can be refused (config, data, method against model, export=) is checked before the MLflow
    run is opened, so a bad input leaves an error and no FAILED run.
    """
    spec, steps = _checked(cfg)  # before any data, model or MLflow work
    training.seed_everything(spec.seed)
    splits = load_data(spec.data, spec.paths.data_dir)
    log.info("data %s from %s: %s, input %s, %d classes", splits.name, splits.source, splits.sizes(),
             splits.input_shape, splits.num_classes)
    build, example = chain.builder(spec, splits), splits.test_x[:1]
    if steps:  # refuse an impossible combination before any training or MLflow run
        steps[0].check(build(), example)
    refused = deploy.check(spec, getattr(steps[-1] if steps else None, "spec_dtype", None), build, example)

    with Record.open(spec, plain_config(cfg), splits, steps) as rec:
        if rec.skipped is not None:
            return rec.skipped
        dm = EdgeDataModule(splits, spec.trainer.batch_size, spec.trainer.eval_batch_size, spec.seed)
        phases = progress.Phases(len(steps) + 2)  # the baseline, each step, then export, test and measure
        env = chain.Env(spec, splits, dm, example, build, rec.work_dir, phases)
        dense = chain.baseline(env, rec.curve)
        env.trained = chain.teachers(env, rec.teacher)
        out, key = methods.CompressionResult(dense.model), dense.key  # the dense run deploys the baseline as it is
        for step in chain.chain(steps, dense, env):
            rec.step(step, dense, env)
            out, key = step.out, step.key
        deployed = deploy.deploy(out, dense, env, compressed=bool(steps), key=key, refused=refused)
        rec.finish(deployed, dense, env)
    result = rec.result(deployed, dense)
    print_summary(result, rec.ui)
    return result


def _checked(cfg: DictConfig) -> tuple[EdgebenchConfig, list[methods.Method]]:
    """The typed config and the built chain of steps, checked (unknown keys, the chain, export= against what the
    last step's output will need), and the process set up for the run (store lock timeout, progress, quiet
    Lightning)."""
    spec: EdgebenchConfig = validate(cfg)
    from edgebench import locks
    from edgebench.config import note_renamed_groups

    note_renamed_groups()  # +pipeline= and experiment=: one line naming +chain= and +preset=

    locks.TIMEOUT_S = spec.store_lock_timeout_s  # how long a wait for another process's store entry may last
    steps = [methods.build(c) for c in methods.parse_steps(spec.method, spec.steps)]  # the chain is checked here
    # export= against what the last step's output will need (its QuantSpec's dtype): before any MLflow run or data
    deploy.exporter(spec, getattr(steps[-1] if steps else None, "spec_dtype", None))
    training.quiet_lightning()
    progress.MODE = spec.trainer.progress_bar  # evaluations show their progress as training does
    return spec, steps


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
