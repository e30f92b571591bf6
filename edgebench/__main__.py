"""``python -m edgebench``: the Hydra entry point. Thin: the run itself is edgebench.pipeline."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from edgebench.config import config_dir  # importing edgebench.config registers the schemas in Hydra's ConfigStore


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="edgebench")
def _main(cfg: DictConfig) -> float:
    from edgebench.pipeline import run_replicates
    from edgebench.sweep import record_failure

    try:
        results = run_replicates(cfg)
        from edgebench.sweep import objective

        scores = [objective(r.metrics, cfg.device, str(cfg.objective)) for r in results]
        return sum(scores) / len(scores)  # a sweeper sees the mean over the replicates
    except KeyboardInterrupt:
        from edgebench import sweep

        if sweep.LAUNCHER_GONE:  # a worker whose sweep launcher died: its run is closed KILLED; nobody waits for it
            logging.getLogger("edgebench").error("%s: this worker (pid %d) exits", sweep.LAUNCHER_GONE, os.getpid())
            logging.shutdown()
            os._exit(1)
        raise
    except Exception as e:
        if not record_failure(e):  # a single run
            message = user_message(e)
            if message is not None and not os.environ.get("HYDRA_FULL_ERROR"):
                # a mistake in the input or a fault of the machine (a full disk): one line naming it and the fix,
                # no traceback (HYDRA_FULL_ERROR=1 shows it); an MLflow run that was open is FAILED with the reason
                print(f"edgebench: error: {message}", file=sys.stderr)
                raise SystemExit(2) from None
            raise
        # a sweep job: its MLflow run (if it got that far) is FAILED; the other jobs go on and the
        # sweep ends with a non-zero exit status naming the failures
        logging.getLogger("edgebench").exception("job failed; the sweep goes on")
        return float("nan")


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that name a wrong input and its fix: printed as one line."""
    from edgebench.config import ConfigError
    from edgebench.data import DataNotFoundError
    from edgebench.locks import LockTimeout
    from edgebench.models import PretrainedWeightsError
    from edgebench.training import DivergedError, NonFiniteLossError

    return ConfigError, DataNotFoundError, PretrainedWeightsError, DivergedError, NonFiniteLossError, LockTimeout


def user_message(e: BaseException) -> str | None:
    """The one line printed for ``e`` instead of a traceback: a user error's message, or a fault of the machine
    (no space left, a folder that cannot be written: :func:`edgebench.tracking.fault_message`); None otherwise."""
    from edgebench.tracking import fault_message

    if isinstance(e, user_errors()):
        return str(e)
    return fault_message(e)


def _override(args: list[str], key: str) -> str | None:
    for a in args:
        name, _, value = a.lstrip("+").partition("=")
        if name == key and value:
            return value
    return None


def check_results_folder(args: list[str]) -> None:
    """Refuse, in one line, a results folder that cannot be written (a file in its place, a read-only folder),
    before Hydra makes its output folder there with a traceback. The folder is ``paths.results_dir`` (or
    ``paths.root_dir``/results, default ./results) as given on the command line; interpolations are left alone."""
    from pathlib import Path

    from edgebench.config import ConfigError

    if _override(args, "hydra.run.dir") or _override(args, "hydra.sweep.dir"):
        return
    given = _override(args, "paths.results_dir")
    root = _override(args, "paths.root_dir")
    results = Path(given) if given else Path(root or ".") / "results"
    if "${" in str(results):
        return
    results = results.absolute()
    where = f"paths.results_dir={results}" if given else f"the results folder {results}"
    existing = results
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{where}: {existing} is a file, not a folder; move it aside or point "
                          "paths.results_dir at another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: {existing} is not writable; make it writable (chmod u+w) or point "
                          "paths.results_dir at another folder")


def main() -> None:
    from edgebench import signals, sweep, tracking

    signals.install()  # SIGTERM ends the run as KILLED, like Ctrl-C
    from edgebench.config import ConfigError, check_override_keys

    try:
        check_override_keys(sys.argv[1:])
        if not any(a.split("=")[0] in ("--help", "-h", "--hydra-help", "--info", "--cfg", "-c", "--shell-completion",
                                       "-sc") for a in sys.argv[1:]):  # only a run writes results
            check_results_folder(sys.argv[1:])
    except ConfigError as e:  # a typo in a key, results that cannot be written: one line, before Hydra's message
        print(f"edgebench: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        _main()
    except KeyboardInterrupt:
        closed = sweep.close_interrupted_sweep()
        run = f"run {tracking.LAST_RUN_ID} is marked KILLED" if tracking.LAST_RUN_ID else "no run was opened yet"
        if closed:
            run += f" and sweep {closed} too"
        print(f"\nedgebench: {signals.reason()}; {run}. Launch the same command again to resume: finished "
              "dense baselines come from the cache, and resume=true (the default in a multirun) skips finished runs.",
              file=sys.stderr)
        raise SystemExit(130) from None
    if sweep.LAST_FAILURE:  # a multirun in which some jobs failed: say so and exit non-zero
        raise SystemExit(f"edgebench: {sweep.LAST_FAILURE}")


if __name__ == "__main__":
    main()
