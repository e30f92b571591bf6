"""Interruptions: Ctrl-C (SIGINT) and SIGTERM end a run as KILLED, never as FAILED.

Python raises ``KeyboardInterrupt`` on SIGINT; :func:`install` makes SIGTERM do the same, so one
path (``Tracker.run`` marks the run KILLED, ``edgebench.__main__`` prints how to resume) serves
both (the training loop lets it through untouched).
"""

from __future__ import annotations

import signal

# The name of the signal that interrupted this process (None: not interrupted, or plain Ctrl-C).
received: str | None = None


def _on_signal(signum, frame) -> None:
    global received
    received = signal.Signals(signum).name
    raise KeyboardInterrupt(received)


def install() -> None:
    """SIGTERM raises ``KeyboardInterrupt`` (as SIGINT does), so a terminated run is closed as KILLED."""
    signal.signal(signal.SIGTERM, _on_signal)


def reason() -> str:
    """``status_reason`` of an interrupted run."""
    return f"interrupted by {received or 'SIGINT (Ctrl-C)'}"
