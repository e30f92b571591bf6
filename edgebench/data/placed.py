"""data=translated and data=cluttered: a base dataset placed on a larger black canvas.

The translated and cluttered datasets of Mnih et al. 2014 ("Recurrent Models of Visual
Attention"), built offline and deterministically from fashion_mnist, mnist or digits:

* translated: each image at a seeded random position on a ``canvas x canvas`` black image;
* cluttered: the same, plus ``clutter`` random 8x8 crops of *other* images of the same split at
  random positions, composited with an elementwise max so the clutter overlays (never erases).

The placement works on the raw [0, 1] images (the base loader with ``normalise=False``, so the
black canvas is exactly 0), the val split is carved from train as the base does, and the canvases
are normalised afterwards with the canvas training-split statistics. Each split (train, val, test)
draws from its own random stream seeded by ``data.split_seed``; the image positions are drawn
before the clutter, so data=cluttered with data.clutter=0 is data=translated, and with clutter it
is data=translated plus crops. Nothing is downloaded beyond what the base would download, and
nothing is written: the canvases are built in memory, once per process (see ``_CACHE``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from edgebench.config import DataConfig, DataName
from edgebench.data import sources
from edgebench.data.base import DataSplits, normalise_splits

log = logging.getLogger(__name__)

BASES = {
    "fashion_mnist": sources.load_fashion_mnist,
    "mnist": sources.load_mnist,
    "digits": sources.load_digits,
}
STREAMS = {"train": 0, "val": 1, "test": 2}  # one random stream per split: np.random.default_rng([seed, stream])
CHUNK = 8192  # images placed per scatter: bounds the index tensors (~8192 x 784 int64 = 51 MB for 28x28)

# Built datasets, keyed by every config value they depend on, so an in-process sweep (Hydra's basic
# launcher runs its jobs in one process) builds each once. Two entries at most: one entry can be
# gigabytes (70,000 x 100 x 100 float32 = 2.8 GB). Callers must not modify the tensors in place.
_CACHE: OrderedDict[tuple, DataSplits] = OrderedDict()
_CACHE_SIZE = 2


def crop_side(base: str) -> int:
    """Side of the clutter crops: Mnih et al.'s 8x8, but 4x4 for digits, whose images are only 8x8
    (an 8x8 crop of a digit would be a whole second digit, not clutter)."""
    return 4 if base == "digits" else 8


def _window(h: int, w: int, side: int) -> torch.Tensor:
    """Flat indices (h*w) of the h x w window at the top-left corner of a side x side canvas."""
    return (torch.arange(h)[:, None] * side + torch.arange(w)).flatten()


def place(x: torch.Tensor, canvas: int, clutter: int = 0, crop: int = 8,
          rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Place raw images on black canvases: ``(canvases, offsets)``.

    ``x`` is N x C x h x w in [0, 1]. Image i lands with its top-left corner at ``offsets[i]``
    (row, col), drawn uniformly so that it lies wholly inside the ``canvas x canvas`` image. Then
    ``clutter`` crops of ``crop x crop`` from other images of ``x`` (uniform source, uniform crop
    position, uniform position on the canvas) are composited with an elementwise max.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    n, ch, h, w = x.shape
    if canvas < max(h, w):
        raise ValueError(f"canvas {canvas} is smaller than the {h}x{w} images")
    # every random draw up front, in a fixed order: the result does not depend on CHUNK, and the
    # image offsets are the same with or without clutter
    offsets = torch.from_numpy(np.stack([rng.integers(0, canvas - h + 1, n), rng.integers(0, canvas - w + 1, n)], 1))
    if clutter:
        if n < 2:
            raise ValueError("clutter needs at least two images in a split (crops come from other images)")
        crop = min(crop, h, w)
        src = torch.from_numpy((np.arange(n)[:, None] + rng.integers(1, n, (n, clutter))) % n)  # never the image itself
        at_src = torch.from_numpy(np.stack([rng.integers(0, h - crop + 1, (n, clutter)),
                                            rng.integers(0, w - crop + 1, (n, clutter))], -1))
        at_dst = torch.from_numpy(rng.integers(0, canvas - crop + 1, (n, clutter, 2)))
    out = torch.zeros(n, ch, canvas * canvas, dtype=x.dtype)
    image_window, crop_window, ar = _window(h, w, canvas), _window(crop, crop, canvas), torch.arange(crop)
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        flat = out[s:e]  # a view: the scatters below write into out
        idx = (offsets[s:e, 0, None] * canvas + offsets[s:e, 1, None]) + image_window  # (n, h*w) flat canvas indices
        flat.scatter_(2, idx[:, None, :].expand(-1, ch, -1), x[s:e].reshape(e - s, ch, h * w))
        for k in range(clutter):
            r = at_src[s:e, k, 0, None] + ar
            c = at_src[s:e, k, 1, None] + ar
            crops = x[src[s:e, k, None, None], :, r[:, :, None], c[:, None, :]]  # (n, crop, crop, C)
            crops = crops.permute(0, 3, 1, 2).reshape(e - s, ch, crop * crop)
            idx = (at_dst[s:e, k, 0, None] * canvas + at_dst[s:e, k, 1, None]) + crop_window
            flat.scatter_reduce_(2, idx[:, None, :].expand(-1, ch, -1), crops, reduce="amax")
    return out.view(n, ch, canvas, canvas), offsets


def _cache_key(cfg: DataConfig, data_dir: str | Path) -> tuple:
    return (DataName(cfg.name).value, cfg.base, cfg.canvas, cfg.clutter, cfg.split_seed, cfg.val_fraction,
            cfg.test_fraction, cfg.root, cfg.download, str(Path(data_dir)))


def build_placed(cfg: DataConfig, data_dir: str | Path, *, normalise: bool = True) -> DataSplits:
    """Build data=translated|cluttered from its base, without the cache (``normalise=False``: raw [0, 1])."""
    name, data_dir = DataName(cfg.name).value, Path(data_dir)
    base_cfg = DataConfig(name=DataName(cfg.base), root=cfg.root, download=cfg.download,
                          val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, test_fraction=cfg.test_fraction)
    raw = BASES[cfg.base](base_cfg, data_dir, normalise=False)  # split like the base, but still [0, 1]
    t0 = time.perf_counter()
    crop = crop_side(cfg.base)
    placed = {}
    for split, stream in STREAMS.items():
        rng = np.random.default_rng([cfg.split_seed, stream])
        placed[f"{split}_x"], _ = place(getattr(raw, f"{split}_x"), cfg.canvas, cfg.clutter, crop, rng)
    what = f"placed on {cfg.canvas}x{cfg.canvas}"
    if cfg.clutter:
        what += f", {cfg.clutter} clutter crops of {crop}x{crop}"
    splits = dataclasses.replace(raw, name=name, source=f"{cfg.base} from {raw.source} {what}, seed {cfg.split_seed}",
                                 **placed)
    splits = normalise_splits(splits, inplace=True) if normalise else splits
    log.info("%s: %s (built in %.1f s)", name, splits.source, time.perf_counter() - t0)
    return splits


def load_placed(cfg: DataConfig, data_dir: str | Path, *, normalise: bool = True) -> DataSplits:
    """The loader of data=translated and data=cluttered (normalised splits come from the cache)."""
    if not normalise:
        return build_placed(cfg, data_dir, normalise=False)
    key = _cache_key(cfg, data_dir)
    if key not in _CACHE:
        _CACHE[key] = build_placed(cfg, data_dir)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return dataclasses.replace(_CACHE[key])  # a fresh DataSplits (over the same tensors): attribute changes stay local
