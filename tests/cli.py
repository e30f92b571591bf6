"""``python -m edgebench ARGS`` for the tests, without paying for a new interpreter's imports each time.

:func:`run` forks the command from a server process (multiprocessing's forkserver, one per test worker) that has
imported torch, MLflow, Hydra, Lightning Fabric, the ONNX exporter and edgebench once: the child sets its working
folder, environment and ``sys.argv``, points its stdout and stderr at files and calls
``edgebench.__main__.main()``, the function ``python -m edgebench`` calls; its exit status is the command's. It is
a separate process as the CLI is (its own signals, MLflow run, Hydra state, exit), so a failing or interrupted run
cannot disturb the test worker. A command costs about 0.3 s instead of 5 s when it refuses its input, and about
4 s instead of 14 s for a short run on digits (measured on the project's 2-core machine, 2026-12-06).

:func:`start` is the same in the background, for the runs the tests send real signals (SIGINT, SIGKILL). What
needs a fresh interpreter keeps ``subprocess`` and ``sys.executable``: the README's commands, the wheel install,
the import check of a run that trains nothing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

PRELOAD = ["torch", "mlflow", "hydra", "lightning_fabric", "onnxruntime", "onnxscript", "torch.onnx",
           "edgebench.pipeline", "edgebench.sweep", "edgebench.__main__"]
_ctx = None


def _child(args: list[str], cwd: str, env: dict[str, str], out_path: str, err_path: str) -> None:
    for fd, path in ((1, out_path), (2, err_path)):  # one path for both: stderr joins stdout, as 2>&1
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(f, fd)
        os.close(f)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as an interpreter started by a terminal has it
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [str(Path(sys.executable).parent / "edgebench"), *args]
    code = 0
    try:
        from edgebench.__main__ import main

        main()
    except SystemExit as e:  # what the interpreter does with it: an int is the status, a message is printed, 1
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:  # an uncaught exception: its traceback, status 1
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Started:
    """The command running in the background, as much of ``subprocess.Popen`` as the tests use: ``pid``,
    ``poll()``, ``wait()``, ``communicate()`` (its whole stdout and stderr once it has ended), ``send_signal()``,
    ``kill()``, ``returncode`` (negative: the signal that ended it)."""

    def __init__(self, args, cwd, env: dict[str, str] | None = None, output: str | Path | None = None):
        global _ctx
        if _ctx is None:
            _ctx = mp.get_context("forkserver")
            _ctx.set_forkserver_preload(PRELOAD)
        self.args = [sys.executable, "-m", "edgebench", *(str(a) for a in args)]
        self._tmp = tempfile.TemporaryDirectory(prefix="edgebench-cli-")
        self._out, self._err = os.path.join(self._tmp.name, "stdout"), os.path.join(self._tmp.name, "stderr")
        if output is not None:  # stdout and stderr together in that file (communicate() returns it as stdout)
            self._out = self._err = self.log_path = str(output)
        self._p = _ctx.Process(target=_child, args=(self.args[3:], str(cwd), dict(os.environ if env is None else env),
                                                     self._out, self._err))
        self._p.start()
        self.pid = self._p.pid

    @property
    def returncode(self) -> int | None:
        return self._p.exitcode

    def poll(self) -> int | None:
        return self._p.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._p.join(timeout)
        if self._p.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._p.exitcode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        read = lambda path: Path(path).read_text(errors="replace") if os.path.exists(path) else ""  # noqa: E731
        return read(self._out), ("" if self._err == self._out else read(self._err))

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        self._p.kill()


def start(args, cwd, env: dict[str, str] | None = None, output: str | Path | None = None) -> Started:
    """``subprocess.Popen([sys.executable, "-m", "edgebench", *args], cwd=cwd, env=env, ...)``, forked from the
    preloaded server; with ``output``, stdout and stderr both go to that file (``stdout=f, stderr=STDOUT``)."""
    return Started(args, cwd, env, output)


def run(args, cwd, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``subprocess.run([sys.executable, "-m", "edgebench", *args], cwd=cwd, env=env, capture_output=True,
    text=True, timeout=timeout)``, forked from the preloaded server."""
    p = start(args, cwd, env)
    try:
        out, err = p.communicate(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)
