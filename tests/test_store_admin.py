"""The store's growth (issue 24 item 15): ``python -m edgebench.store`` lists and removes entries, leftover
locks and set-asides; a run keeps one copy of its model (in MLflow's artifact store).

The listing and removal tests build a store with :class:`edgebench.store.Store` itself and record runs
with MLflow's client (no training); one test runs the pipeline on sklearn digits.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from edgebench.store import META, Store, child_key, digest, failed_path
from edgebench.training import SAME_EACH_TIME, NonFiniteLossError

DAY = 86400


class _Admin:  # edgebench.store.admin, imported when first used (the last test needs only the pipeline)
    def __getattr__(self, name):
        from edgebench.store import admin as mod

        return getattr(mod, name)


store_admin = _Admin()
LOTTERY_SETTINGS = {"rate": 0.2, "scope": "layer", "epochs": 1, "mask_layout": 2}


def _files(folder: Path, nbytes: int, name: str = "model.pt"):
    def save(_value, f: Path) -> dict:
        (f / name).write_bytes(b"x" * nbytes)
        return {}
    return save


def _entry(cache: Path, kind: str, key, name: str | None, nbytes: int, made: float | None = None) -> Path:
    """An entry of ``nbytes`` (plus its meta.json) made through the store, its ``created`` set to ``made``."""
    path = Store(cache).get_or_make(kind, key, lambda: None, _files(cache, nbytes), lambda p: 1, name=name).path
    if made is not None:
        meta = json.loads((path / META).read_text())
        meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(made))
        (path / META).write_text(json.dumps(meta))
    return path


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _mlflow(tmp_path: Path, template: Path) -> tuple[str, MlflowClient, str]:
    db = tmp_path / "results" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, db)
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment("edgebench")


def _run(client: MlflowClient, exp: str, tags: dict, start: float | None = None, finish: bool = True) -> str:
    r = client.create_run(exp, start_time=int(1000 * (start or time.time())), tags=tags)
    if finish:
        client.set_terminated(r.info.run_id)
    return r.info.run_id


@pytest.fixture
def project(tmp_path, mlflow_template_db):
    """A store with a used baseline B and step S (run r1), an unused baseline U, a lottery scope L in parts
    used through its step entry (run r2), a ``.corrupt-*`` set-aside, and a lock file per entry and part (the store
    removes its lock files on release: these are what an older edgebench or a killed process leaves)."""
    cache = tmp_path / "results" / "cache"
    uri, client, exp = _mlflow(tmp_path, mlflow_template_db)
    bkey, ukey = {"model": "lenet", "seed": 0}, {"model": "lenet", "seed": 1}
    b = _entry(cache, "baselines", bkey, "lenet-digits", 3000)
    u = _entry(cache, "baselines", ukey, "lenet-digits", 2000)
    skey = child_key(digest(bkey), {"step": "magnitude_pruning", "config": {"sparsity": 0.9}})
    s = _entry(cache, "steps", skey, "magnitude_pruning", 1000)
    scope = Store(cache).scope("lottery", {"dense": digest(bkey), "method": LOTTERY_SETTINGS})
    scope.part("level_0/ticket", lambda: None, _files(cache, 4000, "final.pt"), lambda p: 1)
    scope.part("level_1/mask.pt", lambda: None, lambda v, f: f.write_bytes(b"m" * 500), lambda p: 1, file=True)
    lconfig = {k: v for k, v in LOTTERY_SETTINGS.items() if k != "mask_layout"} | {"levels": 1, "controls": []}
    lkey = child_key(digest(bkey), {"step": "lottery_ticket", "config": lconfig})
    ls = _entry(cache, "steps", lkey, "lottery_ticket", 100)
    for left in (b, u, s, ls, scope.root / "level_0" / "ticket", scope.root / "level_1" / "mask.pt"):
        Path(f"{left}.lock").touch()
    bad = cache / "baselines" / "lenet-digits-0123456789abcdef.corrupt-1700000000"
    bad.mkdir()
    (bad / "model.pt").write_bytes(b"c" * 700)
    r1 = _run(client, exp, {"baseline.key": digest(bkey), "step.0.key": digest(skey)})
    r2 = _run(client, exp, {"baseline.key": digest(bkey), "step.0.key": digest(lkey), "pipeline": "lottery_ticket"})
    return dict(tmp_path=tmp_path, cache=cache, uri=uri, client=client, exp=exp, b=b, u=u, s=s, l=scope.root, ls=ls,
                bad=bad, r1=r1, r2=r2)


def _cli(p, *args, capsys=None) -> str:
    store_admin.main(["--store-dir", str(p["cache"]), "--tracking-uri", p["uri"], *args])
    return capsys.readouterr().out if capsys is not None else ""


def test_listing_names_each_entry_its_size_and_the_runs_that_use_it(project, capsys):
    p = project
    found = store_admin.scan(p["cache"], p["uri"])
    by_path = {e.path: e for e in found.entries}
    assert set(by_path) == {p["b"], p["u"], p["s"], p["l"], p["ls"]}
    assert set(by_path[p["b"]].runs) == {p["r1"], p["r2"]} and set(by_path[p["s"]].runs) == {p["r1"]}
    assert by_path[p["u"]].runs == {}  # unused
    assert set(by_path[p["l"]].runs) == {p["r2"]}  # the lottery scope: through its step entry
    for path, e in by_path.items():  # everything in the folder, the parts of a scope included
        assert e.bytes == _size(path) and e.bytes > 0
    assert by_path[p["l"]].bytes >= 4500 and by_path[p["l"]].kind == "lottery"
    assert [x.path for x in found.set_asides] == [p["bad"]] and found.set_asides[0].bytes == 700
    # a lock file per entry (4), plus one per part inside the scope (2); none of them held
    assert len(found.locks) == 6 and not any(lk.held for lk in found.locks)

    out = _cli(p, capsys=capsys)
    for e in by_path.values():
        assert e.path.name in out
    assert "unused" in out and p["r1"][:8] in out
    assert "5 entries" in out and "6 lock files" in out and "1 set-aside" in out
    assert "nothing removed" in out.lower() or "remove" in out.lower()
    assert all(e.path.exists() for e in by_path.values())  # listing changes nothing


def test_listing_names_a_remembered_failure_and_its_reason(project, capsys):
    p = project
    store = Store(p["cache"])
    key = child_key(digest({"model": "lenet", "seed": 0}), {"step": "magnitude_pruning", "config": {"sparsity": 0.99}})

    def nan():
        raise NonFiniteLossError("training loss is nan at epoch 0, batch 1")

    with pytest.raises(NonFiniteLossError):
        store.get_or_make("steps", key, nan, lambda v, f: None, lambda f: 1, name="magnitude_pruning",
                          remember=SAME_EACH_TIME)
    found = store_admin.scan(p["cache"], p["uri"])
    assert [x.path for x in found.failures] == [failed_path(store.path("steps", key, "magnitude_pruning"))]
    assert len(found.entries) == 5  # not an entry
    out = _cli(p, capsys=capsys)
    assert "1 remembered failure" in out and "NonFiniteLossError: training loss is nan at epoch 0, batch 1" in out


def test_removing_is_a_dry_run_unless_yes(project, capsys):
    p = project
    out = _cli(p, "--unused", capsys=capsys)
    assert "--yes" in out
    assert [p["u"].name in line for line in out.splitlines() if "would remove" in line] == [True]
    assert p["u"].exists()  # a dry run
    out = _cli(p, "--unused", "--yes", capsys=capsys)
    assert "removed" in out and "freed" in out
    assert not p["u"].exists() and not Path(f"{p['u']}.lock").exists()
    assert all(p[k].exists() for k in ("b", "s", "l", "ls"))


def test_older_than_counts_from_the_last_run_that_used_an_entry(tmp_path, mlflow_template_db, capsys):
    cache = tmp_path / "results" / "cache"
    uri, client, exp = _mlflow(tmp_path, mlflow_template_db)
    old = time.time() - 40 * DAY
    bkey, skey = {"m": "b"}, {"m": "s"}
    b = _entry(cache, "baselines", bkey, "b", 100, made=old)  # made long ago, used yesterday: kept
    s = _entry(cache, "steps", skey, "s", 100, made=old)  # made and last used long ago: removed
    u = _entry(cache, "baselines", {"m": "u"}, "u", 100, made=old)  # made long ago, never used: removed
    n = _entry(cache, "baselines", {"m": "n"}, "n", 100)  # made now: kept
    _run(client, exp, {"baseline.key": digest(bkey), "step.0.key": digest(skey)}, start=old)
    _run(client, exp, {"baseline.key": digest(bkey)}, start=time.time() - DAY)
    store_admin.main(["--store-dir", str(cache), "--tracking-uri", uri, "--older-than", "30d", "--yes"])
    assert b.exists() and n.exists() and not s.exists() and not u.exists()


def test_max_size_removes_the_least_recently_used_first(tmp_path, mlflow_template_db, capsys):
    cache = tmp_path / "results" / "cache"
    uri, client, exp = _mlflow(tmp_path, mlflow_template_db)
    now = time.time()
    paths = {}
    for n, age in (("a", 3), ("b", 1), ("c", 2)):  # last used 3, 1 and 2 days ago
        key = {"m": n}
        paths[n] = _entry(cache, "baselines", key, n, 10_000, made=now - 10 * DAY)
        _run(client, exp, {"baseline.key": digest(key)}, start=now - age * DAY)
    each = _size(paths["a"])
    store_admin.main(["--store-dir", str(cache), "--tracking-uri", uri, "--max-size", str(2 * each), "--yes"])
    assert not paths["a"].exists() and paths["b"].exists() and paths["c"].exists()
    store_admin.main(["--store-dir", str(cache), "--tracking-uri", uri, "--max-size", "15kB", "--yes"])
    assert not paths["c"].exists() and paths["b"].exists()


def _hold(lock: Path) -> subprocess.Popen:
    """A live process holding ``lock`` (as a run making or loading that entry does)."""
    code = ("import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
            "print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_an_entry_whose_lock_is_held_is_never_removed(project, capsys):
    p = project
    lock = Path(f"{p['u']}.lock")
    holder = _hold(lock)
    try:
        out = _cli(p, "--unused", "--clean", "--yes", capsys=capsys)
        assert p["u"].exists() and lock.exists()
        assert "in use" in out
        assert not Path(f"{p['b']}.lock").exists()  # the locks nobody holds are gone
    finally:
        holder.kill()
        holder.wait()
    _cli(p, "--unused", "--yes", capsys=capsys)
    assert not p["u"].exists()


def test_entries_made_since_a_running_run_began_are_kept(project, capsys):
    from edgebench.tracking import process_tags

    p = project
    _run(p["client"], p["exp"], process_tags(), start=time.time() - 60, finish=False)  # this process: alive
    out = _cli(p, "--unused", "--yes", capsys=capsys)
    assert p["u"].exists() and "running" in out


def test_clean_removes_stale_locks_set_asides_and_dead_temporaries(project, capsys):
    p = project
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    tmp = p["cache"] / "baselines" / f"lenet-digits-fedcba9876543210.tmp-{int(dead.stdout)}"
    tmp.mkdir()
    (tmp / "model.pt").write_bytes(b"t" * 300)
    out = _cli(p, "--clean", capsys=capsys)
    assert "would remove" in out and p["bad"].exists() and tmp.exists()
    out = _cli(p, "--clean", "--yes", capsys=capsys)
    assert not p["bad"].exists() and not tmp.exists()
    assert not list(p["cache"].rglob("*.lock"))
    assert all(p[k].exists() for k in ("b", "u", "s", "l", "ls"))  # entries stay, and still load
    again = Store(p["cache"]).get_or_make("baselines", {"model": "lenet", "seed": 0}, lambda: pytest.fail("remade"),
                                         _files(p["cache"], 1), lambda f: "loaded", name="lenet-digits")
    assert again.hit and again.value == "loaded"


def _going(until: tuple[float, float], made, removed) -> bool:
    """Run at least until ``until[0]``, then on until enough entries were made and lock files removed (a loaded
    machine gets there later), never past ``until[1]``."""
    now = time.time()
    return now < until[0] or (now < until[1] and (made.value <= 30 or removed.value <= 10))


def _maker(root: str, until: tuple[float, float], violations, made, removed) -> None:
    """Make the same three entries again and again (``redo``), each time checking that no other process is
    making that entry at the same moment (an O_EXCL marker held while making)."""
    def save(_v, folder: Path) -> dict:
        return {}

    n = 0
    while _going(until, made, removed):
        key = {"k": n % 3}
        marker = Path(root) / f"making-{n % 3}"

        def make():
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                violations.value += 1
                return None
            time.sleep(0.002)
            os.close(fd)
            os.unlink(marker)
            made.value += 1
            return None

        Store(Path(root) / "cache").get_or_make("baselines", key, make, save, lambda p: 1, redo=True)
        n += 1


def _cleaner(root: str, until: tuple[float, float], made, removed) -> None:
    while _going(until, made, removed):
        removed.value += store_admin.remove_unheld_locks(Path(root) / "cache")


def test_removing_unheld_lock_files_never_lets_two_processes_make_one_entry(tmp_path):
    """The lock files are removed while makers run: each removal holds the lock it unlinks, and a maker that
    locked a file meanwhile unlinked tries again on the new one (edgebench.locks checks it is still the file at the
    path)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    violations, made, removed = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    until = (time.time() + 3, time.time() + 60)
    procs = [ctx.Process(target=_maker, args=(str(tmp_path), until, violations, made, removed)) for _ in range(3)]
    procs.append(ctx.Process(target=_cleaner, args=(str(tmp_path), until, made, removed)))
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(90)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    assert violations.value == 0 and made.value > 30 and removed.value > 10


