"""Interruptions: Ctrl-C (SIGINT) and SIGTERM end a run as KILLED, never as FAILED.

Python raises ``KeyboardInterrupt`` on SIGINT; :func:`install` makes SIGTERM do the same, so one
path (``Tracker.run`` marks the run KILLED, ``edgebench.__main__`` prints how to resume) serves
both (the training loop lets it through untouched).
"""

from __future__ import annotations

import os
import signal

# The name of the signal that interrupted this process (None: not interrupted, or plain Ctrl-C).
received: str | None = None
# Why this process interrupted itself (:func:`interrupt`), e.g. its sweep's launcher died; None otherwise.
why: str | None = None


def _on_signal(signum, frame) -> None:
    global received
    received = signal.Signals(signum).name
    raise KeyboardInterrupt(received)


def install() -> None:
    """SIGTERM raises ``KeyboardInterrupt`` (as SIGINT does), so a terminated run is closed as KILLED."""
    signal.signal(signal.SIGTERM, _on_signal)


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
