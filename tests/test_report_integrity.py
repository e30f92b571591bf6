"""The report's integrity: a replicate group holds one run per seed, children of unfinished parents are left out
(and both are said), names used as paths stay under results/, and printed shell commands are quoted."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from edgebench import report

# ------------------------------------------------------------------------------------------------ item 3


def _rows(seeds, group="g-prune", method="magnitude_pruning", accs=None, end=None):
    """One row per seed of one replicate group; ``end`` are the runs' end times (later = finished later)."""
    accs = accs or [0.9 + 0.01 * i for i in range(len(seeds))]
    return [{"run_id": f"{group}-{i}", "run_name": f"{method} {i}", "seed": s, "replicate_group": group,
             "model": "lenet_300_100", "data": "digits", "method": method, "device": "host", "test/acc": a,
             "size/bytes_artifact": 1000.0, "device/fits": 1.0,
             "end_time": pd.Timestamp("2026-01-01") + pd.Timedelta(minutes=(end[i] if end else i))}
            for i, (s, a) in enumerate(zip(seeds, accs))]


def test_the_same_seed_twice_is_one_replicate_the_latest_kept():
    df, _, _ = report.build(pd.DataFrame(_rows([14, 14], accs=[0.80, 0.90], end=[5, 1])))
    assert len(df) == 1
    row = df.iloc[0]
    assert row["replicates"] == 1 and row["seeds"] == "14"
    assert row["test/acc"] == pytest.approx(0.80)  # the run that finished last (end 5), not the mean of both
    assert np.isnan(row["test/acc_ci"])  # one replicate: no interval, never ± 0
    assert row["duplicates_dropped"] == 1 and row["run_ids"] == "g-prune-0"
    assert row["duplicate_run_ids"] == "g-prune-1"
    (d,) = df.attrs["dropped"]
    assert d["run_id"] == "g-prune-1" and "duplicate" in d["reason"] and "g-prune-0" in d["reason"]


def test_a_doubled_sweep_counts_each_seed_once():
    rows = _rows([0, 2, 0, 2], accs=[0.90, 0.92, 0.91, 0.93])  # the second launch ends later
    df, _, _ = report.build(pd.DataFrame(rows + _rows([0, 1, 2], group="g-dense", method="none")))
    g = df[df["method"] == "magnitude_pruning"].iloc[0]
    assert g["replicates"] == 2 and g["seeds"] == "0,2" and g["duplicates_dropped"] == 2
    assert g["test/acc"] == pytest.approx(0.92)  # mean of the later launch: 0.91, 0.93
    assert df[df["method"] == "none"].iloc[0]["duplicates_dropped"] == 0
    text = report.render.markdown(df, "t", "b", "l", [])
    assert "2 duplicate runs dropped" in text and "g-prune-0" in text


def _store(tmp_path, mlflow_template_db):
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template_db, db)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment("edgebench")


def _log(client, exp, name, status="FINISHED", end=0, params=None, metrics=None, **tags):
    run = client.create_run(exp, run_name=name, tags={k.replace("__", "."): v for k, v in tags.items()})
    for k, v in (params or {}).items():
        client.log_param(run.info.run_id, k, v)
    for k, v in (metrics or {}).items():
        client.log_metric(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id, status, end_time=1_800_000_000_000 + end * 1000)
    return run.info.run_id


