"""The dense-baseline cache.

A dense model is trained once per key (model, data, training config, seed) and reused by every
later run with the same key. Entries are folders ``<cache_dir>/baselines/<model>-<data>-<hash>/``
holding ``model.pt`` (the state dict) and ``meta.json`` (the key, the training history, timings).
An entry is written to a temporary folder and renamed into place, under a file lock, so a
crash never leaves half an entry and parallel jobs never train the same baseline twice.
An unreadable entry is reported, moved aside and retrained. A baseline whose validation accuracy
is not clearly above chance (:func:`edgebench.training.check_learned`) raises
:class:`edgebench.training.DivergedError` and is never cached.

The helpers :func:`load_or_set_aside`, :func:`read`, :func:`atomic_write` and :func:`atomic_save`
are the one way every stored file is read and written (the baseline cache here, the lottery-ticket
levels in :mod:`edgebench.methods.lottery`): a file or folder that cannot be read is logged with
its path, kept aside as ``<name>.corrupt-<time>`` and redone; nothing is ever half written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from filelock import FileLock
from torch import nn

from edgebench.config import EdgebenchConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

CACHE_FORMAT = 1
# Fields that change how files are found or shown, never the trained weights.
_DATA_IGNORED = {"root", "download"}
_TRAINER_IGNORED = {"progress_bar"}


class UnreadableFileError(OSError):
    """A stored file exists but cannot be read; the message names the file and the reason."""


def read(path: str | Path, fn: Callable[[Path], T] | None = None) -> T:
    """``fn(path)`` (default: ``torch.load`` on the CPU, weights only); any failure is re-raised as
    :class:`UnreadableFileError` naming ``path`` (torch's own message names no file)."""
    path = Path(path)
    try:
        if fn is None:
            return torch.load(path, map_location="cpu", weights_only=True)
        return fn(path)
    except UnreadableFileError:
        raise
    except Exception as e:
        raise UnreadableFileError(f"{path}: {type(e).__name__}: {e}") from e


def set_aside(path: str | Path) -> Path:
    """Move the file or folder ``path`` to ``<name>.corrupt-<unix time>`` next to it; returns the new path."""
    path = Path(path)
    stamp = int(time.time())
    bad = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while bad.exists():  # two in the same second: never overwrite an earlier one
        bad = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, bad)
    return bad


def load_or_set_aside(path: str | Path, loader: Callable[[Path], T], what: str = "cached file") -> T | None:
    """``loader(path)``, or None when ``path`` does not exist or cannot be loaded.

    An unloadable ``path`` (file or folder) is logged as a warning with its path and the reason,
    moved aside (:func:`set_aside`, kept for inspection) and None is returned, so the caller redoes it.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return loader(path)
    except Exception as e:  # corrupt, truncated or incompatible
        reason = str(e) if isinstance(e, UnreadableFileError) else f"{type(e).__name__}: {e}"
        bad = set_aside(path)
        log.warning("%s %s is unreadable (%s); moved to %s and redoing it", what, path, reason, bad)
        return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write the file or folder ``path`` whole or not at all.

    ``write(tmp)`` creates ``tmp`` (a file, or a folder it makes itself) next to ``path``; it then
    replaces ``path`` (an existing folder there is removed first). On any failure ``tmp`` is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        write(tmp)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _plain(d: dict) -> dict:
    return json.loads(json.dumps(d, default=lambda o: getattr(o, "value", str(o))))


def baseline_key(cfg: EdgebenchConfig) -> dict:
    """Everything the dense baseline's weights depend on, as plain JSON."""
    return _plain({
        "format": CACHE_FORMAT,
        "model": asdict(cfg.model),
        "data": {k: v for k, v in asdict(cfg.data).items() if k not in _DATA_IGNORED},
        "trainer": {k: v for k, v in asdict(cfg.trainer).items() if k not in _TRAINER_IGNORED},
        "seed": cfg.seed,
    })


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Baseline:
    model: nn.Module
    history: list[dict]
    from_cache: bool
    path: Path | None
    key_hash: str
    train_seconds: float


def entry_dir(cache_dir: str | Path, cfg: EdgebenchConfig) -> Path:
    h = key_hash(baseline_key(cfg))
    return Path(cache_dir) / "baselines" / f"{cfg.model.name.value}-{cfg.data.name.value}-{h}"


def _load(path: Path, build: Callable[[], nn.Module]) -> tuple[nn.Module, dict]:
    meta = read(path / "meta.json", lambda p: json.loads(p.read_text()))
    model = build()
    state = read(path / "model.pt")
    read(path / "model.pt", lambda p: model.load_state_dict(state))  # a mismatch names the file too
    return model, meta


def _num_classes(model: nn.Module) -> int | None:
    """The output width of ``model``'s last linear layer (its number of classes), or None."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last.out_features if last is not None else None


def get_or_train(cfg: EdgebenchConfig, cache_dir: str | Path, build: Callable[[], nn.Module],
                 train: Callable[[nn.Module], list[dict]], num_classes: int | None = None) -> Baseline:
    """Load the cached dense baseline for ``cfg``, or build, train and cache it.

    A freshly trained baseline must be clearly better than chance (``num_classes`` classes; None:
    the output width of the model's last linear layer), or :class:`edgebench.training.DivergedError`
    is raised and nothing is cached.
    """
    key = baseline_key(cfg)
    h = key_hash(key)
    path = entry_dir(cache_dir, cfg)

    def train_checked() -> tuple[nn.Module, list[dict], float]:
        from edgebench import training  # Lightning loads only when something is trained

        model = build()
        t0 = time.perf_counter()
        history = train(model)
        seconds = time.perf_counter() - t0
        training.check_learned(history, num_classes or _num_classes(model), cfg.trainer)
        return model, history, seconds

    if not cfg.use_baseline_cache:
        model, history, seconds = train_checked()
        return Baseline(model, history, False, None, h, seconds)

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        loaded = load_or_set_aside(path, lambda p: _load(p, build), "baseline cache entry")
        if loaded is not None:
            model, meta = loaded
            log.info("dense baseline loaded from cache %s", path)
            return Baseline(model, meta["history"], True, path, h, meta.get("train_seconds", 0.0))
        log.info("training the dense baseline (cache key %s)", h)
        model, history, seconds = train_checked()
        meta = {"key": key, "key_hash": h, "history": history, "train_seconds": seconds,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}

        def write(tmp: Path) -> None:
            tmp.mkdir()
            torch.save(model.state_dict(), tmp / "model.pt")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))

        atomic_write(path, write)
        log.info("dense baseline cached in %s", path)
        return Baseline(model, history, False, path, h, seconds)
