"""``python -m edgebench``: the Hydra entry point. Thin: the run itself is edgebench.pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

import edgebench.config  # noqa: F401  (registers the schemas in Hydra's ConfigStore)


def config_dir() -> Path:
    """The config folder: edgebench/conf in an installed wheel, else conf/ of the checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"edgebench's config folder was not found next to {here}; reinstall edgebench")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _main(cfg: DictConfig) -> float:
    from edgebench.pipeline import run
    from edgebench.sweep import record_failure

    try:
        result = run(cfg)
        from edgebench.sweep import objective

        return objective(result.metrics, cfg.device, str(cfg.objective))
    except Exception as e:
        if not record_failure(e):  # a single run: fail loudly
            raise
        # a sweep job: its MLflow run (if it got that far) is FAILED; the other jobs go on and the
        # sweep ends with a non-zero exit status naming the failures
        logging.getLogger("edgebench").exception("job failed; the sweep goes on")
        return float("nan")


def main() -> None:
    from edgebench import sweep

    _main()
    if sweep.LAST_FAILURE:  # a multirun in which some jobs failed: say so and exit non-zero
        raise SystemExit(f"edgebench: {sweep.LAST_FAILURE}")


if __name__ == "__main__":
    main()
