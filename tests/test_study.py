"""Studies (edgebench.study): the config's checks, a smoke study end to end through Hydra's multirun into a tmp MLflow
store, resume after an interruption, and --report-only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from edgebench import study as st

# the study the end-to-end tests run: 2 arms x 2 seeds on digits, one epoch, no latency (seconds a run)
TINY = {
    "name": "tiny",
    "title": "Tiny study",
    "question": "does 50% magnitude pruning change test accuracy?",
    "base": ["model=lenet_300_100", "data=digits", "trainer.max_epochs=1", "measure.latency=false"],
    "arms": {"dense": [], "pruned": ["steps=[{name:magnitude_pruning,sparsity:0.5,rounds:1,retrain_epochs:1}]"]},
    "reference": "dense",
    "budgets": {"full": {"seeds": [0, 1, 2]}, "smoke": {"seeds": [0, 1]}},
    "metrics": ["test/acc", "size/bytes_smallest", "size/sparsity"],
    "comparisons": [
        {"arm": "pruned", "metric": "test/acc", "rule": "at_least", "threshold": -0.5, "source": "a test's bound"},
        {"arm": "pruned", "metric": "size/bytes_smallest", "rule": "at_most", "threshold": 0, "source": "a test"},
    ],
    "plots": [{"x": "size/bytes_smallest", "y": "test/acc"}],
}


def parse(**changes):
    raw = json.loads(json.dumps(TINY))
    for k, v in changes.items():
        if v is None:
            raw.pop(k)
        else:
            raw[k] = v
    return st.parse(raw)


def test_the_shipped_studies_parse_and_compose():
    """Every conf/study/*.yaml parses; pipelines' arms compose and validate at both budgets."""
    assert "pipelines" in st.names()
    for name in st.names():
        s = st.load(name)
        assert s.reference in s.arms and "full" in s.budgets
    s = st.load("pipelines")
    arms = st.check(s, "smoke", Path("."))
    assert arms["magnitude_pruning -> ptq_int8"]["chain"] == ["magnitude_pruning", "ptq_int8"]
    assert {a["data"] for a in arms.values()} == {"digits"}
    assert {a["data"] for a in st.check(s, "full", Path(".")).values()} == {"fashion_mnist"}


@pytest.mark.slow  # composes every arm of three studies at their full budget (about 30 s)
def test_the_long_studies_keep_their_old_scripts_budgets():
    """distillation, low_rank and attention compose at both budgets with the settings of the scripts they port: one
    shared ResNet-20 teacher, per-model budgets, the 60x60 canvas; their smoke budgets run on digits."""
    from edgebench import methods, pipeline
    from edgebench.config import validate

    def spec(s, arm, budget="full"):
        return validate(pipeline.compose(st.run_overrides(s, arm, budget) + ["seed=1"], Path(".")))

    d = st.load("distillation")
    assert {a["data"] for a in st.check(d, "smoke", Path(".")).values()} == {"digits"}
    teachers = set()
    for arm in d.arms:
        x = spec(d, arm)
        assert (x.trainer.max_epochs, x.trainer.limit_train_batches) == (2, 0.1)
        step = methods.parse_steps(x.method, x.steps)
        if x.method is not None:
            t = step[0].teacher
            teachers.add((t.model, t.seed, tuple(sorted(t.trainer.items()))))
            assert step[0].epochs == 2
    assert teachers == {("resnet20", 0, (("limit_train_batches", 1.0), ("lr", None), ("max_epochs", 2)))}
    assert len(d.comparisons) == 10

    lr = st.load("low_rank")
    budget = {"lenet_300_100": (3, 1.0, 2), "conv4": (2, 0.5, 1), "resnet20": (2, 0.15, 1)}
    for arm in lr.arms:
        x = spec(lr, arm)
        epochs, limit, retrain = budget[x.model.name.value]
        assert (x.trainer.max_epochs, x.trainer.limit_train_batches) == (epochs, limit)
        if x.method is not None:
            assert methods.parse_steps(x.method, x.steps)[0].retrain_epochs == retrain
    assert {a["data"] for a in st.check(lr, "smoke", Path(".")).values()} == {"digits"}

    at = st.load("attention")
    for arm in at.arms:
        x = spec(at, arm)
        assert x.data.canvas == 60 and x.trainer.max_epochs == (6 if x.model.name.value == "ram" else 2)
        assert spec(at, arm, "smoke").data.base == "digits"


@pytest.mark.parametrize("changes, message", [
    ({"comparisons": [{"arm": "prunned", "metric": "test/acc"}]}, "comparisons[0].arm: 'prunned' is not an arm"),
    ({"comparisons": [{"arm": "pruned", "against": "nope", "metric": "test/acc"}]}, "'nope' is not an arm"),
    ({"comparisons": [{"arm": "pruned", "metric": "test/acc", "rule": "at_least", "threshold": -0.01}]},
     "a threshold needs its source"),
    ({"comparisons": [{"arm": "pruned", "metric": "test/acc", "threshold": -0.01, "source": "x"}]},
     "a threshold needs its rule"),
    ({"comparisons": [{"arm": "pruned", "metric": "test/acc", "rule": "about", "threshold": 0, "source": "x"}]},
     "unknown rule 'about'"),
    ({"comparisons": [{"arm": "pruned", "metric": "val/acc"}]}, "'val/acc' is not one of the study's metrics"),
    ({"reference": "base"}, "reference: 'base' is not an arm"),
    ({"budgets": {"smoke": {"seeds": [0]}}}, "needs a 'full' budget"),
    ({"budgets": {"full": {"seeds": [0, 0]}}}, "must be a list of distinct integers"),
    ({"arms": {"dense": ["seed=3"]}}, "is set by the study runner"),
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"devices": ["arduino"]}, "devices: 'arduino' is not a device profile"),
    ({"devices": ["stm32l4"]}, "a study over devices writes its tables in its extra hook"),
    ({"budgets": {"full": {"seeds": [0], "devices": ["stm32l4"]}}}, "a budget names devices but the study has no"),
    ({"metrics": None}, "missing key 'metrics'"),
    ({"budgets": {"full": {"seeds": [0, 1, 2], "more_seeds": {"prunned": [3, 4]}}}},
     "more_seeds: names no arm of the study: 'prunned'"),
    ({"budgets": {"full": {"seeds": [0, 1, 2], "more_seeds": {"pruned": [2, 3]}}}},
     "must be distinct integers not among the budget's seeds"),
    ({"budgets": {"full": {"seeds": [0, 1, 2], "arm_overrides": {"prunned*": ["trainer.max_epochs=3"]}}}},
     "arm_overrides: 'prunned*' matches no arm of the study"),
    ({"comparisons": [{"arm": {"best_of": ["pruned", "dense"], "by": "test/acc"}, "metric": "test/acc"}]},
     "arm.by: 'test/acc' would pick on the test split"),
    ({"comparisons": [{"arm": {"best_of": ["pruned"], "by": "select/val_acc"}, "metric": "test/acc"}]},
     "best_of: must list two or more arms"),
    ({"comparisons": [{"arm": {"best_of": ["pruned", "prunned"], "by": "select/val_acc"}, "metric": "test/acc"}]},
     "best_of: 'prunned' is not an arm"),
    ({"comparisons": [{"arm": {"best_of": ["pruned", "dense"], "by": "select/val_acc"}, "metric": "test/acc"}]},
     "'select/val_acc' is not one of the study's metrics"),
])
def test_bad_study_configs_fail_with_one_line_naming_the_fix(changes, message):
    with pytest.raises(st.StudyError) as e:
        parse(**changes)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert ";" in str(e.value)  # the problem, then the fix


def test_unknown_budget_and_study_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert st.main(["pipelines", "--budget", "huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "edgebench.study: error: study pipelines: unknown budget 'huge'; use --budget full or smoke"
    assert st.main(["no_such_study"]) == 2
    assert "no study 'no_such_study': studies are " in capsys.readouterr().err
    assert st.main(["leaderbord"]) == 2  # a typo: the nearest name
    assert "no study 'leaderbord': did you mean leaderboard? studies are " in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_bad_arm_override_fails_the_study_before_any_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, "arms": {"dense": [], "pruned": ["steps=[{name:magnitude_prunin}]"]}}))
    assert st.main([str(path), "--budget", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "arm 'pruned'" in err and "magnitude_prunin" in err
    assert not (tmp_path / "results" / "studies").exists()  # nothing was launched


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The tiny study at its smoke budget, run once through the CLI in a tmp folder (its own MLflow store)."""
    root = tmp_path_factory.mktemp("study")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        code = st.main([str(path), "--budget", "smoke", "--out", str(root / "out")])
    return root, path, code


def test_a_smoke_study_runs_every_arm_and_seed_and_writes_a_paired_comparison(ran):
    root, path, code = ran
    assert code == 0
    md = (root / "out" / "tiny.md").read_text()
    doc = json.loads((root / "out" / "tiny.json").read_text())
    assert doc["budget"] == "smoke" and doc["seeds"] == [0, 1] and doc["experiment"] == "study-tiny-smoke"
    assert set(doc["run_ids"]) == {"dense", "pruned"} and all(set(r) == {"0", "1"} for r in doc["run_ids"].values())
    acc = doc["values"]
    # the paired difference is the mean of the per-seed differences of the runs' own test accuracies
    diffs = [acc["pruned"]["test/acc"][s] - acc["dense"]["test/acc"][s] for s in ("0", "1")]
    first = doc["comparisons"][0]
    assert first["diffs"] == pytest.approx(diffs) and first["mean"] == pytest.approx(sum(diffs) / 2)
    assert first["n"] == 2 and first["seeds"] == [0, 1]
    size = doc["comparisons"][1]
    assert size["high"] < 0 and size["passed"] is True and size["verdict"] == "lower"  # 50% zeros: smaller encoding
    assert all(v == pytest.approx(0.5, abs=0.01) for v in acc["pruned"]["size/sparsity"].values())
    assert "budget **smoke**: seeds 0, 1; model lenet_300_100; data digits; trainer.max_epochs 1" in md
    assert "Holm's adjusted p over the 2 comparisons" in md and "| pruned - dense | test/acc |" in md
    assert "python -m edgebench.study tiny --budget smoke" in md and "run wall time" in md
    assert (root / "out" / "tiny_test_acc_vs_size_bytes_smallest.png").stat().st_size > 0
    assert "cpu_flags" not in doc  # no latency metric, no CPU line


def test_runs_carry_the_study_tags_in_their_own_experiment(ran):
    from mlflow.tracking import MlflowClient

    root, _, _ = ran
    client = MlflowClient(f"sqlite:///{root / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("study-tiny-smoke")
    runs = [r for r in client.search_runs([exp.experiment_id]) if "study.arm" in r.data.tags
            and r.data.tags.get("edgebench.child") != "true"]
    assert sorted((r.data.tags["study.arm"], r.data.params["seed"]) for r in runs) == [
        ("dense", "0"), ("dense", "1"), ("pruned", "0"), ("pruned", "1")]
    assert {(r.data.tags["study"], r.data.tags["study.budget"]) for r in runs} == {("tiny", "smoke")}
    assert client.get_experiment_by_name("study-tiny") is None  # the smoke budget never lands in the full one


def test_a_rerun_skips_finished_runs_and_an_interrupted_study_continues(ran, capsys):
    from mlflow.tracking import MlflowClient

    root, path, _ = ran
    client = MlflowClient(f"sqlite:///{root / 'results' / 'mlflow.db'}")
    doc = json.loads((root / "out" / "tiny.json").read_text())
    killed = doc["run_ids"]["pruned"]["1"]
    client.set_terminated(killed, "KILLED")  # as an interrupt leaves it
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert st.main([str(path), "--budget", "smoke", "--out", str(root / "out2")]) == 0
    out = capsys.readouterr().out
    assert "4 runs (2 arms x 2 seeds), 3 finished before, 1 to run" in out
    assert "'pruned': seeds 1" in out and "'dense': seeds" not in out
    again = json.loads((root / "out2" / "tiny.json").read_text())
    assert again["run_ids"]["pruned"]["1"] != killed
    assert {a: r for a, r in again["run_ids"].items() if a == "dense"} == {"dense": doc["run_ids"]["dense"]}
    with pytest.MonkeyPatch.context() as mp:  # everything finished: nothing launched
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert st.main([str(path), "--budget", "smoke", "--out", str(root / "out3")]) == 0
    assert "4 finished before, 0 to run" in capsys.readouterr().out


def test_report_only_rewrites_the_report_from_the_runs_without_running(ran, capsys):
    root, path, _ = ran
    before = {p.name for p in (root / "results" / "studies").iterdir()}
    logs = {p: p.stat().st_mtime for p in (root / "results" / "studies").iterdir()}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert st.main([str(path), "--budget", "smoke", "--report-only", "--out", str(root / "only")]) == 0
        assert "to run" not in capsys.readouterr().out
        doc = json.loads((root / "only" / "tiny.json").read_text())
        assert doc["invocation_wall_s"] is None and len(doc["comparisons"]) == 2
        assert {p: p.stat().st_mtime for p in (root / "results" / "studies").iterdir()} == logs  # nothing launched
        assert {p.name for p in (root / "results" / "studies").iterdir()} == before
        # a budget that never ran: a clear error, no empty report
        assert st.main([str(path), "--budget", "full", "--report-only", "--out", str(root / "none")]) == 2
    assert "no finished runs in MLflow experiment study-tiny" in capsys.readouterr().err
    assert not (root / "none").exists()


def test_each_arm_is_one_multirun_over_its_seeds_through_joblib_with_jobs():
    s = parse()
    one = st.command(s, "pruned", "smoke", [0, 1])
    assert one[1:4] == ["-m", "edgebench", "-m"] and one[-1] == "seed=0,1" and "hydra/launcher=joblib" not in one
    assert "experiment_name=study-tiny-smoke" in one and "resume=true" in one
    tags = next(o for o in one if o.startswith("++tags="))
    assert 'study:"tiny"' in tags and 'study.arm:"pruned"' in tags and 'study.budget:"smoke"' in tags
    assert f'study.spec:"{s.spec("pruned", "smoke")}"' in tags
    assert one.index("steps=[{name:magnitude_pruning,sparsity:0.5,rounds:1,retrain_epochs:1}]") < one.index(tags)
    par = st.command(s, "pruned", "full", [0, 1, 2], jobs=4)
    assert par[-2:] == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"]
    assert st.command(s, "pruned", "full", [2], jobs=4)[-1] == "seed=2"  # one seed: no launcher to start
    # the spec is the digest of the arm's overrides at the budget: an edited arm runs again
    assert s.spec("pruned", "full") != s.spec("dense", "full")
    edited = parse(arms={"dense": [], "pruned": ["steps=[{name:magnitude_pruning,sparsity:0.6}]"]})
    assert edited.spec("pruned", "full") != s.spec("pruned", "full") and edited.spec("dense", "full") == s.spec("dense", "full")
    pipelines = st.load("pipelines")
    assert pipelines.spec("dense", "smoke") != pipelines.spec("dense", "full")  # data=digits trainer.max_epochs=1


def test_with_ray_each_arm_is_one_multirun_of_ray_tasks_told_where_to_log(tmp_path, capsys, monkeypatch):
    s = parse()
    ray = {"address": "head:6379", "root": "/shared/eb", "tracking_uri": "http://head:5000"}
    cmd = st.command(s, "pruned", "full", [0, 1, 2], jobs=1, ray=ray)
    assert cmd[cmd.index("seed=0,1,2") + 1:] == [
        "hydra/launcher=ray", "+hydra.launcher.ray.init.address=head:6379",
        "+hydra.launcher.ray.init.object_store_memory=null", "paths.root_dir=/shared/eb",
        "paths.mlflow_tracking_uri=http://head:5000"]
    monkeypatch.chdir(tmp_path)
    assert st.main(["pipelines", "--ray", "--jobs", "2"]) == 2
    assert capsys.readouterr().err.strip() == ("edgebench.study: error: --jobs and --ray: Ray runs as many jobs at "
                                               "once as the cluster has CPUs; drop --jobs")
    monkeypatch.setattr(st.importlib.util, "find_spec", lambda name: None)  # no Hydra Ray launcher installed
    assert st.main(["pipelines", "--ray"]) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


DEVICE_STUDY = {"devices": ["arduino_nano_33_ble_sense", "raspberry_pi_4", "stm32l4"], "tables": [],
                "comparisons": [], "plots": [], "extra": "edgebench.report.leaderboard:study",
                "budgets": {"full": {"seeds": [0, 1]},
                            "smoke": {"seeds": [0], "devices": ["arduino_nano_33_ble_sense", "raspberry_pi_4"]}}}


def test_a_study_refuses_to_select_on_the_test_split(tmp_path):
    """What a run returns to a sweeper (objective) is validation accuracy or fit, never test accuracy: an arm asking
    for test is refused with one line before any run, naming the values it may take."""
    s = parse(arms={"dense": [], "pruned": ["objective=test_acc"]})
    with pytest.raises(st.StudyError) as e:
        st.check(s, "full", tmp_path)
    msg = str(e.value)
    assert "arm 'pruned'" in msg and "Invalid value 'test_acc', expected one of [val_acc, fits_device]" in msg
    assert "\n" not in msg


def test_arm_overrides_apply_to_the_arms_their_glob_matches_only():
    s = parse(budgets={"full": {"seeds": [0, 1, 2]},
                       "smoke": {"seeds": [0], "overrides": ["trainer.max_epochs=2"],
                                 "arm_overrides": {"prun*": ["trainer.max_epochs=8"]}}})
    assert s.overrides("pruned", "smoke")[-2:] == ["trainer.max_epochs=2", "trainer.max_epochs=8"]  # the last wins
    assert s.overrides("dense", "smoke")[-1] == "trainer.max_epochs=2"
    assert s.spec("pruned", "full") == parse().spec("pruned", "full")  # other budgets' runs unchanged


def test_more_seeds_run_and_count_for_the_arms_they_name_only(monkeypatch, tmp_path):
    """The leaderboard's rule (5 seeds for two candidates within an interval): a budget's more_seeds add seeds to the
    arms it names; the runner launches them for those arms only, and the report keeps them for those arms only."""
    import pandas as pd

    from edgebench.report import studies

    s = parse(budgets={"full": {"seeds": [0, 1, 2], "more_seeds": {"pruned": [3, 4]}}})
    assert s.seeds_of("pruned", "full") == (0, 1, 2, 3, 4) and s.seeds_of("dense", "full") == (0, 1, 2)
    assert s.spec("pruned", "full") == parse().spec("pruned", "full")  # the runs made before still count
    launched = []
    monkeypatch.setattr(st, "check", lambda *a, **k: {"dense": {"tracking_uri": "sqlite://"}})
    monkeypatch.setattr(st, "_done", lambda *a, **k: {(a, x) for a in ("dense", "pruned") for x in (0, 1, 2)})
    monkeypatch.setattr(st, "command", lambda study, arm, budget, seeds, *a, **k: launched.append((arm, seeds)) or
                        ["false"])
    lines = []
    st.launch(s, "full", tmp_path, echo=lines.append, log_dir=tmp_path)
    assert launched == [("pruned", [3, 4])]
    assert "8 arms" not in lines[0] and "2 arms x 3 seeds + 2 more seeds of named arms" in lines[0]
    assert "6 finished before, 2 to run" in lines[0]
    runs = pd.DataFrame([{"run_id": f"{a}{x}", "study.arm": a, "study.spec": s.spec(a, "full"), "seed": x,
                          "study.budget": "full",
                          "start_time": pd.Timestamp(0, tz="UTC"), "end_time": pd.Timestamp(1, tz="UTC")}
                         for a in ("dense", "pruned") for x in (0, 3)])
    monkeypatch.setattr(studies, "load_runs", lambda *a, **k: runs.copy())
    kept, left = studies.runs(s, "full", "sqlite://")
    assert sorted(kept["run_id"]) == ["dense0", "pruned0", "pruned3"]
    assert left == [("dense3", "seed 3 is not in budget full")]
    info = {a: {"model": "lenet_300_100", "data": "digits", "epochs": 1} for a in s.arms}
    studies.write(s, "full", kept.assign(**{"test/acc": 0.9}), left, info, tmp_path, echo=lambda *_: None)
    md = (tmp_path / "tiny.md").read_text()
    assert "seeds 0, 1, 2 (and 3, 4 for pruned);" in md
    assert "**Missing runs** (no finished run): dense seeds 1, 2; pruned seeds 1, 2, 4." in md
    # a checkout whose MLflow experiment exists but holds no finished run yet (a study under way) reads its ledger
    studies.write_ledger(s, kept, tmp_path / "tiny.runs.csv")
    monkeypatch.setattr(studies, "load_runs", lambda *a, **k: pd.DataFrame(columns=["run_id", "start_time",
                                                                                   "end_time", "study.arm"]))
    again, _ = studies.runs(s, "full", "sqlite://", tmp_path / "tiny.runs.csv")
    assert sorted(again["run_id"]) == ["dense0", "pruned0", "pruned3"]
    assert (again["end_time"] - again["start_time"]).dt.total_seconds().notna().all()


def test_arms_and_seeds_run_a_chunk_and_refuse_what_the_study_does_not_have(monkeypatch, tmp_path, capsys):
    """``--arms 'resnet8 *'``: a sitting runs the arms whose parents it trains, in the study's order; ``--seeds 0 1``
    runs every arm's seeds 0 and 1, so arms that share a seed's parent finish paired."""
    s = parse()
    assert st.select_arms(s, None) == ["dense", "pruned"] and st.select_arms(s, ["pr*"]) == ["pruned"]
    launched = []
    monkeypatch.setattr(st, "check", lambda *a, **k: {"dense": {"tracking_uri": "sqlite://"}})
    monkeypatch.setattr(st, "_done", lambda *a, **k: {("pruned", 0)})
    monkeypatch.setattr(st, "command", lambda study, arm, budget, seeds, *a, **k: launched.append((arm, seeds)) or
                        ["false"])
    lines = []
    st.launch(s, "full", tmp_path, echo=lines.append, log_dir=tmp_path, only=["pr*"])
    assert launched == [("pruned", [1, 2])]
    assert "1 finished before, 2 to run (3 more that --arms / --seeds leave out)" in lines[0]
    launched.clear()
    st.launch(s, "full", tmp_path, echo=lambda *_: None, log_dir=tmp_path, only_seeds=[1])  # a chunk: seed 1 of each
    assert launched == [("dense", [1]), ("pruned", [1])]
    # a chunk logs to a file of its own, beside the whole arm's: two processes on one arm keep both logs
    assert {p.name for p in tmp_path.glob("*.log")} >= {"tiny-full-pruned.log", "tiny-full-dense-seeds-1.log",
                                                        "tiny-full-pruned-seeds-1.log"}
    with pytest.raises(st.StudyError, match="--seeds 7 not in the budget's seeds 0 1 2; pick from those"):
        st.launch(s, "full", tmp_path, echo=lambda *_: None, log_dir=tmp_path, only_seeds=[1, 7])
    monkeypatch.chdir(tmp_path)
    assert st.main(["leaderboard", "--arms", "resnet8 *", "resnet 8*"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--arms 'resnet 8*' matches no arm" in err and "'resnet8 dense'" in err


def test_a_study_over_devices_runs_each_arm_and_seed_on_its_budgets_devices(monkeypatch):
    s = parse(**DEVICE_STUDY)
    assert s.devices_at("full") == DEVICE_STUDY["devices"]
    assert s.devices_at("smoke") == ["arduino_nano_33_ble_sense", "raspberry_pi_4"]
    # seed last: Hydra varies it fastest, so jobs side by side train different seeds' parents at once
    assert st.command(s, "pruned", "smoke", [0, 1])[-2:] == ["device=arduino_nano_33_ble_sense,raspberry_pi_4",
                                                              "seed=0,1"]
    with pytest.raises(st.StudyError, match="sets device= although the study has devices"):
        parse(**DEVICE_STUDY, base=TINY["base"] + ["device=host"])
    with pytest.raises(st.StudyError, match="'host' is not one of the study's devices"):
        parse(**{**DEVICE_STUDY, "budgets": {"full": {"seeds": [0], "devices": ["host"]}}})
    # an arm and seed is done only when it finished on every device of the budget
    import pandas as pd

    runs = pd.DataFrame([{"study.arm": "dense", "seed": 0, "device": d} for d in DEVICE_STUDY["devices"]]
                        + [{"study.arm": "pruned", "seed": 0, "device": "raspberry_pi_4"}])
    monkeypatch.setattr(st, "load_runs", lambda study, budget, uri, ledger=None: (runs, []))
    assert st._done(s, "full", "uri") == {("dense", 0)}
    assert st._done(s, "smoke", "uri") == {("dense", 0)}


def test_the_leaderboard_study_names_every_family_on_four_nets_and_every_device():
    from edgebench.report.leaderboard import device_profiles, family

    s = st.load("leaderboard")
    assert set(s.devices) == set(device_profiles())
    chains = {a: next((o.split("=", 1)[1] for o in ovr if o.startswith("steps=")), "none") for a, ovr in s.arms.items()}
    nets = {a.split(" ")[0] for a in s.arms}
    assert nets == {"lenet_300_100", "lenet5", "resnet8", "mobilenet_v2"}
    import re

    from edgebench.config import config_dir

    steps = {p.stem for p in (config_dir() / "method").glob("*.yaml")}
    every = {"dense", "int8 PTQ", "int8 QAT", "fp16 / bf16", "k-bit codes", "unstructured pruning",
             "Deep Compression", "structured pruning", "lottery ticket", "distillation", "low rank",
             "low rank + sparse", "chain"}
    for net in nets:  # the family each arm's chain falls in, by the leaderboard's own rule
        fams = {family("->".join(w for w in re.findall(r"[a-z_0-9]+", c) if w in steps) or "none")
                for a, c in chains.items() if a.startswith(net + " ")}
        # distillation students are the LeNets (ResNet-8 teaches them); the conv nets have every other family
        assert fams == (every if net.startswith("lenet") else every - {"distillation"}), (net, fams)
    teachers = {re.search(r"teacher:\{model:(\w+)", c).group(1) for c in chains.values() if "distillation" in c}
    assert teachers == {"resnet8"}


@pytest.mark.slow  # 8 digits runs (2 arms x 2 seeds x 2 devices), about 1.5 minutes
def test_a_study_over_devices_writes_the_leaderboard(tmp_path, monkeypatch, capsys):
    raw = {**TINY, "base": [*TINY["base"], "export=device"], "arms": {"dense": [], "int8": ["steps=[ptq_int8]"]},
           "metrics": ["test/acc"], "tables": [], "comparisons": [], "plots": [], "extra": "edgebench.report.leaderboard:study",
           "devices": ["arduino_nano_33_ble_sense", "raspberry_pi_4"], "budgets": {"full": {"seeds": [0, 1]}}}
    path = tmp_path / "tiny_devices.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert st.main([str(path)]) == 0
    md = (tmp_path / "results" / "tiny.md").read_text()
    assert "## arduino_nano_33_ble_sense" in md and "## raspberry_pi_4" in md
    assert "| int8 PTQ | best that fits | lenet_300_100 | ptq_int8 | 2 |" in md
    assert "(tflm_arena)" in md  # the microcontroller's RAM is TFLite Micro's measured arena
    import pandas as pd

    board = pd.read_csv(tmp_path / "results" / "tiny.csv")
    assert {"test_acc_seed0", "test_acc_seed1"} <= set(board.columns)
    assert set(board["device"]) == {"arduino_nano_33_ble_sense", "raspberry_pi_4"}
    capsys.readouterr()
    assert st.main([str(path)]) == 0  # resumed: nothing runs again
    assert "8 runs (2 arms x 2 seeds x 2 devices), 8 finished before, 0 to run" in capsys.readouterr().out


@pytest.mark.slow  # 8 digits runs (the dense arm of each of the board's 4 nets x 2 seeds), a few minutes
def test_every_net_of_the_leaderboard_learns_at_its_smoke_budget(tmp_path, monkeypatch):
    """The README's first command (`leaderboard --budget smoke`) is 300 runs, too long for a test; its dense parents
    are what fails first when a net cannot learn digits in the smoke budget's epochs (MobileNet v2 did not in 2): each
    net's dense arm at the smoke budget, on one device, must finish."""
    raw = yaml.safe_load((Path(__file__).parents[1] / "conf" / "study" / "leaderboard.yaml").read_text())
    raw["name"], raw["ledger"] = "leaderboard_nets", False
    raw["arms"] = {k: v for k, v in raw["arms"].items() if k.endswith(" dense")}
    assert len(raw["arms"]) == 4
    raw["budgets"]["smoke"]["devices"] = ["raspberry_pi_4"]
    raw["budgets"]["smoke"]["arm_overrides"] = {g: o for g, o in (raw["budgets"]["smoke"].get("arm_overrides") or {}).items()
                                                if any(__import__("fnmatch").fnmatchcase(a, g) for a in raw["arms"])}
    path = tmp_path / "leaderboard_nets.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert st.main([str(path), "--budget", "smoke", "--jobs", "2"]) == 0


@pytest.mark.slow  # 10 digits runs and a study in a second process, about 2 minutes
def test_a_study_with_a_ledger_resumes_and_reports_in_a_checkout_without_its_mlflow_store(tmp_path, monkeypatch,
                                                                                           capsys):
    """ledger: true keeps the finished runs' figures in results/NAME.runs.csv (committed with the report): a fresh
    checkout (no MLflow store, no model store) counts them as finished, runs only what is missing and writes the
    same board from them."""
    import shutil

    import pandas as pd

    raw = {**TINY, "base": [*TINY["base"], "export=device"], "arms": {"dense": [], "int8": ["steps=[ptq_int8]"]},
           "metrics": ["test/acc"], "tables": [], "comparisons": [], "plots": [], "extra": "edgebench.report.leaderboard:study",
           "devices": ["arduino_nano_33_ble_sense", "raspberry_pi_4"], "budgets": {"full": {"seeds": [0, 1]}},
           "ledger": True}
    first, fresh = tmp_path / "first", tmp_path / "fresh"
    first.mkdir()
    path = first / "tiny_ledger.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(first)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert st.main([str(path)]) == 0
    results = first / "results"
    ledger = pd.read_csv(results / "tiny.runs.csv")
    assert len(ledger) == 8 and set(ledger["study.arm"]) == {"dense", "int8"}
    assert {"run_id", "study.spec", "seed", "device", "test/acc", "select/val_acc", "device/ram_bytes"} <= set(ledger)
    assert not any(c.startswith(("edgebench.host", "edgebench.pid")) for c in ledger)  # nothing of the machine
    board = pd.read_csv(results / "tiny.csv")
    # a fresh checkout elsewhere: the study and its committed ledger, no MLflow store, no model store
    results = fresh / "results"
    results.mkdir(parents=True)
    shutil.copy(first / "results" / "tiny.runs.csv", results)
    path = Path(shutil.copy(path, fresh))
    # one run (int8, seed 1, on the Pi) is not in the ledger: that arm and seed runs again, nothing else
    led = pd.read_csv(results / "tiny.runs.csv")
    gone = (led["study.arm"] == "int8") & (led["seed"] == 1) & (led["device"] == "raspberry_pi_4")
    led[~gone].to_csv(results / "tiny.runs.csv", index=False)
    def study_there() -> str:  # its own process, as in a new checkout (this one has resolved its paths already)
        import subprocess
        import sys

        done = subprocess.run([sys.executable, "-m", "edgebench.study", str(path)], cwd=fresh, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    out = study_there()
    assert "8 runs (2 arms x 2 seeds x 2 devices), 6 finished before, 2 to run" in out
    assert f"MLflow experiment study-tiny in sqlite:///{results / 'mlflow.db'}" in out
    assert "'int8': seeds 1" in out and "'dense': seeds" not in out
    again = pd.read_csv(results / "tiny.runs.csv")
    assert len(again) == 8  # the six it kept and the two that ran (the old Arduino run of seed 1 was replaced)
    md = (results / "tiny.md").read_text()
    assert "(6 of them read from `tiny.runs.csv`, the study's ledger" in md
    new = pd.read_csv(results / "tiny.csv")
    cols = ["device", "family", "model", "test_acc_seed0"]
    pd.testing.assert_frame_equal(new[cols], board[cols])  # seed 0 came from the ledger alone: the same board
    assert "8 finished before, 0 to run" in study_there()


def test_the_extra_hook_adds_its_table_to_the_report(ran, monkeypatch):
    """``extra: module:function`` gets the loaded runs and the values; its markdown and JSON go into the report."""
    root, path, _ = ran
    (root / "tiny_extra.py").write_text(
        "def figures(study, runs, values):\n"
        "    n = len(runs)\n"
        "    return {'markdown': f'## Extra\\n\\n{n} runs seen by the hook', 'json': {'runs': n,"
        " 'arms': sorted(values)}}\n")
    monkeypatch.syspath_prepend(str(root))
    hooked = root / "tiny_hooked.yaml"
    hooked.write_text(yaml.safe_dump({**TINY, "extra": "tiny_extra:figures"}))
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert st.main([str(hooked), "--budget", "smoke", "--report-only", "--out", str(root / "hooked")]) == 0
    assert "## Extra\n\n4 runs seen by the hook" in (root / "hooked" / "tiny.md").read_text()
    assert json.loads((root / "hooked" / "tiny.json").read_text())["extra"] == {"runs": 4, "arms": ["dense", "pruned"]}
    with pytest.raises(st.StudyError, match="extra: 'tiny_extra.figures' is not module:function"):
        parse(extra="tiny_extra.figures")


def test_the_loaded_runs_say_where_they_are_for_a_hook(ran):
    """A hook that needs more than the runs' final metrics (a step's child runs) finds their store in ``runs.attrs``."""
    root, path, _ = ran
    study = st.load(path)
    uri = f"sqlite:///{root / 'results' / 'mlflow.db'}"
    df, _ = st.load_runs(study, "smoke", uri)
    assert len(df) == 4 and df.attrs["tracking_uri"] == uri and df.attrs["experiment"] == "study-tiny-smoke"
def test_a_hook_with_a_context_parameter_gets_the_budget_and_the_reports_folder(ran, monkeypatch):
    """A hook that names ``context`` also gets the budget, the launch and report folders and the runs' store: a
    figure of its own (a PNG beside NAME.md) and the runs' stored models are reachable without guessing paths."""
    root, path, _ = ran
    (root / "tiny_context.py").write_text(
        "def figures(study, runs, values, context):\n"
        "    (context['out_dir'] / 'own.txt').parent.mkdir(parents=True, exist_ok=True)\n"
        "    (context['out_dir'] / 'own.txt').write_text(context['budget'])\n"
        "    return {'json': {k: str(v) for k, v in sorted(context.items())}}\n")
    monkeypatch.syspath_prepend(str(root))
    hooked = root / "tiny_context.yaml"
    hooked.write_text(yaml.safe_dump({**TINY, "extra": "tiny_context:figures"}))
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert st.main([str(hooked), "--budget", "smoke", "--report-only", "--out", str(root / "ctx")]) == 0
    got = json.loads((root / "ctx" / "tiny.json").read_text())["extra"]
    assert set(got) == {"budget", "root", "out_dir", "results_dir", "tracking_uri"}
    assert got["budget"] == "smoke" and got["out_dir"] == str(root / "ctx") and got["results_dir"] == "None"
    assert got["tracking_uri"].startswith("sqlite:") and (root / "ctx" / "own.txt").read_text() == "smoke"


def test_tags_are_part_of_a_runs_identity_only_when_given():
    """No tags: the config hash and replicate group a run had before ``tags`` existed (resume still finds it)."""
    from edgebench import pipeline
    from edgebench.sweep import config_hash, replicate_group

    plain = pipeline.plain_config(pipeline.compose(["data=digits"]))
    assert plain["tags"] == {}
    before = {k: v for k, v in plain.items() if k != "tags"}
    assert config_hash(plain, "d") == config_hash(before, "d")
    assert replicate_group(plain, "d") == replicate_group(before, "d")
    tagged = pipeline.plain_config(pipeline.compose(["data=digits", "++tags={study:x,study.arm:a}"]))
    assert tagged["tags"] == {"study": "x", "study.arm": "a"}
    assert config_hash(tagged, "d") != config_hash(plain, "d")


def test_a_one_sample_comparison_extra_args_and_the_derived_ratios():
    """``against: null`` compares an arm's own values with zero (a metric that is already a difference, such as
    delta/acc); ``extra_args`` reaches the hook through the study; the derived log bytes and arena error."""
    import math

    s = parse(comparisons=[{"arm": "pruned", "against": None, "metric": "test/acc", "rule": "at_least",
                            "threshold": 0.5, "source": "a test"},
                           {"arm": "pruned", "metric": "test/acc"}],
              extra="tiny_extra:figures", extra_args={"calls": 3, "checks": [{"threshold": 1.5, "source": "x"}]})
    assert s.comparisons[0].against is None and s.comparisons[0].label == "pruned (own values)"
    assert s.comparisons[1].against == "dense" and s.extra_args["calls"] == 3
    vals = {"dense": {m: {0: 0.5, 1: 0.6} for m in s.metrics}, "pruned": {m: {0: 0.8, 1: 0.9} for m in s.metrics}}
    own, against = st.compare(s, vals)
    assert own["paired"].n == 2 and own["paired"].mean == pytest.approx(0.85) and own["passed"] is False  # interval wide
    assert against["paired"].mean == pytest.approx(0.3)
    with pytest.raises(st.StudyError, match="extra_args: given without an extra"):
        parse(extra_args={"calls": 3})
    with pytest.raises(st.StudyError, match="extra_args: must be a mapping"):
        parse(extra="a:b", extra_args=[1])
    assert st.DERIVED["size/log_bytes_artifact"][1]({"size/bytes_artifact": 300}) - \
        st.DERIVED["size/log_bytes_artifact"][1]({"size/bytes_artifact": 1000}) == pytest.approx(math.log(0.3))
    assert st.DERIVED["memory/tflm_arena_est_error"][1]({"memory/tflm_arena_bytes_est": 115,
                                                        "memory/tflm_arena_bytes": 100}) == pytest.approx(0.15)


def test_a_declared_selection_picks_on_validation_and_compares_the_pick_on_test():
    """``arm: {best_of: [...], by: select/val_acc}``: the arm with the highest mean validation accuracy is compared
    (on test, paired by seed, in the file's Holm family), even when another arm of the group is better on test."""
    raw = json.loads(json.dumps(TINY))
    raw["arms"] |= {"kd T2": [], "kd T4": []}
    raw["metrics"] = ["test/acc", "select/val_acc", "select/val_loss"]
    raw["plots"] = []
    raw["comparisons"] = [{"arm": {"best_of": ["kd T2", "kd T4"], "by": "select/val_acc"}, "metric": "test/acc"},
                          {"arm": {"best_of": ["kd T2", "kd T4"], "by": "select/val_loss"}, "metric": "test/acc"},
                          {"arm": "pruned", "metric": "test/acc"}]
    s = st.parse(raw)
    assert s.comparisons[0].label == "best of 2 on select/val_acc - dense"
    vals = {"dense": {"test/acc": {0: 0.80, 1: 0.81, 2: 0.79}},
            "kd T2": {"test/acc": {0: 0.90, 1: 0.91, 2: 0.92}, "select/val_acc": {0: 0.85, 1: 0.86, 2: 0.84},
                      "select/val_loss": {0: 0.50, 1: 0.50, 2: 0.50}},  # best on test, not on validation
            "kd T4": {"test/acc": {0: 0.82, 1: 0.84, 2: 0.83}, "select/val_acc": {0: 0.88, 1: 0.87, 2: 0.89},
                      "select/val_loss": {0: 0.40, 1: 0.41, 2: 0.39}},
            "pruned": {"test/acc": {0: 0.80, 1: 0.80, 2: 0.80}}}
    by_acc, by_loss, plain = st.compare(s, vals)
    assert by_acc["picked"] == by_loss["picked"] == "kd T4"  # highest accuracy, lowest loss
    assert by_acc["paired"].mean == pytest.approx(0.03) and by_acc["pick_means"]["kd T2"] == pytest.approx(0.85)
    assert by_acc["label"] == "kd T4 (best of 2 on select/val_acc) - dense"
    assert by_acc["p_holm"] >= by_acc["paired"].p and "picked" not in plain  # one Holm family of 3
    from edgebench.report.render import _comparisons_table

    assert any(line.startswith("| kd T4 (best of 2 on select/val_acc) - dense | test/acc | ")
               for line in _comparisons_table([by_acc, by_loss, plain]))


@pytest.mark.parametrize("name, chain", [("kure_resnet20", ["kure"]), ("quant_resnet20", ["ptq_int8"]),
                                         ("tflm_zoo", ["ptq_int8"])])
def test_the_ported_quantisation_studies_compose_at_both_budgets(name, chain):
    """The studies that replaced experiments/{kure,quant}_resnet20.py and tflm_zoo.py: every arm composes and
    validates at smoke (digits) and full (Fashion-MNIST); their extra hooks import."""
    import importlib

    s = st.load(name)
    assert len(s.budgets["full"].seeds) >= 3
    for budget, data in (("smoke", "digits"), ("full", "fashion_mnist")):
        arms = st.check(s, budget, Path("."))
        assert {a["data"] for a in arms.values()} == {data}
        assert any(a["chain"] == chain for a in arms.values())
    if s.extra:
        module, _, fn = s.extra.partition(":")
        assert callable(getattr(importlib.import_module(module), fn))


def test_a_ledger_counts_its_runs_as_finished_by_the_same_rules(tmp_path):
    """The rows of NAME.runs.csv join the MLflow store's runs (ledger true) and are judged alike: an arm edited since
    (another study.spec), a seed out of the budget, an arm no longer in the study are left out with the reason."""
    import pandas as pd

    from edgebench.report import studies

    s = parse(ledger=True)
    spec = {a: s.spec(a, "full") for a in s.arms}
    rows = [{"run_id": f"r{i}", "run_name": f"run {i}", "start_time": "2026-12-01 10:00:00+00:00",
             "end_time": f"2026-12-01 10:0{i}:00+00:00", "study": "tiny", "study.arm": arm, "study.spec": sp,
             "study.budget": "full", "seed": seed, "test/acc": 0.9 + i / 100}
            for i, (arm, sp, seed) in enumerate([("dense", spec["dense"], 0), ("dense", spec["dense"], 1),
                                                 ("pruned", spec["pruned"], 0), ("pruned", "edited", 1),
                                                 ("dense", spec["dense"], 7), ("gone", "x", 0)])]
    ledger = tmp_path / "tiny.runs.csv"
    pd.DataFrame(rows).to_csv(ledger, index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # an empty store: every run comes from the ledger
    df, left = studies.runs(s, "full", uri, ledger)
    assert sorted(zip(df["study.arm"], df["seed"])) == [("dense", 0), ("dense", 1), ("pruned", 0)]
    assert df["ledger"].all() and str(df["end_time"].dtype).startswith("datetime64")
    assert {r for r, _ in left} == {"r3", "r4", "r5"}
    assert st._done(s, "full", uri, ledger) == {("dense", 0), ("dense", 1), ("pruned", 0)}
    assert studies.values(s, df)["dense"]["test/acc"] == {0: 0.9, 1: 0.91}
    # written back: the kept runs only, sorted, without the column that marks where they came from
    assert studies.write_ledger(s, df, tmp_path / "again.csv") == 3
    again = pd.read_csv(tmp_path / "again.csv")
    assert list(again["run_id"]) == ["r0", "r1", "r2"] and "ledger" not in again
    assert studies.runs(s, "full", uri, None)[0].empty  # without the ledger: nothing finished


def test_arms_that_fail_for_one_reason_are_reported_once(monkeypatch, tmp_path, capsys):
    """Twelve arms whose shared dense parent cannot learn fail with the same reason: the user reads it once."""
    why = "exit 1: NotLearnedError: the dense baseline has not learned yet: train longer"
    monkeypatch.setattr(st, "launch", lambda *a, **k: {"failed": {"a": why, "b": why, "c": "exit 2: other"}})
    monkeypatch.setattr(st, "write_report", lambda *a, **k: None)
    monkeypatch.chdir(tmp_path)
    assert st.main(["leaderboard"]) == 1
    err = capsys.readouterr().err
    assert err.count("NotLearnedError") == 1 and "2 arms failed ('a', 'b'), each for one reason" in err
    assert "arm 'c' failed (exit 2: other)" in err and "run the same command again" in err


def test_a_ledger_with_children_keeps_the_child_runs_a_hook_reads(monkeypatch, tmp_path):
    """ledger: children (the lottery study: its per-level tables read each run's child runs) keeps them beside the
    ledger, so a checkout without the MLflow store that made them still has every level."""
    import pandas as pd

    from edgebench.report import studies

    s = parse(ledger="children")
    assert s.ledger == "children"
    df = pd.DataFrame({"run_id": ["p1", "p2"], "study.arm": ["pruned", "pruned"], "seed": [0, 1]})
    df.attrs.update(tracking_uri="sqlite://", experiment="study-tiny",
                    children_ledger=str(studies.children_path(tmp_path / "tiny.runs.csv")))
    kids = pd.DataFrame({"run_id": ["k1", "k2", "k3", "x"], "parent_run_id": ["p1", "p1", "p2", "other"],
                         "seed": [0, 0, 1, 5], "lth/level": [0, 1, 0, 0], "lth/test_acc": [0.8, 0.81, 0.79, 0.5],
                         "tags.note": ["a", "b", "c", "d"]})
    monkeypatch.setattr(studies, "load_runs", lambda *a, **k: kids)
    studies.write_ledger(s, df, tmp_path / "tiny.runs.csv")
    kept = pd.read_csv(tmp_path / "tiny.children.csv")
    assert list(kept["run_id"]) == ["k1", "k2", "k3"] and "lth/test_acc" in kept and "tags.note" not in kept
    # a fresh checkout: no MLflow store; the levels come from the file
    monkeypatch.setattr(studies, "load_runs", lambda *a, **k: pd.DataFrame())
    got = studies.child_runs(["p1", "p2"], df.attrs)
    assert sorted(got["run_id"]) == ["k1", "k2", "k3"] and got["lth/test_acc"].tolist() == [0.8, 0.81, 0.79]
    assert parse(ledger=True).ledger is True
    with pytest.raises(st.StudyError, match="must be true, false or children"):
        parse(ledger="yes")


def test_study_wall_time_reads_each_arms_time_from_the_runners_log(tmp_path):
    """experiments/study_wall_time.py compares the two ways on the arms that finished in both, from the lines the
    study runner prints (seconds below 90 s, minutes above)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_wall_time",
                                                  Path(__file__).parents[1] / "experiments" / "study_wall_time.py")
    wt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wt)
    log = tmp_path / "local.log"
    log.write_text("  arm 'lenet5 dense' done in 35 s\n  arm 'resnet8 chain' done in 2.0 min\n"
                   "  arm 'mobilenet_v2 x0.35 dense' FAILED (exit 1)\n")
    assert wt.arm_seconds(log) == {"lenet5 dense": 35.0, "resnet8 chain": 120.0}
    assert wt.arm_seconds(tmp_path / "missing.log") == {}
