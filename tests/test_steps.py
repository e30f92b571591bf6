"""Chains of compression steps: spelling, presets, per-step overrides, and impossible chains refused early."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebench import methods
from edgebench.config import ConfigError, validate


def _steps(make_cfg, *overrides):
    spec = validate(make_cfg("data=digits", *overrides))
    return methods.parse_steps(spec.method, spec.steps)


def test_method_is_a_chain_of_one_step(make_cfg):
    assert [c.name for c in _steps(make_cfg, "+method=magnitude_pruning")] == ["magnitude_pruning"]
    assert _steps(make_cfg) == []  # the dense baseline


@pytest.mark.parametrize("overrides,expected", [
    (["steps=[magnitude_pruning,ptq_int8]"], [("magnitude_pruning", 0.9), ("ptq_int8", None)]),
    (["steps=[{name:magnitude_pruning,sparsity:0.5},ptq_int8]"], [("magnitude_pruning", 0.5), ("ptq_int8", None)]),
    (["+chain=deep_compression"], [("magnitude_pruning", 0.92), ("nonuniform_quant", None)]),
    (["+chain=deep_compression", "steps.0.sparsity=0.8"], [("magnitude_pruning", 0.8), ("nonuniform_quant", None)]),
    (["+chain=prune_int8"], [("structured_pruning", None), ("ptq_int8", None)]),
    (["+pipeline=deep_compression", "steps.0.sparsity=0.8"], [("magnitude_pruning", 0.8), ("nonuniform_quant", None)]),
])
def test_spellings_presets_and_per_step_overrides(make_cfg, overrides, expected):
    assert [(c.name, getattr(c, "sparsity", None)) for c in _steps(make_cfg, *overrides)] == expected


def test_deep_compression_preset_settings(make_cfg):
    prune, share = _steps(make_cfg, "+chain=deep_compression", "steps.1.bits=6")
    assert (prune.schedule, prune.rounds, share.bits) == ("iterative", 3, 6)


@pytest.mark.parametrize("overrides,line", [
    (["+pipeline=prune_int8"], "edgebench: +pipeline= is deprecated: use +chain=prune_int8"),
    (["experiment=quick"], "edgebench: experiment= is deprecated: use +preset=quick"),
])
def test_an_old_group_name_still_composes_and_names_the_new_one_once(make_cfg, capsys, overrides, line):
    from edgebench import config

    config._noted.clear()
    make_cfg("data=digits", *overrides)
    config.note_renamed_groups()
    config.note_renamed_groups()  # once a process
    assert capsys.readouterr().err.splitlines() == [line]
    make_cfg("data=digits", "+chain=prune_int8", "+preset=quick")
    config._noted.clear()
    config.note_renamed_groups()
    assert capsys.readouterr().err == ""  # the new names: nothing to say


@pytest.mark.parametrize("steps,message", [
    ("[ptq_int8,magnitude_pruning]", r"steps\.1 \(magnitude_pruning\) cannot follow: steps\.0 \(ptq_int8\) hands on a "
                                     r"deployable model.*make ptq_int8 the last step"),
    ("[fp16,qat_int8]", r"steps\.1 \(qat_int8\) cannot follow: steps\.0 \(fp16\)"),
    ("[nonuniform_quant,structured_pruning]", r"steps\.1 \(structured_pruning\).*weight sharing is final"),
    ("[magnitude_pruning,lottery_ticket]", r"steps\.1 \(lottery_ticket\).*lottery_ticket must be the first step"),
    ("[magnitude_pruning,nosuch]", r"steps\.1: steps\.1\.name: unknown method 'nosuch'"),
    ("[{name:magnitude_pruning,sparsityy:0.5}]", r"steps\.0.*sparsityy"),
])
def test_impossible_chains_are_refused_naming_the_steps(make_cfg, steps, message):
    with pytest.raises(ConfigError, match=message):
        _steps(make_cfg, f"steps={steps}")


def test_method_and_steps_together_are_refused(make_cfg):
    with pytest.raises(ConfigError, match="either \\+method=NAME .* or steps"):
        _steps(make_cfg, "+method=fp16", "steps=[ptq_int8]")


def test_a_chain_runs_each_step_on_the_previous_output_with_a_child_run_per_step(make_cfg):
    from mlflow.tracking import MlflowClient

    from edgebench import pipeline

    cfg = make_cfg("data=digits", "trainer.max_epochs=3", "trainer.batch_size=32", "measure.latency=false",
                   "steps=[{name:magnitude_pruning,sparsity:0.8,retrain_epochs:1},qat_int8]")
    res = pipeline.run(cfg)
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    run = client.get_run(res.run_id)
    assert run.data.tags["method"] == run.data.tags["chain"] == "magnitude_pruning->qat_int8"
    m = run.data.metrics
    assert m["size/sparsity"] == pytest.approx(0.8, abs=0.01), "QAT kept the zeros of the pruning step"
    assert run.data.tags["export.dtype"] == "int8" and m["method/sparsity"] == 0.8  # every step's knobs
    assert "method/bits" in m
    children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{res.run_id}'")
    assert len(children) == 1  # one per step before the last (the last step's figures are the run's own)
    step = children[0]
    assert step.data.tags["method"] == "magnitude_pruning" and step.data.tags["chain.step"] == "0"
    assert step.info.run_name == "step 0 magnitude_pruning"
    for key in ("test/acc", "size/bytes_artifact", "size/sparsity", "compute/macs_nonzero", "device/fits",
                "method/sparsity", "round/sparsity"):
        assert key in step.data.metrics, key
    assert step.data.tags["export.dtype"] == "fp32"  # the pruned float model, before int8
    # a group of its own: the same step of every replicate, never averaged with its parent
    assert step.data.tags["replicate_group"] == run.data.tags["replicate_group"] + " / step 0 magnitude_pruning"
    assert m["size/bytes_artifact"] < step.data.metrics["size/bytes_artifact"] / 3  # what the int8 step bought


def test_an_impossible_chain_is_refused_on_the_command_line_before_any_run(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    from tests import cli

    out = cli.run(["data=digits", "steps=[ptq_int8,magnitude_pruning]"], tmp_path, env=env, timeout=300)
    assert out.returncode == 2 and "steps.1 (magnitude_pruning) cannot follow: steps.0 (ptq_int8)" in out.stderr
    assert not (tmp_path / "results" / "mlflow.db").exists(), "refused before any MLflow store or run"


def test_a_finished_step_is_reused_by_another_chain(make_cfg):
    from mlflow.tracking import MlflowClient

    from edgebench import pipeline

    common = ["data=digits", "trainer.max_epochs=2", "trainer.batch_size=32", "measure.latency=false"]
    prune = "{name:magnitude_pruning,sparsity:0.7,retrain_epochs:1}"
    first = pipeline.run(make_cfg(*common, f"steps=[{prune},qat_int8]"))
    second = pipeline.run(make_cfg(*common, f"steps=[{prune},ptq_int8]"))
    other = pipeline.run(make_cfg(*common, "steps=[{name:magnitude_pruning,sparsity:0.6,retrain_epochs:1},ptq_int8]"))
    client = MlflowClient(make_cfg().paths.mlflow_tracking_uri)
    t1, t2, t3 = (client.get_run(r.run_id).data.tags for r in (first, second, other))
    assert t1["step.0.cache_hit"] == "false" and t1["step.1.cache_hit"] == "false"
    assert t2["step.0.cache_hit"] == "true", "the finished prune was reused"
    assert t2["step.0.key"] == t1["step.0.key"]
    assert t2["step.1.cache_hit"] == "false"  # ptq_int8 after it is new
    assert t3["step.0.cache_hit"] == "false"  # a different prune is a different entry
    assert second.metrics["size/sparsity"] == pytest.approx(first.metrics["size/sparsity"])
    logged = client.get_run(second.run_id).data.metrics
    assert logged["method/sparsity"] == 0.7  # the stored step's report is logged again
    step = client.search_runs([client.get_run(second.run_id).info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{second.run_id}'")[0]
    assert step.data.metrics["method/sparsity"] == 0.7 and "round/sparsity" in step.data.metrics


def test_a_step_asks_for_a_trained_model_of_another_config(make_cfg, monkeypatch):
    """A teacher: trained once in its own child run (its curves there, not in the run's curves), then stored."""
    from mlflow.tracking import MlflowClient

    from edgebench import pipeline
    from edgebench.methods.pruning import UnstructuredPruning

    got = []
    original = UnstructuredPruning.compress

    def compress(self, ctx):
        got.append(ctx.trained("lenet5", trainer={"max_epochs": 2}))
        return original(self, ctx)

    monkeypatch.setattr(UnstructuredPruning, "compress", compress)
    common = ["data=digits", "trainer.max_epochs=3", "trainer.batch_size=32", "measure.latency=false",
              "+method=magnitude_pruning", "method.retrain_epochs=1"]
    first = pipeline.run(make_cfg(*common))
    second = pipeline.run(make_cfg(*common, "method.sparsity=0.5"))
    assert type(got[0]).__name__ == type(got[1]).__name__ and not got[0].training
    assert all(p.shape[0] for p in got[0].parameters())
    client = MlflowClient(make_cfg().paths.mlflow_tracking_uri)
    exp = client.get_run(first.run_id).info.experiment_id
    for res, hit in ((first, "false"), (second, "true")):
        kids = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{res.run_id}' and tags.`edgebench.role` = 'trained'")
        assert len(kids) == 1 and kids[0].data.tags["model"] == "lenet5"
        assert kids[0].info.run_name == "teacher lenet5"
        assert kids[0].data.tags["baseline.cache_hit"] == hit  # trained once, then from the store
        assert [m.step for m in client.get_metric_history(kids[0].info.run_id, "val/acc")] == [0, 1]  # its curves
        assert kids[0].data.metrics["test/acc"] > 0.5 and kids[0].data.metrics["compute/macs"] > 0
    # the student's run keeps its own dense baseline's curves only (3 epochs), none of the teacher's 2
    assert [m.step for m in client.get_metric_history(first.run_id, "baseline/val/acc")] == [0, 1, 2]


def test_a_second_device_of_the_same_format_reuses_the_deployed_file_and_its_accuracy(make_cfg):
    """Two microcontrollers that load TFLite Micro: the int8 file is converted, its arena measured and its accuracy
    evaluated once (the store's deployments), while each device gets its own fit and estimate."""
    from mlflow.tracking import MlflowClient

    from edgebench import pipeline

    common = ["data=digits", "model=lenet5", "trainer.max_epochs=1", "measure.latency=false", "export=device",
              "steps=[ptq_int8]"]
    first = pipeline.run(make_cfg(*common, "device=arduino_nano_33_ble_sense"))
    second = pipeline.run(make_cfg(*common, "device=stm32l4"))
    client = MlflowClient(make_cfg().paths.mlflow_tracking_uri)
    t1, t2 = (client.get_run(r.run_id).data.tags for r in (first, second))
    assert (t1["export.cache_hit"], t2["export.cache_hit"]) == ("false", "true")
    for k in ("test/acc", "select/val_acc", "select/val_loss", "size/bytes_artifact", "device/ram_bytes"):
        assert second.metrics[k] == first.metrics[k], k  # the same file: the same bytes, arena and accuracy
    assert second.metrics["device/latency_ms_est"] != first.metrics["device/latency_ms_est"]  # M4 vs L4R5: its own
    assert t2["device"] == "stm32l4" and t1["device"] == "arduino_nano_33_ble_sense"
    assert second.deployable and Path(second.deployable).read_bytes() == Path(first.deployable).read_bytes()
    third = pipeline.run(make_cfg(*common, "device=raspberry_pi_4"))  # another format: its own file
    assert client.get_run(third.run_id).data.tags["export.cache_hit"] == "false"
