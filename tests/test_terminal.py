"""What a run says on the terminal: the summary's figures, phase lines and estimates, progress over long
evaluations, the learned-check's verdict, and a start-up that loads no training library when nothing trains."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgebench import pipeline, progress, training
from edgebench.config import ProgressBar, TrainerConfig

FAST = ["data=digits", "model=lenet_300_100", "trainer.max_epochs=1", "measure.latency=false"]
REPO = Path(__file__).resolve().parents[1]


def _deployable(out: str) -> Path:
    found = re.findall(r"^deployable file: (.+)$", out, re.M)
    assert len(found) == 1, out
    return Path(found[0])


def test_summary_shows_the_compression_ratio_and_the_deployable_file(make_cfg, capsys):
    res = pipeline.run(make_cfg(*FAST))
    out = capsys.readouterr().out
    ratio = res.metrics["size/compression_ratio"]
    smallest = min(res.metrics[k] for k in ("size/bytes_artifact", "size/bytes_gzip", "size/bytes_sparse"))
    assert ratio == pytest.approx(res.metrics["size/bytes_fp32"] / smallest)  # the dense run: its own fp32 weights
    assert re.search(rf"compression\s+│ {ratio:.2f}x", out), out
    path = _deployable(out)
    assert path.is_file() and path.suffix == ".onnx" and path.stat().st_size == res.metrics["size/bytes_artifact"]
    assert path == Path(res.deployable)


def test_the_deployable_file_is_found_in_a_logged_model_too(tmp_path, mlflow_template_db):
    import shutil

    from mlflow.tracking import MlflowClient

    from edgebench.tracking import deployable_location

    shutil.copy(mlflow_template_db, tmp_path / "mlflow.db")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run, other = client.create_run(exp).info.run_id, client.create_run(exp).info.run_id
    model = client.create_logged_model(exp, name="m", source_run_id=run)  # an MLflow 3 LoggedModel of the run
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "model.tflite").write_bytes(b"TFL3")
    client.log_model_artifacts(model.model_id, str(tmp_path / "files"))
    found = Path(deployable_location(client, run, "model.tflite"))
    assert found.read_bytes() == b"TFL3" and model.model_id in str(found)
    assert deployable_location(client, other, "model.tflite") is None  # another run's model is not this run's


def test_a_method_that_removes_no_weights_shows_no_sparsity(make_cfg, capsys):
    pipeline.run(make_cfg(*FAST, "+method=fp16"))
    out = capsys.readouterr().out
    assert "parameters" in out and "sparsity" not in out, out
    assert _deployable(out).is_file()


def test_a_distillation_summary_shows_the_teachers_accuracy(make_cfg, capsys):
    res = pipeline.run(make_cfg(*FAST, "+method=distillation", "method.epochs=1"))
    out = capsys.readouterr().out
    acc = res.metrics["distill/teacher_test_acc"]
    assert re.search(rf"teacher\s+│ the dense baseline \(lenet_300_100\): test accuracy {acc:.4f}", out), out


def test_a_pruning_run_says_its_phases_rounds_and_estimates(make_cfg, capsys, caplog):
    caplog.set_level(logging.INFO)
    pipeline.run(make_cfg(*FAST, "trainer.max_epochs=2", "+method=magnitude_pruning", "method.sparsity=0.5",
                          "method.rounds=2", "method.retrain_epochs=1"))
    lines = [r.getMessage() for r in caplog.records]
    phases = [m for m in lines if re.match(r"\[\d/\d\] ", m)]
    assert phases == ["[1/3] baseline: training lenet_300_100 for 2 epochs",
                      "[2/3] magnitude_pruning: rounds=2, retrain_epochs=1",
                      "[3/3] export (onnx), test and measure"], lines
    assert any(re.match(r"epoch 1/2 .*\(ETA \d+:\d\d\)$", m) for m in lines), lines  # the fit's time left
    assert any(re.match(r"pruning round 1/2: .*, ETA \d+:\d\d$", m) for m in lines), lines  # the rounds' time left
    assert any(m.startswith("pruning round 2/2: ") and "ETA" not in m for m in lines), lines
    assert re.search(r"sparsity 50\.\d%", capsys.readouterr().out)  # where weights were removed, it is said


def test_a_cached_baseline_is_a_phase_too(make_cfg, caplog):
    pipeline.run(make_cfg(*FAST))
    caplog.set_level(logging.INFO)
    pipeline.run(make_cfg(*FAST))
    assert "[1/2] baseline: lenet_300_100 from the cache (1 epoch)" in [r.getMessage() for r in caplog.records]


def test_an_evaluation_reports_progress_unless_told_not_to(monkeypatch, caplog):
    from edgebench.config import DataConfig, ModelConfig
    from edgebench.data import EdgeDataModule, load_data
    from edgebench.models import build_model

    splits = load_data(DataConfig(name="digits"), Path("."))
    net = build_model(ModelConfig(name="lenet_300_100"), splits.input_shape, splits.num_classes)
    loader = EdgeDataModule(splits, 32, 32).test_dataloader()
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    monkeypatch.setattr(progress, "MODE", ProgressBar.plain)
    training.evaluate(net, loader)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("evaluating")]
    assert said[0] == f"evaluating {len(splits.test_y)} images: 1/{len(loader)} batches, ETA " + said[0].split("ETA ")[1]
    assert len(said) == len(loader) - 1  # the last batch needs no estimate: the summary follows
    caplog.clear()
    monkeypatch.setattr(progress, "MODE", ProgressBar.none)
    training.evaluate(net, loader)
    assert not [r for r in caplog.records if r.getMessage().startswith("evaluating")]


def test_a_run_that_trains_nothing_never_imports_lightning(make_cfg, tmp_path):
    pipeline.run(make_cfg(*FAST))  # trains the baseline here; the run below loads it from the cache
    code = ("import sys\nimport edgebench.pipeline as p\n"
            "assert not [m for m in sys.modules if 'lightning' in m], 'importing the pipeline loaded Lightning'\n"
            f"res = p.run(p.compose({FAST!r}, {str(tmp_path)!r}, {str(tmp_path / 'out2')!r}))\n"
            "assert res.baseline_from_cache\n"
            "print('lightning modules:', sorted(m for m in sys.modules if 'lightning' in m))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "lightning modules: []" in out.stdout, out.stdout[-2000:]


# ------------------------------------------------------------------------------------------- the learned-check


def test_a_falling_finite_loss_has_not_learned_yet_and_names_the_model_and_the_fix():
    cfg = TrainerConfig(lr=1e-3)
    # ResNet-20 on digits after 1 epoch: train loss 1.19 (a uniform guess: ln 10 = 2.30), val acc 0.119
    with pytest.raises(training.NotLearnedError) as e:
        training.check_learned([{"train/loss": 1.19, "val/acc": 0.119}], 10, cfg, what="the teacher (resnet20)",
                               keys="method.teacher.trainer")
    msg = str(e.value)
    assert msg.startswith("the teacher (resnet20) has not learned yet: final val/acc 0.1190 after 1 epoch(s)")
    assert "train longer, e.g. method.teacher.trainer.max_epochs=10" in msg and "diverged" not in msg
    assert isinstance(e.value, training.DivergedError)  # callers catching the old error still catch it
    with pytest.raises(training.NotLearnedError, match=r"fell from 2\.1 to 1\.5.*trainer\.max_epochs=15 and "
                                                       r"trainer\.limit_train_batches=1\.0"):
        training.check_learned([{"train/loss": 2.1, "val/acc": 0.1}, {"train/loss": 1.9, "val/acc": 0.1},
                                {"train/loss": 1.5, "val/acc": 0.12}], 10,
                               TrainerConfig(limit_train_batches=0.05))


@pytest.mark.parametrize("history", [
    [{"train/loss": float("nan"), "val/acc": 0.1}],  # NaN
    [{"train/loss": 7e21, "val/acc": 0.1}],  # finite but far above a uniform guess: blown up
    [{"train/loss": 1.9, "val/acc": 0.1}, {"train/loss": 2.2, "val/acc": 0.1}],  # rising
    [{"train/loss": 2.0, "val/acc": 0.1}, {"train/loss": 2.0, "val/acc": 0.1}],  # flat
])
def test_a_nan_rising_or_flat_loss_is_diverged(history):
    with pytest.raises(training.DivergedError) as e:
        training.check_learned(history, 10, TrainerConfig(lr=0.5), what="the dense baseline (lenet5)")
    assert not isinstance(e.value, training.NotLearnedError)
    msg = str(e.value)
    assert msg.startswith("the dense baseline (lenet5) did not learn:") and "diverged at trainer.lr=0.5" in msg
    assert "e.g. trainer.lr=0.05" in msg


def test_a_short_run_that_has_not_learned_yet_says_so_on_one_line(tmp_path):
    # LeNet-300-100 after 2 of digits' 41 batches at a low learning rate: the loss falls, accuracy is still at chance
    from tests import cli

    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "OMP_NUM_THREADS": "1"}
    out = cli.run([*FAST, "trainer.lr=1e-4", "trainer.limit_train_batches=0.05"], tmp_path, env=env, timeout=600)
    assert out.returncode == 2, out.stderr[-3000:]
    err = out.stderr.strip().splitlines()[-1]
    assert err.startswith("edgebench: error: the dense baseline (lenet_300_100) has not learned yet:"), err
    assert "trainer.max_epochs=10 and trainer.limit_train_batches=1.0" in err
