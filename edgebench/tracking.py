"""MLflow: the run lifecycle and logging of the metric contract.

Runs are created with an explicit :class:`MlflowClient` (no process-global active run), so
sequential jobs of a sweep in one process cannot leak into each other. A run that raises is
terminated as FAILED with ``status_reason``; a run interrupted with Ctrl-C as KILLED.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import random
import socket
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

from edgebench import locks

log = logging.getLogger(__name__)

MAX_PARAM_LEN = 6000


def _quiet_mlflow() -> None:
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)
    db_log = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _MachineFaults) for f in db_log.filters):
        db_log.addFilter(_MachineFaults())


class _MachineFaults(logging.Filter):
    """Drops MLflow's logged traceback of an SQL error that is a fault of the machine (a full disk): the error
    is raised as well, and edgebench reports it in one line (:func:`fault_message`) and in the run's status."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        return err is None or fault_message(err) is None


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


SQLITE_HEADER = b"SQLite format 3\x00"
# Marks the experiment as model training for MLflow 3 (the kind MLflow's own tools read; UIs that honour it open
# the runs table, not the GenAI overview). MLflow 3.17's UI follows the sidebar's GenAI / Model training switch
# instead, so edgebench's links also carry ?workflowType=machine_learning (ui_page).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"

# The runs table's columns: MLflow 3.17's UI shows none of a run's metrics until a user picks them, unless the link
# opens a saved view (``?viewStateShareKey=KEY``, read from the experiment tag ``mlflow.sharedViewState.KEY``: JSON
# {name, createdAt, updatedAt, state}, the state a JSON string of the table's settings, columns named as
# ``metrics.`test/acc```). edgebench keeps one view per experiment and one per sweep (filtered to its runs).
VIEW_TAG, VIEW_KEY = "mlflow.sharedViewState.", "edgebench"
VIEW_COLUMNS = [f"metrics.`{m}`" for m in ("test/acc", "delta/acc", "size/bytes_artifact", "size/compression_ratio",
                                           "latency/host_p50_ms", "device/fits", "device/latency_ms_est",
                                           "device/latency_ms_low", "device/latency_ms_high",
                                           "device/latency_calibrated")] + \
               ["tags.`device.runtime`", "tags.`export.name`", "params.`device.name`"]  # an estimate with its band


def view_key(sweep: str | None = None) -> str:
    return VIEW_KEY if sweep is None else f"{VIEW_KEY}-{sweep}"


def view_tag(sweep: str | None = None, now_ms: int | None = None) -> tuple[str, str]:
    """The experiment tag (key, value) of edgebench's runs-table view; a sweep's view shows only its runs, most
    accurate first (its child runs listed, not folded under the parent)."""
    fixed = ["attributes.`Run Name`", "runDateAndNestInfo", "duration"]  # the table's own first columns
    state: dict[str, Any] = {"selectedColumns": VIEW_COLUMNS,  # in this order, wide enough for a name and a figure
                             "columnOrder": fixed + VIEW_COLUMNS,  # (MLflow applies the widths of ordered columns)
                             "columnWidths": {fixed[0]: 260, **{c: 110 if c.startswith("metrics.") else 100
                                                                for c in VIEW_COLUMNS}}}  # 1,533 px in all
    name = "edgebench: accuracy, size, latency, fit"
    if sweep is not None:
        state.update(searchFilter=f"tags.sweep_id = '{sweep}'", orderByKey="metrics.`test/acc`", orderByAsc=False)
        name = f"edgebench sweep {sweep}"
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = json.dumps({"name": name, "createdAt": now_ms, "updatedAt": now_ms, "state": json.dumps(state)})
    return VIEW_TAG + view_key(sweep), value


