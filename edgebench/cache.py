"""Dense baselines in the store (:mod:`edgebench.store`, kind ``baselines``).

A dense model is trained once per key and reused by every later run with the same key. The key
(:func:`baseline_key`) holds everything that determines the weights: the model config, the data's
content digest (:attr:`edgebench.data.DataSplits.digest`, sha256 of the images and labels) and the
data options that carve and transform it (never ``data.root``: the same bytes at another path are the
same data), the training config, the seed, and the code's versions (:data:`CACHE_FORMAT`,
:data:`edgebench.training.VERSION`). Entries are folders ``<store_dir>/baselines/<model>-<data>-<hash>/``
holding ``model.pt`` (the state dict) and ``meta.json`` (the key, the training history, timings,
the sha256 of ``model.pt``).
An entry is written to a temporary folder and renamed into place, under a file lock, so a
crash never leaves half an entry and parallel jobs never train the same baseline twice.
An unreadable entry is reported, moved aside and retrained: a file whose sha256 differs from the
one in ``meta.json`` (checked by the store), and a model that scores below its own stored final
validation accuracy when re-evaluated on the validation split (``recheck``; more than
:func:`recheck_tolerance` below). A baseline whose validation accuracy is not clearly above chance (:func:`edgebench.training.check_learned`) raises
:class:`edgebench.training.DivergedError` and is never cached.

Entries are kept by :class:`edgebench.store.Store` (kind ``baselines``, key :func:`baseline_key`,
named by :func:`edgebench.store.digest` of it), which also holds the one atomic writer and the
readers (:func:`load_or_set_aside`, :func:`read`, :func:`atomic_write`, :func:`atomic_save`,
still importable from here): a file or folder that cannot be read is logged with its path, kept
aside as ``<name>.corrupt-<time>`` and redone; nothing is ever half written.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from edgebench.config import EdgebenchConfig
# the readers and the atomic writer live in edgebench.store; importable from here as before
from edgebench.store import (Store, UnreadableFileError, atomic_save, atomic_write, digest,  # noqa: F401
                             load_or_set_aside, plain, read, read_meta, set_aside)

log = logging.getLogger(__name__)

# The stored baseline's format and key layout: bump it when what an entry holds, or what its key means, changes
# (2: the data's content digest and the training code's version joined the key).
CACHE_FORMAT = 2
# Fields that change how files are found or shown, never the trained weights (the data's bytes are in the key).
_DATA_IGNORED = {"root", "download"}
_TRAINER_IGNORED = {"progress_bar"}


def data_digest(cfg: EdgebenchConfig) -> str:
    """The content digest of ``cfg``'s data (loads it; a run passes the digest of the data it already loaded)."""
    from edgebench.data import load_data

    return load_data(cfg.data, cfg.paths.data_dir).digest


def baseline_key(cfg: EdgebenchConfig, data: str | None = None) -> dict:
    """Everything the dense baseline's weights depend on, as plain JSON.

    ``data``: the content digest of the loaded data (:attr:`edgebench.data.DataSplits.digest`); None loads the
    data to compute it.
    """
    from edgebench import training

    digest_ = data if data is not None else data_digest(cfg)
    if not digest_:
        raise ValueError("baseline_key: the data has no content digest; load it with edgebench.data.load_data")
    return plain({
        "format": CACHE_FORMAT,
        "training": training.VERSION,
        "data_digest": digest_,
        # options that are None do not apply to this model or data (model.glimpses to model=ram only ...): left out,
        # so adding such an option does not change other entries' keys
        "model": {k: v for k, v in asdict(cfg.model).items() if v is not None},
        "data": {k: v for k, v in asdict(cfg.data).items() if k not in _DATA_IGNORED and v is not None},
        "trainer": {k: v for k, v in asdict(cfg.trainer).items() if k not in _TRAINER_IGNORED},
        "seed": cfg.seed,
    })


def key_hash(key: dict) -> str:
    """The baseline key's digest (:func:`edgebench.store.digest`), which names its entry."""
    return digest(key)


@dataclass
class Baseline:
    model: nn.Module
    history: list[dict]
    from_cache: bool
    path: Path | None
    key_hash: str
    train_seconds: float


def _entry_name(cfg: EdgebenchConfig) -> str:
    return f"{cfg.model.name.value}-{cfg.data.name.value}"


def entry_dir(store_dir: str | Path, cfg: EdgebenchConfig, data: str | None = None) -> Path:
    """The store entry of ``cfg``'s dense baseline: ``<store_dir>/baselines/<model>-<data>-<hash>``
    (``data``: the data's content digest, as for :func:`baseline_key`)."""
    return Store(store_dir).path("baselines", baseline_key(cfg, data), _entry_name(cfg))


