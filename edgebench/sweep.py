"""Sweeps: one MLflow parent run per Hydra multirun, a stable sweep id, and resuming finished jobs.

``SweepCallback`` (registered in conf/hydra/default.yaml) runs in the launching process:

* before any job starts it opens the store and experiment once and creates the parent run (or
  reopens the parent of an earlier launch of the same sweep), and writes ``sweep.json`` into the
  sweep folder; every job reads it (``job_context``) and becomes a child run (``mlflow.parentRunId``);
* after the last job it counts the children by status, logs ``sweep/*`` and closes the parent.

The sweep id is a hash of the experiment and the multirun's overrides, so launching the same
sweep again finds the same parent; with ``resume`` (the default in a multirun) a job whose config
already has a FINISHED run in the experiment is skipped, and a job that failed runs again.

Two launches of the same sweep at once share the parent: a job whose config has a FINISHED run, or a
RUNNING one in a live process, is skipped (checked and claimed under a lock next to the SQLite store),
and the parent records its launchers (``sweep.launcher.*``), so only the last one to end closes it.
Every job composes its config from a copy of the config folders made at launch (``.conf_snapshot`` in
the sweep folder; its digest is the tag ``conf_digest``), so editing ``conf/`` mid-sweep changes no job.
A job in a worker process (joblib/loky) watches its launcher and ends KILLED, and the worker exits, when
the launcher is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from edgebench import naming
from edgebench.naming import PARENT_TAG, REUSED_TAG, swept_from_overrides  # noqa: F401 (sweep.PARENT_TAG stays)
from edgebench.record import SWEEP_FILE, conf_tags, config_hash, job_context, replicate_group  # noqa: F401
from edgebench.store import digest
from edgebench.tracking import launcher_entry, launchers, live_launchers

log = logging.getLogger(__name__)

# Run identity (config_hash, replicate_group, job_context, conf_tags) lives in edgebench.record; imported above for
# this module's own use and for callers that still name edgebench.sweep.


def sweep_id(experiment: str, overrides: list[str]) -> str:
    """``sw-`` and 10 hex characters of the :func:`edgebench.store.digest` of the experiment and the overrides."""
    return "sw-" + digest([experiment, sorted(overrides)])[:10]




def swept_keys(config: DictConfig, overrides: list[str]) -> list[str]:
    """The keys a multirun varies: overrides with several values, and the sweeper's own params."""
    keys = swept_from_overrides(overrides)
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return keys + [str(k) for k in params if str(k) not in keys]


def record_failure(error: BaseException) -> bool:
    """In a sweep job, note the failure in the sweep folder (``failed/<job>.txt``) and return True."""
    ctx = job_context()
    if ctx is None:
        return False
    folder = Path(ctx["sweep_dir"]) / "failed"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{ctx['job_num']}.txt").write_text(f"{type(error).__name__}: {error}\n")
    return True


# Set by SweepCallback.on_multirun_end when jobs failed (Hydra turns exceptions raised in callbacks into
# warnings, so ``edgebench.__main__`` reads this after the sweep and exits non-zero).
LAST_FAILURE: str | None = None


# The sweep this process launched and has not closed yet (closed as KILLED when it is interrupted).
ACTIVE: dict[str, Any] = {}

