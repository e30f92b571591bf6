"""What a run says while it works: numbered phase lines, estimated time left, and a bar over long evaluations.

Phase lines and estimates are log lines (the console and the job's log); the evaluation bar follows
``trainer.progress_bar`` like the training bar (rich on a terminal, a log line every few seconds otherwise,
nothing with ``none``).
"""

from __future__ import annotations

import logging
import sys
import time

from edgebench.config import ProgressBar

log = logging.getLogger("edgebench.pipeline")

MODE = ProgressBar.auto  # the run's trainer.progress_bar (set by edgebench.pipeline.run)
PLAIN_EVERY_S = 10.0  # a plain evaluation says how far it got at most this often


def mode(wanted: ProgressBar | None = None) -> ProgressBar:
    """``wanted`` (default: the run's) with ``auto`` resolved: rich on a terminal, plain otherwise."""
    m = wanted or MODE
    if m == ProgressBar.auto:
        return ProgressBar.rich if sys.stdout.isatty() else ProgressBar.plain
    return m


def clock(seconds: float) -> str:
    """``1:05`` for 65 s, ``1:02:03`` past an hour."""
    s = int(round(seconds))
    h, s = divmod(s, 3600)
    return f"{h}:{s // 60:02d}:{s % 60:02d}" if h else f"{s // 60}:{s % 60:02d}"


def count(n: int, word: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def eta(started: float, done: int, total: int) -> str:
    """``ETA 1:05``: the time left if the ``total - done`` remaining units take as long as the ``done`` ones did
    since ``started`` (a ``time.perf_counter()`` value); '' before the first unit is done."""
    if done <= 0 or done >= total:
        return ""
    return f"ETA {clock((time.perf_counter() - started) / done * (total - done))}"


class Phases:
    """``[2/3] magnitude_pruning: rounds=3, retrain_epochs=1``: one numbered line as each phase of a run starts."""

    def __init__(self, total: int):
        self.total, self.n = total, 0

    def start(self, what: str) -> None:
        self.n += 1
        log.info("[%d/%d] %s", self.n, self.total, what)


class Evaluation:
    """Progress over one evaluation of ``batches`` batches (``images`` images): a transient rich bar, or a log line
    every :data:`PLAIN_EVERY_S` seconds with the estimated time left, or nothing."""

    def __init__(self, batches: int, images: int):
        self.mode, self.batches, self.images = mode(), batches, images
        self.started = self.last = time.perf_counter()
        self.bar = self.task = None
        if self.mode == ProgressBar.rich and batches > 1:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(f"evaluating {images:,} images"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), transient=True)
            self.task = self.bar.add_task("", total=batches)
            try:
                self.bar.start()
            except Exception:  # rich.errors.LiveError: a training bar is live (an evaluation inside a fit)
                self.bar = None

    def advance(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done)
        elif self.mode == ProgressBar.plain and done < self.batches and time.perf_counter() - self.last >= PLAIN_EVERY_S:
            self.last = time.perf_counter()
            log.info("evaluating %d images: %d/%d batches, %s", self.images, done, self.batches,
                     eta(self.started, done, self.batches))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