def _load(path: Path, build: Callable[[], nn.Module]) -> tuple[nn.Module, list[dict], float]:
    meta = read(path / "meta.json", lambda p: json.loads(p.read_text()))
    history = read(path / "meta.json", lambda p: list(meta["history"]))
    model = build()
    state = read(path / "model.pt")
    read(path / "model.pt", lambda p: model.load_state_dict(state))  # a mismatch names the file too
    return model, history, meta.get("train_seconds", 0.0)


def recheck_tolerance(n: int) -> float:
    """How far below its stored final ``val/acc`` a reloaded baseline may score on the ``n`` validation images:
    1 point, or 2 images on a split under 200 (evaluation on another device or thread count can flip a borderline
    image or two; a damaged model loses far more)."""
    return max(0.01, 2 / n) if n else 0.0


def _rechecked(path: Path, model: nn.Module, history: list[dict],
               recheck: Callable[[nn.Module], tuple[float, int]] | None) -> None:
    """Raise :class:`UnreadableFileError` naming ``model.pt`` when the loaded model scores below its stored final
    validation accuracy by more than :func:`recheck_tolerance` (``recheck(model)``: its (val accuracy, images))."""
    stored = [row["val/acc"] for row in history if "val/acc" in row]
    if recheck is None or not stored:
        return
    acc, n = recheck(model)
    if acc < stored[-1] - recheck_tolerance(n):
        raise UnreadableFileError(f"{path / 'model.pt'}: validation accuracy {acc:.4f} on reload, below the stored "
                                  f"final val/acc {stored[-1]:.4f} (tolerance {recheck_tolerance(n):.4f}): "
                                  "not the model that was trained")


def _num_classes(model: nn.Module) -> int | None:
    """The output width of ``model``'s last linear layer (its number of classes), or None."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last.out_features if last is not None else None


def get_or_train(cfg: EdgebenchConfig, store_dir: str | Path, build: Callable[[], nn.Module],
                 train: Callable[[nn.Module], list[dict]], num_classes: int | None = None,
                 data: str | None = None, recheck: Callable[[nn.Module], tuple[float, int]] | None = None,
                 what: str | None = None, keys: str = "trainer") -> Baseline:
    """Load the dense baseline for ``cfg`` from the store, or build, train and store it.

    ``data`` is the content digest of the data ``train`` uses (None: loaded here to compute it). ``recheck(model)``
    returns a loaded model's (validation accuracy, validation images) on that data: a stored model that scores
    below its own stored final ``val/acc`` (:func:`recheck_tolerance`) is set aside and trained again.

    A freshly trained baseline must be clearly better than chance (``num_classes`` classes; None:
    the output width of the model's last linear layer), or :class:`edgebench.training.DivergedError`
    is raised and nothing is cached (:class:`edgebench.training.NotLearnedError` for a falling loss: train longer); the
    store remembers that failure for this key (a later call raises :class:`edgebench.store.RememberedFailure`).
    ``what`` names the model in that message (default "the dense baseline (<model>)"), ``keys`` where its trainer
    settings are set (``trainer``, or ``method.teacher.trainer`` for a teacher).
    """
    key = baseline_key(cfg, data)
    h = key_hash(key)

    def train_checked() -> tuple[nn.Module, list[dict], float]:
        from edgebench import training  # Lightning loads only when something is trained

        model = build()
        t0 = time.perf_counter()
        history = train(model)
        seconds = time.perf_counter() - t0
        training.check_learned(history, num_classes or _num_classes(model), cfg.trainer,
                               what or f"the dense baseline ({cfg.model.name.value})", keys)
        return model, history, seconds

    if not cfg.use_baseline_cache:
        model, history, seconds = train_checked()
        return Baseline(model, history, False, None, h, seconds)

    def make() -> tuple[nn.Module, list[dict], float]:
        log.info("training the dense baseline (store key %s)", h)
        return train_checked()

    def save(value: tuple[nn.Module, list[dict], float], folder: Path) -> dict:
        model, history, seconds = value
        torch.save(model.state_dict(), folder / "model.pt")
        return {"key_hash": h, "history": history, "train_seconds": seconds}

    def load(p: Path) -> tuple[nn.Module, list[dict], float]:
        model, history, seconds = _load(p, build)
        _rechecked(p, model, history, recheck)
        return model, history, seconds

    from edgebench.training import SAME_EACH_TIME

    (model, history, seconds), hit, path = Store(store_dir).get_or_make(
        "baselines", key, make, save, load, name=_entry_name(cfg), what="baseline store entry",
        remember=SAME_EACH_TIME)
    log.info("dense baseline %s %s", "loaded from the store:" if hit else "stored in", path)
    return Baseline(model, history, hit, path, h, seconds)
