"""``python -m edgebench.ui``: the MLflow UI on edgebench's store, bound to 127.0.0.1.

    python -m edgebench.ui                      # results/mlflow.db, http://127.0.0.1:5000
    python -m edgebench.ui --port 5001 --tracking-uri sqlite:////path/to/mlflow.db

Equivalent to ``mlflow ui --backend-store-uri sqlite:///results/mlflow.db --default-artifact-root
file://<abs>/results/mlartifacts --host 127.0.0.1 --port 5000``. Loopback only: MLflow's UI has no
authentication; to share it, run ``mlflow server`` behind an authenticating proxy.
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

from edgebench.tracking import require_store


def command(tracking_uri: str, artifact_dir: str | Path, port: int = 5000, host: str = "127.0.0.1") -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--default-artifact-root",
            Path(artifact_dir).resolve().as_uri(), "--host", host, "--port", str(port)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(tracking_uri: str, artifact_dir: str | Path, port: int | None = None, timeout_s: float = 90) -> Iterator[str]:
    """Run the UI in the background for the duration of a ``with`` block; yields its base URL once /health answers."""
    port = port or free_port()
    server = subprocess.Popen(command(tracking_uri, artifact_dir, port), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout_s
        while True:
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=2).read() == b"OK":
                    break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the MLflow UI did not come up on {base} (exit status {server.poll()})")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m edgebench.ui", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///results/mlflow.db"))
    ap.add_argument("--artifact-dir", default="results/mlartifacts")
    ap.add_argument("--port", type=int, default=5000)
    args = ap.parse_args(argv)
    uri = args.tracking_uri
    require_store(uri)
    if uri.startswith(("http://", "https://")):
        raise SystemExit(f"{uri} is a tracking server: open it in a browser")
    print(f"MLflow UI on http://127.0.0.1:{args.port} (store {uri}); Ctrl-C stops it", flush=True)
    try:
        raise SystemExit(subprocess.call(command(uri, args.artifact_dir, args.port)))
    except KeyboardInterrupt:
        raise SystemExit(0)


if __name__ == "__main__":
    main()
