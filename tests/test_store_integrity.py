"""A store that cannot give a user the wrong model (issue 24: items 1, 2, 6 and part of 15).

End to end through the CLI where the issue says so (real subprocesses in ``tmp_path``, sklearn digits or two tiny
image folders written here); the store's own behaviour through :class:`edgebench.store.Store`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
FAST = ["trainer.batch_size=32", "measure.latency=false", "measure.export=false", "trainer.progress_bar=none"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _cli(args, cwd: Path) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "edgebench", *args], cwd=cwd, env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _runs(cwd: Path):
    """The top-level runs of the CLI runs made in ``cwd``, oldest first."""
    client = MlflowClient(f"sqlite:///{cwd / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("edgebench")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"], max_results=100)
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def _image_folder(root: Path, bright: str, n: int = 40) -> Path:
    """Two classes ``a`` and ``b`` of 8x8 grey PNGs; the class named ``bright`` is light, the other dark."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        base = 200 if cls == bright else 40
        for i in range(n):
            img = np.clip(base + rng.normal(0, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(img, mode="L").save(root / cls / f"{i}.png")
    return root


# --- 1: the baseline key covers the data's content, not its path ---

def test_other_images_at_another_root_train_their_own_baseline(tmp_path):
    a = _image_folder(tmp_path / "A", bright="a")
    b = _image_folder(tmp_path / "B", bright="b")  # the same classes, the labels the other way round
    common = ["data=image_folder", "data.image_size=8", "data.channels=1", "model=lenet_300_100",
              "trainer.max_epochs=3", *FAST]
    _cli([*common, f"data.root={a}"], tmp_path)
    _cli([*common, f"data.root={b}"], tmp_path)
    first, second = _runs(tmp_path)
    assert first.data.tags["baseline.cache_hit"] == "false"
    assert second.data.tags["baseline.cache_hit"] == "false", "B's run reused the model trained on A"
    assert second.data.tags["baseline.key"] != first.data.tags["baseline.key"]
    assert second.data.metrics["test/acc"] > 0.9  # its own model, not A's (which gets B's labels backwards)
    # the same images at another path are the same data: a hit
    c = tmp_path / "C"
    os.rename(a, c)
    _cli([*common, f"data.root={c}"], tmp_path)
    third = _runs(tmp_path)[-1]
    assert third.data.tags["baseline.cache_hit"] == "true"
    assert third.data.tags["baseline.key"] == first.data.tags["baseline.key"]
