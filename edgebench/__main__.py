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
            if isinstance(e, user_errors()) and not os.environ.get("HYDRA_FULL_ERROR"):
                # a mistake in the input: one line naming it, no traceback (HYDRA_FULL_ERROR=1 shows it)
                print(f"edgebench: error: {e}", file=sys.stderr)
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
    from edgebench.models import PretrainedWeightsError
    from edgebench.training import DivergedError, NonFiniteLossError

    return ConfigError, DataNotFoundError, PretrainedWeightsError, DivergedError, NonFiniteLossError


def main() -> None:
    from edgebench import signals, sweep, tracking

    signals.install()  # SIGTERM ends the run as KILLED, like Ctrl-C
    from edgebench.config import ConfigError, check_override_keys

    try:
        check_override_keys(sys.argv[1:])
    except ConfigError as e:  # a typo in a key: one line, before Hydra's multi-line message
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
