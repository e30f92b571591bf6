"""``python -m edgebench``: the Hydra entry point. Thin: the run itself is edgebench.pipeline."""

from __future__ import annotations

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

    return run(cfg).metrics["test/acc"]


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
