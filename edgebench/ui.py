"""``python -m edgebench.ui``: the MLflow UI on edgebench's store, bound to 127.0.0.1.

    python -m edgebench.ui                      # results/mlflow.db, http://127.0.0.1:5000
    python -m edgebench.ui --port 5001 --tracking-uri sqlite:////path/to/mlflow.db

Equivalent to ``mlflow ui --backend-store-uri sqlite:///results/mlflow.db --default-artifact-root
file://<abs>/results/mlartifacts --host 127.0.0.1 --port 5000``, plus: it refuses a busy port and
a file that is not an MLflow store, prints the experiment's runs page once the server answers,
and Ctrl-C or SIGTERM stops the server with all of its workers (it runs in its own process
group). Loopback only: MLflow's UI has no authentication; to share it, run ``mlflow server``
behind an authenticating proxy.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgebench.tracking import require_store, share_view, ui_page

def command(tracking_uri: str, artifact_dir: str | Path, port: int = 5000, host: str = "127.0.0.1") -> list[str]:
    """``mlflow ui`` for one local user: one worker process (MLflow's default is 4), started with :data:`ENV`."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--default-artifact-root",
            Path(artifact_dir).resolve().as_uri(), "--host", host, "--port", str(port), "--workers", "1"]


# MLflow 3's server also starts a job runner (a huey consumer and its workers, for GenAI scorers edgebench never
# uses): without it and with one worker the UI is up in about 8 s instead of 28 s, in 2 processes and 0.5 GB instead
# of 15 and 2.3 GB (measured on this project's 2-core machine, 2026-12-06)
ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on (or holds) ``host:port``."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds: TIME_WAIT does not count
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def start(tracking_uri: str, artifact_dir: str | Path, port: int, quiet: bool = False) -> subprocess.Popen:
    """Start ``mlflow ui`` in its own session, so that :func:`stop` can end it with every worker it forks."""
    out = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(command(tracking_uri, artifact_dir, port), stdout=out, stderr=out, start_new_session=True,
                            env={**os.environ, **ENV})


def wait_until_up(server: subprocess.Popen, base: str, timeout_s: float = 90) -> None:
    """Return once ``base``/health answers; RuntimeError when the server exits first or the time runs out."""
    deadline = time.time() + timeout_s
    while True:
        try:
            if urllib.request.urlopen(f"{base}/health", timeout=2).read() == b"OK":
                return
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the MLflow UI did not come up on {base} (exit status {server.poll()})")
        time.sleep(0.5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop(server: subprocess.Popen, timeout_s: float = 15) -> None:
    """End the server's whole process group: SIGTERM, then SIGKILL what is left after ``timeout_s``."""
    pgid = server.pid  # start_new_session: the server leads its own group
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if server.poll() is not None and not _group_alive(pgid):
                return
            time.sleep(0.1)
    server.wait(timeout=5)


@contextmanager
def serve(tracking_uri: str, artifact_dir: str | Path, port: int | None = None, timeout_s: float = 90) -> Iterator[str]:
    """Run the UI in the background for the duration of a ``with`` block; yields its base URL once /health answers."""
    port = port or free_port()
    server = start(tracking_uri, artifact_dir, port, quiet=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(server, base, timeout_s)
        yield base
    finally:
        stop(server)


class _Stop(Exception):
    pass


def _experiment_id(uri: str, name: str, sweep: str | None) -> str | None:
    """The experiment's id, with edgebench's view of its runs table (and the sweep's) on it: a store written by an
    older edgebench has none. Read before the server starts, so that a signal never lands inside MLflow's client."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(name)
        if exp is None:
            return None
        share_view(client, exp.experiment_id)
        if sweep is not None:
            share_view(client, exp.experiment_id, sweep)
        return exp.experiment_id
    except (OSError, MlflowException) as e:  # the landing page still works
        print(f"edgebench.ui: experiment {name!r} not read ({type(e).__name__}: {e})", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m edgebench.ui", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///results/mlflow.db"))
    ap.add_argument("--artifact-dir", default="results/mlartifacts")
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--experiment", default="edgebench", help="the experiment whose page is printed (default: edgebench)")
    ap.add_argument("--sweep", help="print the page of this sweep's runs (a sweep id, e.g. sw-1a2b3c4d5e)")
    args = ap.parse_args(argv)
    uri = args.tracking_uri
    if uri.startswith(("http://", "https://")):
        raise SystemExit(f"{uri} is a tracking server: open it in a browser")
    require_store(uri)
    if port_in_use(args.port):
        raise SystemExit(f"port {args.port} on 127.0.0.1 is already in use (another MLflow UI?); "
                         f"choose another with --port, e.g. --port {free_port()}")

    exp = _experiment_id(uri, args.experiment, args.sweep)

    def on_signal(signum, frame):
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = start(uri, args.artifact_dir, args.port)
    base = f"http://127.0.0.1:{args.port}"
    try:
        try:
            wait_until_up(server, base, timeout_s=120)
        except RuntimeError:
            rc = server.poll()
            why = "did not answer within 120 s" if rc is None else f"exited before serving it (exit status {rc})"
            print(f"edgebench.ui: the MLflow UI on {base} {why}", file=sys.stderr)
            raise SystemExit(_status(rc) or 1)
        page = ui_page(base, exp, args.sweep) if exp is not None else base
        print(f"MLflow UI on {page} (store {uri}); Ctrl-C stops it", flush=True)
        rc = server.wait()
    except _Stop:  # SIGTERM or Ctrl-C: end the server and its workers, then exit
        rc = 0
    finally:
        for sig in previous:  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        stop(server)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if rc != 0:
        print(f"edgebench.ui: the MLflow UI exited with status {rc}", file=sys.stderr)
    raise SystemExit(_status(rc))


def _status(rc: int | None) -> int:
    """An exit status for the server's return code (killed by signal N: 128 + N, as a shell reports it)."""
    if rc is None:
        return 1
    return 128 - rc if rc < 0 else rc


if __name__ == "__main__":
    main()