def _fake_store(tmp_path, mlflow_template_db):
    """A sweep (its parent KILLED) of lottery-ticket jobs, seeds 0 and 1; job seed 0 ran twice (a relaunch);
    each job has a child (level 1); one more job's run was KILLED after its child finished."""
    uri, client, exp = _store(tmp_path, mlflow_template_db)
    common = {"model": "lenet_300_100", "data": "digits", "device": "host", "method": "lottery_ticket",
              "pipeline": "lottery_ticket", "sweep_id": "sw-1"}  # pipeline: the chain tag's old name
    sweep_parent = _log(client, exp, "sweep sw-1", "KILLED", edgebench__sweep_parent="sw-1", sweep_id="sw-1",
                        method="sweep")
    metrics = {"size/bytes_artifact": 1000.0, "device/fits": 1.0, "select/val_acc": 0.9}
    jobs = {}
    for name, seed, status, end, acc in [("job s0", 0, "FINISHED", 1, 0.90), ("job s0 again", 0, "FINISHED", 9, 0.94),
                                         ("job s1", 1, "FINISHED", 2, 0.92), ("job s2 killed", 2, "KILLED", 3, 0.5)]:
        jobs[name] = _log(client, exp, name, status, end, {"seed": seed}, {**metrics, "test/acc": acc},
                          replicate_group="g-lth", mlflow__parentRunId=sweep_parent, **common)
        # the method's child: a finished level 1, whatever its parent became (no seed param of its own)
        _log(client, exp, f"{name} / level 1", "FINISHED", end, None, {**metrics, "test/acc": acc - 0.1},
             replicate_group="g-lth / level 1", mlflow__parentRunId=jobs[name], edgebench__child="true", **common)
    return uri, jobs


def test_children_of_unfinished_parents_and_duplicates_are_left_out_and_said(tmp_path, mlflow_template_db, capsys):
    uri, jobs = _fake_store(tmp_path, mlflow_template_db)
    df = report.report(uri, out=tmp_path / "out", log_to_parent=False)
    top = df[df["edgebench.child"] != "true"].iloc[0]
    # the sweep's jobs count although the sweep parent is KILLED; seed 0 once (its latest run), the KILLED job not
    assert top["replicates"] == 2 and top["seeds"] == "0,1" and top["duplicates_dropped"] == 1
    assert top["test/acc"] == pytest.approx((0.94 + 0.92) / 2)
    assert (df["edgebench.child"] != "true").all() and df.attrs["children_left_out"] == 2  # levels: not rows
    runs = report.load_runs(uri)
    assert (runs["chain"] == "lottery_ticket").all()  # runs logged before the tag pipeline became chain
    every, _, _ = report.build(runs, children=True)
    level = every[every["edgebench.child"] == "true"].iloc[0]
    # the level of the KILLED job is left out; the level of the earlier seed-0 run is a duplicate (seed of its parent)
    assert level["replicates"] == 2 and level["seeds"] == "0,1" and level["duplicates_dropped"] == 1
    assert level["test/acc"] == pytest.approx((0.84 + 0.82) / 2)
    out = capsys.readouterr().out
    md = (tmp_path / "out" / "report.md").read_text()
    csv = pd.read_csv(tmp_path / "out" / "report.csv")
    assert sorted(csv["duplicates_dropped"]) == [1]  # the job group; its level is not a row
    for text in (out, md):
        assert "2 duplicate runs dropped" in text
        assert "1 child run left out" in text and "KILLED" in text
        assert "2 child runs (teachers, chain steps) left out" in text
    assert jobs["job s2 killed"] in md  # the parent is named


def test_the_leaderboard_groups_the_same_way(tmp_path, mlflow_template_db, capsys):
    uri, _ = _fake_store(tmp_path, mlflow_template_db)
    board = report.report_leaderboard(uri, out=tmp_path / "lb")
    row = board[(board["device"] == "host") & (board["family"] == "lottery ticket")].iloc[0]
    assert row["replicates"] == 2 and row["test_acc"] == pytest.approx((0.94 + 0.92) / 2)
    out = capsys.readouterr().out
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    for text in (out, md):
        assert "2 duplicate runs dropped" in text and "1 child run left out" in text


# ------------------------------------------------------------------------------------------------ item 7

NASTY = ["../../x", "my exp/1 a", "..", ".", "/abs/olute", "a\\b", "", "$(touch pwned)", "sw-1a2b3c4d5e"]


@pytest.mark.parametrize("name", NASTY)
def test_a_name_becomes_one_safe_path_component(name, tmp_path):
    part = report.path_component(name)
    assert part and "/" not in part and "\\" not in part and part not in (".", "..") and not part.startswith(".")
    assert (tmp_path / part).resolve().parent == tmp_path.resolve()
    if name == "sw-1a2b3c4d5e":
        assert part == name  # a plain name is kept as it is
    else:
        assert part != name and report.path_component(name + "x") != part  # changed, and two names do not collide