@pytest.mark.parametrize("args,message", [
    (["--max-size", "2XB"], "--max-size 2XB"),
    (["--older-than", "3 weeks"], "--older-than 3 weeks"),
])
def test_bad_options_are_one_line_with_the_fix(project, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        _cli(project, *args)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("edgebench: error: ") and message in err and "e.g." in err
    assert "\n" not in err


def test_missing_store_is_one_line_from_the_command_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = subprocess.run([sys.executable, "-m", "edgebench.store"], cwd=tmp_path, capture_output=True, text=True,
                         env=env, timeout=120)
    err = out.stderr.strip()
    assert out.returncode == 2 and err.startswith("edgebench: error: ") and "--store-dir" in err and "\n" not in err


def test_the_old_cache_dir_flag_still_works_and_says_so(project, capsys):
    p = project
    store_admin.main(["--cache-dir", str(p["cache"]), "--tracking-uri", p["uri"]])
    out, err = capsys.readouterr()
    assert "edgebench.store: --cache-dir is deprecated: use --store-dir" in err and "baselines" in out


def test_unused_needs_the_runs(project, capsys):
    p = project
    with pytest.raises(SystemExit):
        store_admin.main(["--store-dir", str(p["cache"]), "--tracking-uri",
                          f"sqlite:///{p['tmp_path'] / 'nowhere.db'}", "--unused"])
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgebench: error: ") and "--tracking-uri" in err and "\n" not in err
    assert p["u"].exists()


# --------------------------------------------------------------------------- one copy of the deployable


def test_a_run_keeps_its_model_once_in_mlflow_and_no_local_copy(make_cfg, tmp_path):
    from edgebench import pipeline

    cfg = make_cfg("data=digits", "trainer.max_epochs=1", "trainer.batch_size=64", "measure.latency=false",
                   "+method=lottery_ticket", "method.levels=1", "method.epochs=1", "method.controls=[]",
                   "method.val_checks_per_epoch=1")
    res = pipeline.run(cfg)
    work_dir = Path(cfg.paths.output_dir) / res.run_id
    leftovers = [f for f in work_dir.rglob("*") if f.is_file()] if work_dir.exists() else []
    assert leftovers == []  # no artifact/model.onnx, no step0/lottery/winning_ticket.pt
    # the deployable once in MLflow's artifact store, and once in the store's deployments (what a second device of
    # the same format reuses); nowhere else
    onnx = sorted(tmp_path.rglob("*.onnx"), key=lambda f: Path(cfg.paths.store_dir) in f.parents)
    assert len(onnx) == 2 and Path(cfg.paths.mlflow_artifact_dir) in onnx[0].parents
    assert Path(cfg.paths.store_dir, "deployments") in onnx[1].parents
    client = MlflowClient(cfg.paths.mlflow_tracking_uri)
    assert "model.onnx" in {a.path for a in client.list_logged_model_artifacts(res.model_id)}  # the run's LoggedModel
    # the store's entries stay (baseline, step, lottery levels) but none of their lock files: nobody holds them
    cache = Path(cfg.paths.store_dir)
    assert {p.name for p in cache.iterdir()} == {"baselines", "steps", "lottery", "deployments"}
    assert not list(cache.rglob("*.lock"))
    assert "lottery/winning_ticket.pt" in {a.path for a in client.list_artifacts(res.run_id, "lottery")}


def test_the_readme_store_commands_run_as_written(project, monkeypatch, capsys):
    """Every ``python -m edgebench.store`` line of the README and docs/, in its order, from the project folder."""
    import re
    import shlex

    root = Path(__file__).resolve().parents[1]
    readme = "\n".join(f.read_text() for f in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    lines = [m.split("#")[0].strip() for m in re.findall(r"^python -m edgebench\.store.*$", readme, re.M)]
    assert len(lines) >= 5
    monkeypatch.chdir(project["tmp_path"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for line in lines:
        store_admin.main(shlex.split(line)[3:])
        out = capsys.readouterr().out
        assert "error" not in out.lower(), (line, out)
    # the last one (--clean --yes) left no set-aside and no lock file; --unused was a dry run, so U is still there
    assert not project["bad"].exists() and not list(project["cache"].rglob("*.lock"))
    assert project["b"].exists()