def _leave(tracker, parent_id: str, key: str, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Mark this launcher ended on the parent run; the launchers still alive (they close it)."""
    tracker.client.set_tag(parent_id, key, json.dumps({**entry, "ended": True}))
    return live_launchers(tracker.client.get_run(parent_id).data.tags, but=key)


def close_interrupted_sweep() -> str | None:
    """Mark the parent run of the sweep this process launched KILLED (on Ctrl-C or SIGTERM), and the runs its
    workers left open when joblib killed them (:data:`edgebench.signals.children`); its sweep id. While
    another launch of the same sweep still runs, the parent stays open for it (and None is returned)."""
    if not ACTIVE:
        return None
    from edgebench import signals
    from edgebench.tracking import claim_lock

    tracker = ACTIVE["tracker"]
    # a joblib launcher's workers were SIGKILLed as the interruption reached joblib: their runs end KILLED here
    tracker.kill_runs_of(signals.children, signals.reason())
    with claim_lock(tracker.uri):
        others = _leave(tracker, ACTIVE["parent_run_id"], *ACTIVE["launcher"])
        if not others:
            tracker.attach(ACTIVE["parent_run_id"]).end("KILLED", signals.reason())
    sid = ACTIVE["sweep_id"]
    ACTIVE.clear()
    return None if others else sid


CONF_SNAPSHOT = ".conf_snapshot"  # in the sweep folder: the config folders every job of the sweep composes from


def _folder_digest(folders: list[Path]) -> str:
    """The digest of the files (relative paths and bytes) of ``folders``, in order."""
    files = {}
    for i, folder in enumerate(folders):
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                files[f"{i}/{f.relative_to(folder).as_posix()}"] = hashlib.sha256(f.read_bytes()).hexdigest()
    return digest(files)


def snapshot_config(config: DictConfig, sweep_dir: Path) -> dict[str, Any] | None:
    """Copy the config folders of this multirun into the sweep folder and compose every job from the copies.

    Hydra composes each job's config when the job starts (``load_sweep_config``, in the launcher or in a worker)
    from its config search path, so an edit of ``conf/`` during a sweep would change the jobs that start later.
    Here every folder of the search path (``conf/``, ``--config-dir``, ``hydra.searchpath`` entries; packages'
    configs are not copied) is copied to ``<sweep dir>/.conf_snapshot/<n>`` and the launching Hydra's search path
    is pointed at the copies before the sweeper starts; the launchers hand that search path to every job (joblib
    and Ray pickle it). Returns ``{"conf_digest", "conf_snapshot"}`` for sweep.json, or None without Hydra."""
    try:
        from hydra.core.global_hydra import GlobalHydra

        loader = GlobalHydra.instance().hydra.config_loader  # type: ignore[union-attr]
        search_path = loader.get_search_path()
    except Exception:  # not launched by Hydra's runtime
        return None
    sources = [str(s.path) for s in OmegaConf.select(config, "hydra.runtime.config_sources") or []
               if s.schema == "file" and Path(str(s.path)).is_dir()]
    root = sweep_dir / CONF_SNAPSHOT
    if root.exists():
        shutil.rmtree(root)
    copies: dict[str, Path] = {}  # by the real path of the folder
    for src in dict.fromkeys(os.path.realpath(s) for s in sources):
        copies[src] = shutil.copytree(src, root / str(len(copies)),
                                      ignore=shutil.ignore_patterns("__pycache__", "*.pyc")).resolve()
    elements = search_path.get_path()
    known = set()
    for el in elements:
        path = str(el.path)
        plain = path[len("file://"):] if path.startswith("file://") else path if "://" not in path else None
        if plain is not None and os.path.realpath(plain) in copies:
            el.path = f"file://{copies[os.path.realpath(plain)]}"
            known.add(os.path.realpath(plain))
    # folders added by hydra.searchpath (recomputed for every job): their copies go ahead of them
    extra = [src for src in copies if src not in known]
    at = next((i for i, el in enumerate(elements) if el.provider == "schema"), len(elements))
    for src in reversed(extra):
        elements.insert(at, type(elements[0])("edgebench conf snapshot", f"file://{copies[src]}"))
    loader.repository.initialize_sources(search_path)  # the sources are made from the search path once, up front
    conf_digest = _folder_digest([copies[s] for s in copies])
    log.info("sweep: every job composes its config from %s (digest %s)", root, conf_digest)
    return {"conf_digest": conf_digest, "conf_snapshot": str(root.resolve())}


LAUNCHER_GONE: str | None = None  # set in a worker whose sweep launcher died: the reason its run was ended
_WATCHED: tuple[int, str] | None = None
_IN_JOB = threading.Event()  # set while this process runs a sweep job (between on_job_start and on_job_end)


def watch_launcher(ctx: dict[str, Any] | None, interval_s: float = 1.0, grace_s: float = 10.0) -> bool:
    """In a sweep job that runs in a process other than its launcher (a joblib/loky worker), a daemon thread
    that polls the launcher's liveness; when it is gone (SIGKILL, out of memory) the job's run ends KILLED with
    the reason "the sweep's launcher (pid N) is gone" (SIGTERM to this process, see :mod:`edgebench.signals`) and
    the process exits (at the latest ``grace_s`` later). True when a watchdog runs (started now or before)."""
    global _WATCHED
    from edgebench import signals
    from edgebench.tracking import process_alive

    launcher = (ctx or {}).get("launcher")
    if not launcher or int(launcher["pid"]) == os.getpid():
        return False
    import socket

    if launcher.get("host") != socket.gethostname():  # a remote worker cannot see the launcher's process
        return False
    pid, start = int(launcher["pid"]), str(launcher.get("start") or "")
    if _WATCHED == (pid, start):
        return True
    if threading.current_thread() is threading.main_thread():
        signals.install()  # a worker process never ran edgebench's main: SIGTERM must close the run as KILLED

    def watch() -> None:
        global LAUNCHER_GONE
        while process_alive(None, pid, start):
            time.sleep(interval_s)
        if not _IN_JOB.is_set():  # an idle worker: nothing to close
            os._exit(0)
        LAUNCHER_GONE = f"the sweep's launcher (pid {pid}) is gone"
        log.error("%s: ending this job (pid %d) as KILLED", LAUNCHER_GONE, os.getpid())
        signals.interrupt(LAUNCHER_GONE)
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="edgebench-launcher-watchdog", daemon=True).start()
    _WATCHED = (pid, start)
    return True


class SweepCallback(Callback):
    def _tracker(self, config: DictConfig):
        from edgebench.tracking import Tracker

        paths = config.paths
        return Tracker(str(paths.mlflow_tracking_uri), str(paths.mlflow_artifact_dir), str(config.experiment_name))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from edgebench.tracking import claim_lock, process_tags, share_view, source_tags

        overrides = list(OmegaConf.select(config, "hydra.overrides.task") or [])
        sid = sweep_id(str(config.experiment_name), overrides)
        swept = swept_keys(config, overrides)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        conf = snapshot_config(config, sweep_dir)  # every job composes its config from conf/ as it is now
        tracker = self._tracker(config)
        key, entry = launcher_entry(sweep_dir)
        with claim_lock(tracker.uri):  # two launches of one sweep at once share one parent
            found = tracker.search(f"tags.`{PARENT_TAG}` = '{sid}'")
            others: list[dict[str, Any]] = []
            if found:
                parent_id = found[0].info.run_id
                others = live_launchers(found[0].data.tags) if found[0].info.status == "RUNNING" else []
                if others:
                    log.info("sweep %s: joining parent run %s, which launcher pid %s also runs; jobs running or "
                             "finished there are skipped here", sid, parent_id, others[0]["pid"])
                else:  # reopened: the launches of earlier attempts no longer count
                    for old in launchers(found[0].data.tags):
                        tracker.client.delete_tag(parent_id, old)
                    tracker.client.update_run(parent_id, status="RUNNING")
                    log.info("sweep %s: continuing in parent run %s", sid, parent_id)
            else:
                tags = {PARENT_TAG: sid, "sweep_id": sid, "method": "sweep",
                        "sweep.overrides": " ".join(overrides)[:5000], "sweep.swept_keys": " ".join(swept)[:5000]}
                parent_id = tracker.client.create_run(tracker.experiment_id, run_name=naming.sweep_name(overrides, swept, sid),
                                                      tags=tags).info.run_id
                log.info("sweep %s: parent run %s", sid, parent_id)
            # a later launch reaps it if killed; the launcher entries tell it (and the closing launcher) who still runs
            tracker.attach(parent_id).set_tags({**source_tags(), **process_tags(), key: json.dumps(entry),
                                                **({"sweep.conf_digest": conf["conf_digest"]} if conf else {})})
        share_view(tracker.client, tracker.experiment_id, sid)  # the link at its end opens the sweep's runs table
        ACTIVE.update(tracker=tracker, parent_run_id=parent_id, sweep_id=sid, launcher=(key, entry))
        if not others:
            for old in (sweep_dir / "failed").glob("*.txt"):  # a relaunch into the same folder starts clean
                old.unlink()
        info = {"sweep_id": sid, "parent_run_id": parent_id, "experiment_id": tracker.experiment_id,
                "tracking_uri": tracker.uri, "overrides": overrides, "swept_keys": swept,
                "launcher": {k: entry[k] for k in ("host", "pid", "start")}, **(conf or {})}
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(info, indent=2))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        _IN_JOB.set()
        watch_launcher(job_context())  # a job in a worker process ends with its launcher

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        _IN_JOB.clear()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST_FAILURE
        from edgebench.tracking import claim_lock

        path = Path(str(config.hydra.sweep.dir)) / SWEEP_FILE
        if not path.exists() or not ACTIVE:
            ACTIVE.clear()
            return
        info = json.loads(path.read_text())
        tracker = ACTIVE["tracker"]
        with claim_lock(tracker.uri):
            others = _leave(tracker, info["parent_run_id"], *ACTIVE["launcher"])
            ACTIVE.clear()  # closed below (or by the last launcher), not interrupted
            if others:
                pids = ", ".join(str(e["pid"]) for e in others)
                log.info("sweep %s: this launch is done; launcher pid %s still runs jobs and closes parent run %s",
                         info["sweep_id"], pids, info["parent_run_id"])
                own = sorted((path.parent / "failed").glob("*.txt"), key=lambda f: int(f.stem))
                if own:
                    reasons = "; ".join(f"job {f.stem}: {f.read_text().strip()}" for f in own)
                    LAST_FAILURE = (f"sweep {info['sweep_id']}: {len(own)} job(s) of this launch failed: "
                                    f"{reasons[:2000]} (the sweep goes on in launcher pid {pids})")
                return
            parent = tracker.client.get_run(info["parent_run_id"])
            children = tracker.search(f"tags.`mlflow.parentRunId` = '{info['parent_run_id']}'")
            failures: dict[int, str] = {}  # by job number, over every launch since the parent was (re)opened
            dirs = {str(path.parent.resolve())} | {e["sweep_dir"] for e in launchers(parent.data.tags).values()}
            for d in sorted(dirs):
                for f in (Path(d) / "failed").glob("*.txt"):
                    failures.setdefault(int(f.stem), f.read_text().strip())
            finished = {r.info.run_id for r in children if r.info.status == "FINISHED"}  # over every launch
            reused = {v for k, v in parent.data.tags.items() if k.startswith(REUSED_TAG + ".")} - finished
            counts = {"finished": len(finished), "reused": len(reused),
                      "failed": len(failures)}  # including jobs that failed before their MLflow run
            run = tracker.attach(info["parent_run_id"])
            run.log_metrics({f"sweep/jobs_{k}": n for k, n in counts.items()})
            summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
            if failures:
                reasons = "; ".join(f"job {n}: {failures[n]}" for n in sorted(failures))
                run.end("FAILED", f"{len(failures)} job(s) failed: {reasons}")
                LAST_FAILURE = (f"sweep {info['sweep_id']}: {summary}. {reasons[:2000]} "
                                "(launch the same sweep again to rerun only the failed jobs)")
            else:
                run.end("FINISHED")
        log.info("sweep %s: %s; parent run %s", info["sweep_id"], summary, info["parent_run_id"])
        self._print_end(config, info)

    @staticmethod
    def _print_end(config: DictConfig, info: dict[str, Any]) -> None:
        """The sweep's result table (the report's frontier) and, once, the command that opens it in the UI."""
        import shlex

        from edgebench import report
        from edgebench.tracking import sqlite_path, ui_page

        sid, uri = info["sweep_id"], info["tracking_uri"]
        try:
            runs = report.load_runs(uri, str(config.experiment_name), sweep=sid)
            if not runs.empty:
                df, _, _ = report.build(runs, runs.attrs.get("swept_keys", []))
                report.print_frontier(df, f"sweep {sid}: {int(df['replicates'].sum())} finished runs in {len(df)} groups")
        except Exception as e:  # the sweep's own result stands without its table
            log.warning("sweep %s: no result table (%s)", sid, e)
        if sqlite_path(uri) is None:  # a tracking server
            print(f"sweep {sid} in the MLflow UI: {ui_page(uri, info['experiment_id'], sid)}",
                  flush=True)
            return
        art = Path(str(config.paths.mlflow_artifact_dir))
        cmd = shlex.join(["python", "-m", "edgebench.ui", "--tracking-uri", uri, "--artifact-dir", str(art.resolve()),
                          "--sweep", sid])  # quoted: a path with a space stays one word, $(...) in it never runs
        url = ui_page("http://127.0.0.1:5000", info["experiment_id"], sid)
        print(f"open sweep {sid} in the MLflow UI: {cmd}\n  and browse to {url}", flush=True)


def objective(metrics: dict[str, float], device, kind: str) -> float:
    """What a sweeper maximises; never the test split (a search that reads test accuracy has tuned on it).
    ``val_acc``: the deployed model's validation accuracy (``select/val_acc``). ``fits_device``: that when the
    model fits ``device``; otherwise a negative score, higher the closer the model is to fitting
    (``-1 - max(file/storage, memory/RAM overshoot)``), so a search moves toward feasible models."""
    acc = float(metrics.get("select/val_acc", float("nan")))
    if kind == "val_acc" or metrics.get("device/fits", 1.0) >= 1.0:
        return acc
    over = 0.0
    for used, limit in (("device/flash_bytes", device.storage_bytes), ("device/ram_bytes", device.memory_bytes)):
        if limit and used in metrics:
            over = max(over, metrics[used] / limit - 1)
    return -1.0 - over