@pytest.mark.parametrize("experiment", ["../../x", "my exp/1 a"])
def test_the_report_of_a_named_experiment_stays_under_results(experiment, tmp_path, mlflow_template_db, monkeypatch):
    uri, client, _ = _store(tmp_path, mlflow_template_db)
    exp = client.create_experiment(experiment)
    _log(client, exp, "dense", params={"seed": 0}, metrics={"test/acc": 0.9, "size/bytes_artifact": 1000.0},
         method="none", model="m", data="d", device="host")
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    report.main(["--tracking-uri", uri, "--experiment", experiment])
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "mlflow.db"]
    assert written and all((work / "results") in p.parents for p in written), written
    (folder,) = {p.parent for p in written}
    assert folder.parent == work / "results" and (folder / "report.md").exists()


EVIL = "st ore $(touch pwned) `touch pwned2` 'q\" ;x"  # a space, a command substitution, quotes


def _round_trip(command: str, cwd) -> list[str]:
    """The command's words as bash parses them (printf, not the program), checking nothing ran."""
    words = shlex.split(command)
    out = subprocess.run(["bash", "-c", "printf '%s\\n' " + command.split(" ", 2)[2]], cwd=cwd, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert not list(cwd.glob("pwned*")), "pasting the command ran what the path contains"
    assert out == words[2:]
    return words


def test_the_ui_command_at_the_end_of_a_run_is_quoted(tmp_path):
    from edgebench.tracking import ui_command

    uri, art = f"sqlite:///{tmp_path}/{EVIL}/mlflow.db", tmp_path / EVIL / "mlartifacts"
    words = _round_trip(ui_command(uri, str(art)), tmp_path)
    assert words[:3] == ["python", "-m", "edgebench.ui"] and words[words.index("--tracking-uri") + 1] == uri
    assert words[words.index("--artifact-dir") + 1] == str(art)


def test_the_run_summary_prints_the_ui_command_verbatim(tmp_path):
    from types import SimpleNamespace

    from rich.console import Console

    from edgebench.summary import print_summary
    from edgebench.tracking import ui_command

    cmd = ui_command(f"sqlite:///{tmp_path}/{EVIL} [bold]x[/] :smile:/mlflow.db", str(tmp_path / "art"))
    result = SimpleNamespace(metrics={"test/acc": 0.9, "size/params": 100, "compute/macs": 1000},
                             tags={"model": "m", "data": "d", "method": "none"}, device_report=None,
                             baseline_from_cache=False, run_id="r1")
    console = Console(record=True, width=80)
    print_summary(result, cmd, console)
    (line,) = [l for l in console.export_text().splitlines() if l.startswith("open the MLflow UI: ")]
    assert line == f"open the MLflow UI: {cmd}"


def test_the_ui_command_at_the_end_of_a_sweep_is_quoted(tmp_path, mlflow_template_db, capsys):
    from omegaconf import OmegaConf

    from edgebench.sweep import SweepCallback

    store = tmp_path / EVIL
    store.mkdir()
    shutil.copy(mlflow_template_db, store / "mlflow.db")
    uri = f"sqlite:///{store}/mlflow.db"
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(uri).create_experiment("edgebench")
    config = OmegaConf.create({"experiment_name": "edgebench", "paths": {"mlflow_artifact_dir": str(store / "art")}})
    SweepCallback._print_end(config, {"sweep_id": "sw-1", "tracking_uri": uri, "experiment_id": exp})
    (line,) = [l for l in capsys.readouterr().out.splitlines() if "python -m edgebench.ui" in l]
    words = _round_trip(line[line.index("python -m"):], tmp_path)
    assert words[words.index("--tracking-uri") + 1] == uri
    assert words[words.index("--artifact-dir") + 1] == str((store / "art").resolve())
    assert words[words.index("--sweep") + 1] == "sw-1"
