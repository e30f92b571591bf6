"""Runs that can be told apart, and params and metrics that say what they are (issue 25, items 3 and 5).

Names: what tells runs apart first, within the ~20 characters the MLflow UI's runs table shows; children named by
what they are; the full description in a tag. Metrics: each curve under the model it belongs to, no machine paths
among the params, the data's real shape, and the same metric names for a chain's steps as for a single run."""

from __future__ import annotations

import re
import shutil

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient
from omegaconf import open_dict

from edgebench import pipeline, record
from edgebench.config import config_dir, validate

FAST = ["data=digits", "trainer.max_epochs=1", "trainer.batch_size=32", "measure.latency=false",
        "trainer.progress_bar=none"]
PRUNE = ["+method=magnitude_pruning", "method.sparsity=0.8", "method.retrain_epochs=1"]
CHAIN = "steps=[{name:magnitude_pruning,sparsity:0.8,retrain_epochs:1},ptq_int8]"
SHOWN = 20  # characters of a name the MLflow UI's runs table shows


def _compose(root, template, *overrides):
    """The config ``python -m edgebench OVERRIDES`` runs, with Hydra's runtime (its overrides) set, under ``root``."""
    GlobalHydra.instance().clear()
    db = root / "results" / "mlflow.db"
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(template, db)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("edgebench", overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(root / "out")
        cfg.paths.mlflow_tracking_uri = f"sqlite:///{db}"
        del cfg["hydra"]
    return cfg


def _name(cfg, job=None) -> str:
    return record.run_name(validate(cfg), record.choices(pipeline.plain_config(cfg)), job)[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mlflow_template_db):
    """A pruned run (it trains the dense baseline), a dense run and a prune -> int8 chain (both from the store)."""
    root = tmp_path_factory.mktemp("names")
    out = {}
    for key, overrides in (("prune", PRUNE), ("dense", []), ("chain", [CHAIN])):
        cfg = _compose(root, mlflow_template_db, *FAST, *overrides)
        out[key] = pipeline.run(cfg).run_id
    GlobalHydra.instance().clear()
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    return client, {k: client.get_run(v) for k, v in out.items()}


def test_runs_that_differ_only_in_export_differ_in_the_shown_part_of_their_name(tmp_path, mlflow_template_db):
    plain = _name(_compose(tmp_path, mlflow_template_db, *FAST, "+method=ptq_int8", "model=lenet5"))
    tflite = _name(_compose(tmp_path, mlflow_template_db, *FAST, "+method=ptq_int8", "model=lenet5",
                            "export=tflite_int8"))
    assert plain[:SHOWN] != tflite[:SHOWN], (plain, tflite)
    assert tflite.startswith("ptq_int8 tflite_int8 · lenet5"), tflite
    GlobalHydra.instance().clear()


def test_a_sweep_over_sparsity_shows_the_value_first(tmp_path, mlflow_template_db):
    job = {"swept_keys": ["method.sparsity"]}
    names = [_name(_compose(tmp_path, mlflow_template_db, *FAST, "+method=magnitude_pruning", f"method.sparsity={s}"),
                   job) for s in (0.5, 0.8)]
    assert names[0].startswith("s=0.5 magnitude") and names[1].startswith("s=0.8 magnitude"), names
    assert names[0][:SHOWN] != names[1][:SHOWN]
    # a swept model is shown first too, and not again after the dot
    name = _name(_compose(tmp_path, mlflow_template_db, *FAST, "model=lenet5"), {"swept_keys": ["model"]})
    assert name == "lenet5 dense · digits host", name
    GlobalHydra.instance().clear()


def test_names_put_the_method_values_first_and_keep_the_full_description_in_a_tag(runs):
    _, r = runs
    prune = r["prune"]
    assert prune.info.run_name == "s=0.8 ep=1 magnitude · lenet_300_100 digits host", prune.info.run_name
    assert r["dense"].info.run_name == "dense · lenet_300_100 digits host"
    description = prune.data.tags["edgebench.description"]
    for part in ("method=magnitude_pruning", "model=lenet_300_100", "data=digits", "device=host", "export=auto",
                 "method.sparsity=0.8", "method.retrain_epochs=1", "trainer.max_epochs=1"):
        assert part in description.split(), (part, description)


def test_a_chain_step_is_named_by_what_it_is_without_the_parent_prefix(runs):
    client, r = runs
    chain = r["chain"]
    assert chain.info.run_name.startswith("s=0.8 magnitude->ptq_int8 · "), chain.info.run_name
    kids = client.search_runs([chain.info.experiment_id], f"tags.`mlflow.parentRunId` = '{chain.info.run_id}'")
    assert [k.info.run_name for k in kids] == ["step 0 magnitude_pruning"]
    assert kids[0].data.tags["chain.step"] == "0"
    assert "edgebench.description" not in kids[0].data.tags  # the parent's description is the parent's


def test_a_compressed_run_logs_the_baseline_curves_as_the_baseline_s(runs):
    client, r = runs
    for key in ("prune", "chain"):  # trained here (prune), and read back from the store (chain)
        run = r[key]
        m = run.data.metrics
        assert "val/acc" not in m and "val/loss" not in m and "train/loss" not in m, key
        assert [p.step for p in client.get_metric_history(run.info.run_id, "baseline/val/acc")] == [0], key
        assert "baseline/train/loss" in m and "baseline/val/loss" in m
    dense = r["dense"].data.metrics  # a dense run's curves are its own
    assert "val/acc" in dense and "baseline/val/acc" not in dense
    assert dense["val/acc"] == r["prune"].data.metrics["baseline/val/acc"]  # the same model's curve


def test_params_hold_no_machine_paths_and_the_data_s_real_shape(runs):
    _, r = runs
    for run in r.values():
        params = run.data.params
        assert not [k for k in params if k.startswith("paths.")], sorted(params)
        assert params["data.input_shape"] == "1x8x8"
        assert "data.image_size" not in params and "data.channels" not in params  # 32 and 3: not the digits' shape


def test_a_chain_logs_the_metric_names_a_single_run_logs(runs):
    client, r = runs
    single, chain = r["prune"], r["chain"]
    step = client.search_runs([chain.info.experiment_id], f"tags.`mlflow.parentRunId` = '{chain.info.run_id}'")[0]
    numbered = re.compile(r"(^|/)\d+\.")
    for run in (chain, step):
        assert not [k for k in run.data.metrics if numbered.search(k)], sorted(run.data.metrics)
    # the pruning step's report (knobs, rounds) on its child run, under the single run's names
    pruning = {k for k in single.data.metrics if k.startswith(("round/", "method/"))}
    assert pruning and pruning <= set(step.data.metrics), pruning - set(step.data.metrics)
    assert step.data.metrics["method/sparsity"] == single.data.metrics["method/sparsity"] == 0.8
    assert [p.step for p in client.get_metric_history(step.info.run_id, "round/sparsity")] == \
        [p.step for p in client.get_metric_history(single.info.run_id, "round/sparsity")]
    # the chain's run: its final figures and every step's knobs, unprefixed
    for key in ("test/acc", "size/sparsity", "select/val_acc", "method/sparsity"):
        assert key in chain.data.metrics, key
    assert chain.data.tags["export.dtype"] == "int8"


def test_a_sweep_s_parent_is_named_by_what_it_varies():
    from edgebench import naming

    overrides = ["data=digits", "+method=magnitude_pruning,random_pruning", "method.sparsity=0.5,0.8,0.9"]
    name = naming.sweep_name(overrides, ["+method", "method.sparsity"], "sw-0123456789")
    assert name == "magnitude,random s=0.5,0.8,0.9 · sweep sw-0123456789", name
    assert naming.sweep_name(["+sweep=leaderboard"], ["model"], "sw-1") == "leaderboard · sweep sw-1"


@pytest.mark.parametrize("overrides, start", [
    (["+method=structured_pruning"], "r=0.5 structured · "),
    (["+method=uniform_quant", "method.bits=3"], "b=3 uniform_quant · "),
    (["+method=low_rank"], "e=0.9 ep=1 low_rank · "),
    (["+method=low_rank", "method.ratio=0.3"], "r=0.3 ep=1 low_rank · "),  # the budget replaces the energy
    (["+chain=prune_int8"], "r=0.5 prune_int8 · "),
    (["+pipeline=prune_int8"], "r=0.5 prune_int8 · "),  # the old name of the chain group
])
def test_each_method_s_key_knob_is_named_first_even_at_its_default(tmp_path, mlflow_template_db, overrides, start):
    extra = ["method.retrain_epochs=1"] if "+method=low_rank" in overrides else []
    name = _name(_compose(tmp_path, mlflow_template_db, *FAST, *overrides, *extra))
    GlobalHydra.instance().clear()
    assert name.startswith(start), name
