"""Interruptions: Ctrl-C (SIGINT) and SIGTERM end a run as KILLED, never as FAILED.

Python raises ``KeyboardInterrupt`` on SIGINT; :func:`install` makes SIGTERM do the same, so one
path (``Tracker.run`` marks the run KILLED, ``edgebench.__main__`` prints how to resume) serves
both (the training loop lets it through untouched).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

# The name of the signal that interrupted this process (None: not interrupted, or plain Ctrl-C).
received: str | None = None
# Why this process interrupted itself (:func:`interrupt`), e.g. its sweep's launcher died; None otherwise.
why: str | None = None
# This process's child processes when it was interrupted: a joblib sweep's workers, which joblib SIGKILLs as the
# interruption reaches it, so their runs cannot close themselves (the launcher closes them: edgebench.sweep).
children: frozenset[int] = frozenset()


def child_pids() -> frozenset[int]:
    """The pids of this process's children (Linux ``/proc``; empty elsewhere)."""
    me, found = os.getpid(), set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == me:
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
    return frozenset(found)


def _on_signal(signum, frame) -> None:
    global received, children
    children = child_pids()
    if signum != signal.SIGINT:  # Ctrl-C keeps its own wording (reason())
        received = signal.Signals(signum).name
    raise KeyboardInterrupt(received)


def install() -> None:
    """SIGTERM raises ``KeyboardInterrupt`` (as SIGINT does), so a terminated run is closed as KILLED; both note
    this process's children first (:data:`children`). A SIGINT ignored (a background job) stays ignored."""
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)


def interrupt(reason: str) -> None:
    """End this process's run as KILLED with ``reason``: SIGTERM to itself (with :func:`install`'s handler the main
    thread raises ``KeyboardInterrupt``, whatever it is doing; callable from any thread)."""
    global why
    why = reason
    os.kill(os.getpid(), signal.SIGTERM)


def reason() -> str:
    """``status_reason`` of an interrupted run."""
    if why:
        return why
    return f"interrupted by {received or 'SIGINT (Ctrl-C)'}"
