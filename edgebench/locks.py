"""The store's file locks: a wait that says what it waits for and ends, and lock files that do not pile up.

``with held(lock_path, what, entry):`` takes an exclusive ``flock`` on ``lock_path`` (compatible with
``filelock.FileLock``). After :data:`NOTICE_S` seconds of waiting it logs which entry it waits for, which lock
file, and the process holding it (from ``/proc/locks``); after :data:`TIMEOUT_S` (the ``store_lock_timeout_s``
option) it raises :class:`LockTimeout`. On release (also on Ctrl-C) the lock file is removed while still
held; a process that was waiting on the removed file sees that its file is no longer the one at the path and
locks the new one, so two processes never both hold "the" lock.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

NOTICE_S = 5.0  # a wait longer than this is logged, once
TIMEOUT_S = 3600.0  # the store_lock_timeout_s option (edgebench.pipeline.run sets it)
POLL_S = 0.1


class LockTimeout(TimeoutError):
    """A store lock was not given up by the process holding it in ``store_lock_timeout_s``; names the lock."""


def holder(lock_path: str | Path) -> str:
    """``pid N (command)`` of the process holding ``lock_path`` (Linux ``/proc/locks``), else ''."""
    try:
        st = os.stat(lock_path)
        dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            if "->" in parts:  # a waiter, not the holder
                continue
            if len(parts) >= 6 and parts[5] == dev:
                pid = parts[4]
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    cmd = ""
                cmd = " ".join(cmd.split())[:120]
                return f"pid {pid}" + (f" ({cmd})" if cmd else "")
    except (OSError, ValueError):
        pass
    return ""


def try_lock(path: str | Path, create: bool = True) -> int | None:
    """A descriptor holding the exclusive ``flock`` on the file now at ``path``, taken without waiting, or None
    when another process holds it (or, without ``create``, when there is no such file)."""
    import fcntl

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:  # removed by the process that held it, after we opened it
        same = False
    if not same:
        os.close(fd)
        return try_lock(path, create)
    return fd


def release(path: str | Path, fd: int) -> None:
    """Give up the lock ``fd`` on ``path`` (from :func:`try_lock`), removing the lock file while still holding
    it, so no lock file is left behind (see the module's docstring)."""
    try:
        Path(path).unlink(missing_ok=True)
    finally:
        os.close(fd)


@contextmanager
def held(lock_path: str | Path, what: str, entry: str | Path | None = None,
         timeout_s: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock ``lock_path`` (for ``what``, the ``entry`` it guards) while the block runs."""
    path = Path(lock_path)
    limit = TIMEOUT_S if timeout_s is None else timeout_s
    start = time.monotonic()
    told = False
    about = f"{what} {entry}" if entry is not None else what
    while (fd := try_lock(path)) is None:
        waited = time.monotonic() - start
        if not told and waited >= NOTICE_S:
            who = holder(path)
            log.warning("waiting for %s: another process%s holds its lock %s and is making it (up to %g s, "
                        "store_lock_timeout_s)", about, f" ({who})" if who else "", path, limit)
            told = True
        if waited >= limit:
            who = holder(path)
            raise LockTimeout(f"gave up after {limit:g} s waiting for {path}, the lock of {about}, held by "
                              f"{who or 'another process'}: if that process is stuck, stop it (its lock goes "
                              "with it); or raise store_lock_timeout_s")
        time.sleep(POLL_S)
    if told:
        log.info("got the lock of %s after %.0f s", about, time.monotonic() - start)
    try:
        yield
    finally:
        release(path, fd)