def ui_page(base: str, experiment_id: str, sweep: str | None = None) -> str:
    """The experiment's runs table in the MLflow UI at ``base``, in edgebench's view (:func:`view_tag`); with
    ``sweep``, only that sweep's runs, most accurate first. MLflow 3.17's UI opens an experiment on the page of the
    sidebar's "GenAI / Model training" switch (kept per browser, GenAI by default), not on the experiment's
    ``mlflow.experimentKind``, so the link names the workflow as well."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={view_key(sweep)}" \
           "&workflowType=machine_learning"


def share_view(client, experiment_id: str, sweep: str | None = None) -> None:
    """Set the view's tag on the experiment unless it is there with the same state (a write per change, not per run)."""
    key, value = view_tag(sweep)
    tags = client.get_experiment(experiment_id).tags
    if key in tags:
        try:
            if json.loads(tags[key])["state"] == json.loads(value)["state"]:
                return
        except (ValueError, KeyError, TypeError):
            pass
    client.set_experiment_tag(experiment_id, key, value)


def check_store(uri: str, must_exist: bool = False,
                hint: str = "run `python -m edgebench` first or pass --tracking-uri") -> None:
    """Refuse, in one line naming the file, a ``sqlite:///`` store that is not an MLflow store.

    Raises :class:`edgebench.config.ConfigError` when the file is not an SQLite database (random bytes, a
    truncated copy) or is an SQLite database of something else, and, with ``must_exist``, when it is missing.
    A missing or empty file is otherwise fine: MLflow creates its schema there. Other URIs are not checked.
    """
    import sqlite3

    from edgebench.config import ConfigError

    db = sqlite_path(uri)
    if db is None:
        return
    if not db.exists():
        if must_exist:
            raise ConfigError(f"no MLflow store at {db}; {hint}")
        return
    import shlex

    what = ("move it aside (e.g. `mv {0} {1}`) or point paths.mlflow_tracking_uri (python -m edgebench) / "
            "--tracking-uri (edgebench.report, edgebench.ui) at another store").format(shlex.quote(str(db)),
                                                                                      shlex.quote(f"{db}.bad"))
    try:
        with open(db, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise ConfigError(f"MLflow store {db} cannot be read ({e.strerror}); {what}") from None
    if not head:
        return  # empty: a new store
    if head != SQLITE_HEADER:
        raise ConfigError(f"{db} is not an MLflow store (not an SQLite database); {what}")
    damaged = (f"MLflow store {db} is damaged ({{}}); {what}; `sqlite3 {db} .recover | sqlite3 {db}.recovered` "
               "saves the runs that can still be read")
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            # every page of the tables and indexes (a page overwritten with garbage, a bad sector): a fraction of a
            # second for a store of thousands of runs, and one line here instead of SQLAlchemy's traceback later
            problems = [r[0] for r in con.execute("PRAGMA quick_check(3)")] if tables else ["ok"]
        finally:
            con.close()
    except sqlite3.OperationalError as e:
        if "locked" in str(e):  # a sweep job is writing: it is a database, MLflow's retries handle the rest
            return
        raise ConfigError(f"{db} is not an MLflow store ({e}); {what}") from None
    except sqlite3.DatabaseError as e:
        if "malformed" in str(e):
            raise ConfigError(damaged.format(e)) from None
        raise ConfigError(f"{db} is not an MLflow store ({e}); {what}") from None
    if problems != ["ok"]:
        found = [" ".join(p.replace("*** in database main ***", "").split())[:120] for p in problems]
        raise ConfigError(damaged.format("SQLite's quick_check: " + "; ".join(f for f in found if f)))
    if tables and "experiments" not in tables:
        raise ConfigError(f"{db} is not an MLflow store (an SQLite database without MLflow's tables: "
                          f"{', '.join(sorted(tables)[:5])}); {what}")


def require_store(uri: str, hint: str = "run `python -m edgebench` first or pass --tracking-uri") -> None:
    """For the command-line readers (report, ui): exit with :func:`check_store`'s one-line message when the
    store is missing (instead of creating an empty one) or is not an MLflow store."""
    from edgebench.config import ConfigError

    try:
        check_store(uri, must_exist=True, hint=hint)
    except ConfigError as e:
        raise SystemExit(str(e)) from None


def ui_command(uri: str, artifact_dir: str, experiment_id: str | None = None) -> str:
    """The command that opens the MLflow UI on this store (``python -m edgebench.ui``, bound to 127.0.0.1), its paths
    quoted for a POSIX
    shell (``shlex.quote``): pasted, a path with spaces stays one word and ``$(...)`` in it never runs; with
    ``experiment_id``, and the page of its runs table to browse to (:func:`ui_page`)."""
    import shlex

    if sqlite_path(uri) is None:
        return f"open {ui_page(uri, experiment_id) if experiment_id is not None else uri} in a browser (tracking server)"
    # edgebench's launcher (one worker, no GenAI job runner: up in seconds, 2 processes instead of 15)
    cmd = (f"python -m edgebench.ui --tracking-uri {shlex.quote(uri)} --artifact-dir "
           f"{shlex.quote(str(Path(artifact_dir).absolute()))} --port 5000")
    return cmd if experiment_id is None else f"{cmd}\n  and browse to {ui_page('http://127.0.0.1:5000', experiment_id)}"


def deployable_location(client, run_id: str, filename: str) -> str | None:
    """Where the run's deployable file ``filename`` lies in MLflow's artifact store: its local path when the store
    is a folder (in the run's LoggedModel, else under the run's ``model/`` artifacts), else the URI of the folder
    that holds it; None when the run logged no such file."""
    from urllib.parse import unquote, urlparse

    run = client.get_run(run_id)
    roots = [m.artifact_location for m in client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")]
    roots.append(f"{run.info.artifact_uri.rstrip('/')}/model")
    for root in roots:
        url = urlparse(root)
        if url.scheme not in ("", "file"):
            return root
        found = sorted(Path(unquote(url.path)).rglob(filename))
        if found:
            return str(found[0])
    return None


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


HOST_TAG, PID_TAG, PID_START_TAG = "edgebench.host", "edgebench.pid", "edgebench.pid_start"
# The top-level run this process opened last (the run the user started; named when the process is interrupted).
# A method's child runs (tag edgebench.child=true: a chain's steps, lottery levels, trained teachers) never set it:
# after Ctrl-C in step 1 of a chain, the finished step-0 child is not the run that was killed.
LAST_RUN_ID: str | None = None
LAST_STORE: Path | None = None  # the SQLite file of the store this process opened last (named when its disk is full)


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _process_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # exited, not yet reaped by its parent (a killed sweep launcher, say)
    except (OSError, IndexError):
        pass
    now = _start_time(pid)
    return started is None or now is None or now == started


def process_alive(host: str | None, pid: int | str | None, started: str | None) -> bool:
    """Whether the process ``pid`` (started at ``started``) on ``host`` still runs. A process of another host cannot
    be seen from here and counts as alive."""
    if pid in (None, ""):
        return False
    if host and host != socket.gethostname():
        return True
    return _process_alive(int(pid), started or None)


# A run made inside a Ray task records its Ray node and task, so that on a cluster a later job can tell that the
# process of a RUNNING run on another machine is gone: Ray retries a task only after its attempt died, keeping the
# task id; and a node Ray has marked dead runs nothing.
RAY_NODE_TAG, RAY_TASK_TAG = "edgebench.ray.node", "edgebench.ray.task"


def _ray_context() -> dict[str, str]:
    """This process's Ray node and task ids when it runs inside a Ray task (Hydra's Ray launcher), else {}."""
    ray = sys.modules.get("ray")  # never imports Ray: a job under Ray has it imported already
    try:
        if ray is None or not ray.is_initialized():
            return {}
        ctx = ray.get_runtime_context()
        task = ctx.get_task_id()
        return {RAY_NODE_TAG: ctx.get_node_id(), **({RAY_TASK_TAG: task} if task else {})}
    except Exception:  # an old Ray, or a driver rather than a task
        return {}


def _ray_node_dead(node: str) -> bool:
    """Whether Ray (initialised in this process) has marked the node ``node`` dead."""
    try:
        return any(n.get("NodeID") == node and not n.get("Alive") for n in sys.modules["ray"].nodes())
    except Exception:
        return False


def run_process_alive(run) -> bool:
    """Whether the process that a RUNNING run's tags name (:func:`process_tags`) still runs. Inside a Ray task a run
    of another machine is dead when it is an earlier attempt of this very task (Ray retried it) or when its node is
    dead; elsewhere such a run counts as alive, as any run of another host."""
    tags = run.data.tags
    here = _ray_context()
    if here and tags.get(RAY_NODE_TAG):
        if tags.get(RAY_TASK_TAG) and tags.get(RAY_TASK_TAG) == here.get(RAY_TASK_TAG):
            return False
        if _ray_node_dead(tags[RAY_NODE_TAG]):
            return False
    return process_alive(tags.get(HOST_TAG), tags.get(PID_TAG), tags.get(PID_START_TAG))


# Parent tag LAUNCHER_TAG.<host>.<pid>.<start> = JSON {host, pid, start, sweep_dir, ended}: every launch of the sweep
# since its parent was last (re)opened with no other launch alive. Only the last live launcher closes the parent.
LAUNCHER_TAG = "sweep.launcher"


def launcher_entry(sweep_dir: str | Path, ended: bool = False) -> tuple[str, dict[str, Any]]:
    """This process as a launcher of a sweep: its parent tag's key and value."""
    tags = process_tags()
    entry = {"host": tags[HOST_TAG], "pid": int(tags[PID_TAG]), "start": tags[PID_START_TAG],
             "sweep_dir": str(Path(sweep_dir).resolve()), "ended": ended}
    return f"{LAUNCHER_TAG}.{entry['host']}.{entry['pid']}.{entry['start']}", entry


def launchers(tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The launcher entries recorded on a parent run's tags."""
    out = {}
    for k, v in tags.items():
        if k.startswith(LAUNCHER_TAG + "."):
            try:
                out[k] = json.loads(v)
            except ValueError:
                continue
    return out


def live_launchers(tags: dict[str, str], but: str | None = None) -> list[dict[str, Any]]:
    """The launchers of a parent run (its tags) that have not ended and whose process still runs (other than ``but``)."""
    return [e for k, e in launchers(tags).items()
            if k != but and not e.get("ended") and process_alive(e.get("host"), e.get("pid"), e.get("start"))]


@contextmanager
def claim_lock(uri: str) -> Iterator[None]:
    """Held while a job checks for a finished or running run of its config and creates its own (and while a sweep
    launcher finds, joins or closes its parent run): a file lock next to a ``sqlite:///`` store, so two launches of
    one sweep never both claim a job. A tracking server has no shared folder: nothing is held there (the check and
    the creation follow each other closely but are not atomic)."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with locks.held(str(db) + ".claims.lock", "the claims of the runs in", db):
        yield


def process_tags() -> dict[str, str]:
    """Where this run's process lives, so a later launch can tell that a RUNNING run's process died."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), PID_START_TAG: _start_time(os.getpid()) or "",
            **_ray_context()}


def source_tags() -> dict[str, str]:
    """MLflow's standard source tags (the UI's Source and User columns); client-created runs get none by default."""
    import getpass
    import sys

    sha = git_sha()
    command = "python -m edgebench " + " ".join(sys.argv[1:])
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": command[:500].strip(), "mlflow.user": getpass.getuser()}
    if sha != "unknown":
        tags["mlflow.source.git.commit"] = sha
    return tags


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
CANNOT_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS)
MOVE_RESULTS = "point paths.results_dir (the runs, the cache, mlflow.db) at another folder"


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _file_in_traceback(err: BaseException) -> str | None:
    """The file being written where ``err`` was raised (``f.write`` raises ENOSPC without a file name): the
    innermost frame holding an open file object with a name."""
    frames = []
    tb = err.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in list(frame.f_locals.values()):
            name = getattr(value, "name", None)
            if isinstance(name, str) and hasattr(value, "write") and os.path.isabs(name):
                return name
    return None


def fault_message(e: BaseException, db: Path | None = None) -> str | None:
    """One line for a fault of the machine a run cannot get past (a full disk, a folder it cannot write, a file
    where a folder should be), naming the path and the fix; None for anything else. ``db``: the SQLite store, named
    when SQLite itself reports the disk full."""
    for err in _chain(e):
        if isinstance(err, OSError) and err.errno is not None:
            path = err.filename or _file_in_traceback(err) or db or LAST_STORE or "?"
            if err.errno in NO_SPACE:
                return (f"no space left on the disk of {path} ({err.strerror}); free space there or {MOVE_RESULTS} "
                        "on another disk")
            if err.errno in CANNOT_WRITE:  # no permission, or a read-only file system
                return f"{path}: {err.strerror}; give this user access to it (write, for results) or {MOVE_RESULTS}"
            if err.errno == errno.ENOTDIR or (err.errno == errno.EEXIST and Path(path).is_file()):
                blocker = next((p for p in [Path(path), *Path(path).parents] if p.is_file()), Path(path))
                return (f"cannot make {path}: {blocker} is a file where a folder should be ({err.strerror}); move it "
                        f"aside or {MOVE_RESULTS}")
        if "database or disk is full" in str(err):  # SQLite (through SQLAlchemy): the store's disk
            db = db or LAST_STORE
            return (f"no space left on the disk of {db or 'the MLflow store'} (SQLite: database or disk is full); "
                    f"free space there or {MOVE_RESULTS} on another disk")
    return None


RESERVE_BYTES = 1 << 20  # kept free beside a SQLite store during a run: what closing the run needs when the disk fills


def _locked(e: Exception) -> bool:
    return "database is locked" in str(e) or "database table is locked" in str(e)


class RetryingClient:
    """An ``MlflowClient`` whose calls are retried (with jittered backoff) while SQLite reports the
    database locked: parallel jobs of a sweep write to one SQLite file."""

    def __init__(self, client, attempts: int = 10, delay_s: float = 0.1):
        self._client, self._attempts, self._delay = client, attempts, delay_s

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            for attempt in range(self._attempts):
                try:
                    return attr(*args, **kwargs)
                except Exception as e:
                    if not _locked(e) or attempt == self._attempts - 1:
                        raise
                    log.debug("MLflow store locked (%s); retry %d", name, attempt + 1)
                    time.sleep(self._delay * 2 ** min(attempt, 5) * (1 + random.random()))

        return call


def schema_template() -> Path:
    """An empty MLflow SQLite store with this MLflow's schema, made once per MLflow version in the user's cache
    (``$XDG_CACHE_HOME/edgebench``, else ``~/.cache/edgebench``): MLflow builds a new store by running its whole
    chain of schema migrations, seconds every time, where a copy of the result takes milliseconds. It holds no
    experiment: MLflow adds its Default experiment, with this store's own artifact location, on first open."""
    import shutil
    import sqlite3
    import tempfile

    import mlflow
    from mlflow.tracking import MlflowClient

    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgebench"
    template = home / f"mlflow-{mlflow.__version__}-schema.db"
    if template.exists():
        return template
    home.mkdir(parents=True, exist_ok=True)
    with locks.held(str(template) + ".lock", "the MLflow schema template", template):
        if not template.exists():
            with tempfile.TemporaryDirectory(dir=home) as tmp:
                db = Path(tmp) / "schema.db"
                MlflowClient(f"sqlite:///{db}").search_experiments()  # runs the migrations
                con = sqlite3.connect(db)
                with con:
                    con.execute("DELETE FROM experiment_tags")
                    con.execute("DELETE FROM experiments")
                con.close()
                shutil.copyfile(db, Path(tmp) / "done.db")
                os.replace(Path(tmp) / "done.db", template)
    return template


def new_store(db: Path) -> None:
    """Start a new local store ``db`` as a copy of :func:`schema_template` (falling back to MLflow's own
    migrations when the cache cannot be written)."""
    import shutil

    try:
        template = schema_template()
    except OSError as e:  # a read-only home: MLflow migrates the new store itself
        log.debug("no MLflow schema template (%s); MLflow creates the store", e)
        return
    tmp = db.with_name(db.name + ".new")
    shutil.copyfile(template, tmp)
    os.replace(tmp, db)


class Tracker:
    """One MLflow experiment in one store; opens runs."""

    def __init__(self, tracking_uri: str, artifact_dir: str | None, experiment_name: str):
        _quiet_mlflow()
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.artifact_dir = artifact_dir
        check_store(tracking_uri)  # a file that is not an MLflow store: one line naming it, not SQLAlchemy's traceback
        db = sqlite_path(tracking_uri)
        if db is not None:
            global LAST_STORE
            LAST_STORE = db
            db.parent.mkdir(parents=True, exist_ok=True)
            # Creating the schema and the experiment once, under a lock: parallel jobs race otherwise.
            with locks.held(str(db) + ".lock", "the MLflow store's schema and experiment in", db):
                if not db.exists():
                    new_store(db)
                self.client = RetryingClient(MlflowClient(tracking_uri))
                self.experiment_id = self._experiment(experiment_name, artifact_dir)
        else:  # a tracking server owns its artifact store
            self.client = RetryingClient(MlflowClient(tracking_uri))
            self.experiment_id = self._experiment(experiment_name, None)

    def _experiment(self, name: str, artifact_dir: str | None) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if EXPERIMENT_KIND_TAG not in exp.tags:  # made before edgebench set the kind
                self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            share_view(self.client, exp.experiment_id)  # made before the view, or by an older edgebench
            return exp.experiment_id
        location = None
        if artifact_dir is not None:
            Path(artifact_dir).mkdir(parents=True, exist_ok=True)
            location = Path(artifact_dir).resolve().as_uri()
        return self.client.create_experiment(name, artifact_location=location,
                                             tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, **dict([view_tag()])})

    def search(self, filter_string: str, max_results: int = 5000) -> list:
        """Runs of this experiment matching an MLflow filter, newest first."""
        return self.client.search_runs([self.experiment_id], filter_string, max_results=max_results,
                                       order_by=["attributes.start_time DESC"])

    def attach(self, run_id: str) -> "Run":
        return Run(self.client, run_id)

    def kill_runs_of(self, pids, reason: str) -> list[str]:
        """End KILLED with ``reason`` the RUNNING runs (child runs too) of this experiment that processes ``pids`` of
        this host opened and left open because they were killed (they no longer run)."""
        pids = {str(p) for p in pids}
        if not pids:
            return []
        killed = []
        for r in self.search(f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{socket.gethostname()}'"):
            if r.data.tags.get(PID_TAG) in pids and not run_process_alive(r):
                Run(self.client, r.info.run_id).end("KILLED", reason)
                killed.append(r.info.run_id)
        return killed

    def reap_dead_runs(self) -> list[str]:
        """Mark FAILED the RUNNING runs of this experiment whose process on this host is gone (SIGKILL, power loss).

        Every run records ``edgebench.host``, ``edgebench.pid`` and the process's start time; a run
        still RUNNING whose process no longer exists cannot finish. Runs of other hosts are left alone, but inside a
        Ray task those of a dead Ray node or of an earlier attempt of this task (:func:`run_process_alive`). The disk
        reserve (``mlflow.db.reserve-<pid>``, see :meth:`run`) a killed process left beside the store is removed.
        """
        host = socket.gethostname()
        reaped = []
        mine = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
        found = self.search(mine)
        if _ray_context():  # inside a Ray task: the RUNNING runs of the cluster's other machines too
            seen = {r.info.run_id for r in found}
            found += [r for r in self.search(f"attributes.status = 'RUNNING' and tags.`{RAY_NODE_TAG}` != ''")
                      if r.info.run_id not in seen]
        for r in found:
            pid, started = r.data.tags.get(PID_TAG), r.data.tags.get(PID_START_TAG)
            if pid is None or run_process_alive(r):
                continue
            if live_launchers(r.data.tags):  # a sweep's parent that another launch of the sweep still runs
                continue
            where = f"{r.data.tags.get(HOST_TAG, host)} pid {pid}" + (
                f", Ray node {r.data.tags[RAY_NODE_TAG][:12]}" if r.data.tags.get(RAY_NODE_TAG) else "")
            reason = (f"the process that ran it ({where}) is gone: killed (e.g. SIGKILL, out of memory or its node "
                      "lost) before it could close the run; marked FAILED by a later launch")
            Run(self.client, r.info.run_id).end("FAILED", reason)
            log.warning("run %s (%s) was left RUNNING by a dead process; marked FAILED", r.info.run_id,
                        r.info.run_name)
            reaped.append(r.info.run_id)
        db = sqlite_path(self.uri)
        for left in db.parent.glob(f"{db.name}.reserve-*") if db is not None else ():  # of killed processes
            pid = left.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _process_alive(int(pid), None):
                left.unlink(missing_ok=True)
        return reaped

    @contextmanager
    def run(self, run_name: str, tags: dict[str, str]) -> Iterator["Run"]:
        """A run: FINISHED when the block ends, KILLED on Ctrl-C / SIGTERM, FAILED with ``status_reason`` on an
        exception (a full disk: "no space left on the disk of <path>"). A top-level run keeps
        :data:`RESERVE_BYTES` free beside a SQLite store while it runs, given back when the disk fills, so the
        run can still be closed as FAILED instead of staying RUNNING."""
        global LAST_RUN_ID
        mlrun = self.client.create_run(self.experiment_id, run_name=run_name,
                                       tags={**source_tags(), **process_tags(), **tags})
        run = Run(self.client, mlrun.info.run_id)
        top = tags.get("edgebench.child") != "true"
        if top:
            LAST_RUN_ID = run.run_id
            self._reserve_space()
        try:
            yield run
        except KeyboardInterrupt:
            from edgebench import signals

            self._end(run, "KILLED", signals.reason())
            raise
        except BaseException as e:
            self._end(run, "FAILED", fault_message(e, sqlite_path(self.uri)) or f"{type(e).__name__}: {e}")
            raise
        else:
            self._end(run, "FINISHED")
        finally:
            if top:
                self._free_reserve()

    def _reserve_path(self) -> Path | None:
        db = sqlite_path(self.uri)
        return None if db is None else db.with_name(f"{db.name}.reserve-{os.getpid()}")

    def _reserve_space(self) -> None:
        path = self._reserve_path()
        if path is None:
            return
        try:
            with open(path, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, RESERVE_BYTES)
        except (OSError, AttributeError):  # the disk is already that full, or no fallocate: no reserve
            path.unlink(missing_ok=True)

    def _free_reserve(self) -> None:
        path = self._reserve_path()
        if path is not None:
            path.unlink(missing_ok=True)

    def _end(self, run: "Run", status: str, reason: str | None = None) -> None:
        """Close ``run``; when the store's disk is full, give back the reserve and try again. A run that still
        cannot be closed is named in a warning (a later launch marks it FAILED), never in a second traceback."""
        for attempt in range(2):
            try:
                run.end(status, reason)
                return
            except Exception as e:  # noqa: BLE001
                if attempt == 0 and fault_message(e, sqlite_path(self.uri)) is not None:
                    self._free_reserve()
                    continue
                log.warning("run %s could not be marked %s (%s); a later launch marks it FAILED", run.run_id,
                            status, fault_message(e, sqlite_path(self.uri)) or f"{type(e).__name__}: {e}")
                if status == "FINISHED":
                    raise
                return


def run_model_id(client, run_id: str) -> str | None:
    """The ``model_id`` of the LoggedModel a run logged (:meth:`Run.log_model`: its deployable); None for a run
    without one (a child run, a run of an edgebench before LoggedModels)."""
    outputs = client.get_run(run_id).outputs
    return outputs.model_outputs[-1].model_id if outputs and outputs.model_outputs else None


def download_model_file(client, run_id: str, path: str, dst: str | Path) -> Path:
    """A file of the run's LoggedModel (``model.onnx``, ``artifacts/model.tflite``) downloaded into ``dst``.

    Read through the model's own artifact location: MLflow 3.17 resolves a run's model artifacts
    (``client.download_artifacts(run_id, "model/...")``, ``models:/`` URIs) against the process-global
    tracking URI, not the client's store."""
    import mlflow.artifacts

    model_id = run_model_id(client, run_id)
    if model_id is None:
        raise ValueError(f"run {run_id} logged no model")
    location = client.get_logged_model(model_id).artifact_location
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/{path}", dst_path=str(dst)))


class Run:
    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0, model_id: str | None = None) -> None:
        """Log finite numeric metrics in one batch; a metric that does not apply is simply absent. With
        ``model_id`` (:meth:`log_model`) they are the LoggedModel's metrics as well as the run's."""

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = []
        for k, v in metrics.items():
            if v is None:
                continue
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"metric {k} is {v}: refusing to log a non-finite value")
            items.append(Metric(k, v, now, step, model_id=model_id))
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_dict(self, d: dict, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, d, artifact_file)

    def log_artifact(self, local_file: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local_file), artifact_path or None)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def log_model(self, artifact, example: "torch.Tensor", name: str, tags: dict[str, str] | None = None) -> str:
        """Log the deployable ``artifact`` (an :class:`edgebench.export.Artifact`) as an MLflow 3 LoggedModel of
        this run, in MLflow's model format (:mod:`edgebench.export.mlflow_flavour`: ONNX through ``mlflow.onnx``,
        a ``.tflite`` or program as a pyfunc model that runs the file), with a signature and ``example`` as its
        input example. Returns its ``model_id``: ``mlflow.pyfunc.load_model(f"models:/{model_id}")`` loads it,
        ``mlflow.register_model`` registers it; metrics logged with it (:meth:`log_metrics`) rank it in
        ``mlflow.search_logged_models``. Through the client, not the fluent API: no process-global run."""
        import tempfile

        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model

        from edgebench.export import mlflow_flavour

        # the run's params and source tags (the command, git commit, user: the Models tab's "Logged from") are the
        # model's too, as with MLflow's own log_model
        run = self.client.get_run(self.run_id)
        source = {k: v for k, v in run.data.tags.items() if k.startswith("mlflow.source.") or k == "mlflow.user"}
        model = self.client.create_logged_model(run.info.experiment_id, name=name, source_run_id=self.run_id,
                                                tags={**source, **(tags or {})}, params=run.data.params,
                                                model_type=artifact.format)
        try:
            with tempfile.TemporaryDirectory(prefix="edgebench-model-") as tmp:
                mlflow_model = Model(artifact_path=model.artifact_location, model_uuid=model.model_id,
                                     run_id=self.run_id, model_id=model.model_id)
                mlflow_flavour.save_model(artifact, example, Path(tmp) / "model", mlflow_model)
                self.client.log_model_artifacts(model.model_id, str(Path(tmp) / "model"))
            self.client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step=0)])
        except BaseException:
            with suppress(Exception):  # the first error is the one to report (a full disk fails this too)
                self.client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            raise
        self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        return model.model_id

    def log_dataset(self, features, targets, name: str, source: str, context: str) -> None:
        """Record a data set the run used (the UI's Dataset column; ``mlflow.log_input`` for a client run)."""
        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": a local path either way
            warnings.simplefilter("ignore")
            ds = mlflow.data.from_numpy(features, targets=targets, source=source, name=name)
        inputs = [DatasetInput(ds._to_mlflow_entity(), [InputTag("mlflow.data.context", context)])]
        for attempt in range(5):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except Exception as e:  # parallel jobs registering the same data set at once: the loser retries
                if "UNIQUE constraint failed" not in str(e) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def end(self, status: str, reason: str | None = None) -> None:
        try:
            if reason:
                self.client.set_tag(self.run_id, "status_reason", reason[:5000])
        finally:
            self.client.set_terminated(self.run_id, status)
