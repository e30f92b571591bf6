"""Shared fixtures: compose the real config with Hydra's compose API, pointed at tmp folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from edgebench.config import config_dir

CONF = config_dir()


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n auto``) each worker gets its share of the cores: torch, and the
    CLI subprocesses the tests start (through OMP_NUM_THREADS), use cores / workers threads, not every core each."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = threads
        import torch

        torch.set_num_threads(int(threads))


@pytest.fixture(scope="session")
def mlflow_template_db() -> Path:
    """An empty MLflow SQLite store with this MLflow's schema (edgebench.tracking.schema_template, made once per
    MLflow version): a copy opens in milliseconds where a new store runs seconds of migrations. Copy it; never
    write to it."""
    from edgebench.tracking import schema_template

    return schema_template()


def made_once(tmp_path_factory, name: str, make) -> tuple[Path, dict]:
    """``make(folder) -> dict`` run once per test session, in a folder every pytest-xdist worker of the session
    shares (the first worker to ask makes it under a file lock, the others wait and read it): the folder and the
    dict (kept as JSON). Without xdist, once per session as a session fixture would be."""
    import json

    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above the workers' own
    where, done = root / name, root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            where.mkdir(exist_ok=True)
            done.write_text(json.dumps(make(where)))
    return where, json.loads(done.read_text())


@pytest.fixture(scope="session")
def digits_seed_sweep(tmp_path_factory):
    """One finished two-job sweep through the CLI (`python -m edgebench -m ... seed=0,1`, one epoch on digits), made
    once per session (across xdist workers too) and only read by the tests that check it (its end-of-sweep output,
    the MLflow UI's pages of it): its folder (the CLI's cwd, holding results/) and the finished process."""
    import subprocess
    import sys

    def sweep(where: Path) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
        from tests import cli

        out = cli.run(["-m", "data=digits", "trainer.max_epochs=1", "trainer.batch_size=32", "measure.latency=false",
                       "trainer.progress_bar=none", "seed=0,1"], where, env=env, timeout=600)
        return {"args": out.args, "returncode": out.returncode, "stdout": out.stdout, "stderr": out.stderr}

    where, out = made_once(tmp_path_factory, "digits_seed_sweep", sweep)
    return where, subprocess.CompletedProcess(**out)


@pytest.fixture
def make_cfg(tmp_path, mlflow_template_db):
    """make_cfg(*overrides) -> a composed config whose paths all lie under tmp_path."""

    def _make(*overrides: str):
        GlobalHydra.instance().clear()
        db = tmp_path / "results" / "mlflow.db"
        if not db.exists():
            db.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(mlflow_template_db, db)
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("edgebench", overrides=list(overrides), return_hydra_config=True)
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.root_dir = str(tmp_path)
            cfg.paths.output_dir = str(tmp_path / "out")
            cfg.paths.mlflow_tracking_uri = f"sqlite:///{db}"
            cfg.trainer.progress_bar = "plain"
            del cfg["hydra"]
        return cfg

    yield _make
    GlobalHydra.instance().clear()


@pytest.fixture
def render_page(tmp_path):
    """The text a fresh headless Chromium profile renders at a URL (the DOM after 30 s of virtual time, tags and
    styles stripped); skips when Chromium is not installed."""
    import html
    import re
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (`make browser` installs Debian's chromium)")

    def render(url: str) -> str:
        profile = tmp_path / f"chromium-{len(list(tmp_path.glob('chromium-*')))}"  # a new profile per page
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                              f"--user-data-dir={profile}", "--virtual-time-budget=30000", "--window-size=1600,1000",
                              "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
        dom = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S)
        return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", dom).split()))

    return render
