"""The dense-baseline cache.

A dense model is trained once per key (model, data, training config, seed) and reused by every
later run with the same key. Entries are folders ``<cache_dir>/baselines/<model>-<data>-<hash>/``
holding ``model.pt`` (the state dict) and ``meta.json`` (the key, the training history, timings).
An entry is written to a temporary folder and renamed into place, under a file lock, so a
crash never leaves half an entry and parallel jobs never train the same baseline twice.
An unreadable entry is reported, moved aside and retrained.
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
from typing import Callable

import torch
from filelock import FileLock
from torch import nn

from edgebench.config import EdgebenchConfig

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
# Fields that change how files are found or shown, never the trained weights.
_DATA_IGNORED = {"root", "download"}
_TRAINER_IGNORED = {"progress_bar"}


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
    meta = json.loads((path / "meta.json").read_text())
    model = build()
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    return model, meta


def get_or_train(cfg: EdgebenchConfig, cache_dir: str | Path, build: Callable[[], nn.Module],
                 train: Callable[[nn.Module], list[dict]]) -> Baseline:
    """Load the cached dense baseline for ``cfg``, or build, train and cache it."""
    key = baseline_key(cfg)
    h = key_hash(key)
    path = entry_dir(cache_dir, cfg)
    if not cfg.use_baseline_cache:
        model = build()
        t0 = time.perf_counter()
        history = train(model)
        return Baseline(model, history, False, None, h, time.perf_counter() - t0)

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            try:
                model, meta = _load(path, build)
                log.info("dense baseline loaded from cache %s", path)
                return Baseline(model, meta["history"], True, path, h, meta.get("train_seconds", 0.0))
            except Exception as e:  # corrupt or incompatible entry
                bad = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
                log.warning("baseline cache entry %s is unreadable (%s: %s); moved to %s and retraining",
                            path, type(e).__name__, e, bad)
                os.replace(path, bad)
        model = build()
        log.info("training the dense baseline (cache key %s)", h)
        t0 = time.perf_counter()
        history = train(model)
        seconds = time.perf_counter() - t0
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        torch.save(model.state_dict(), tmp / "model.pt")
        meta = {"key": key, "key_hash": h, "history": history, "train_seconds": seconds,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        os.replace(tmp, path)
        log.info("dense baseline cached in %s", path)
        return Baseline(model, history, False, path, h, seconds)
