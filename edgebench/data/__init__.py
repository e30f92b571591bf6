"""Datasets: one loader per `data=` option, all returning in-memory :class:`DataSplits`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgebench.config import DataConfig, DataName
from edgebench.data.base import DataNotFoundError, DataSplits, EdgeDataModule, batch_loader
from edgebench.data.placed import load_placed
from edgebench.data.sources import (
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_image_folder,
    load_mnist,
    read_idx,
)

LOADERS = {
    DataName.fashion_mnist: load_fashion_mnist,
    DataName.mnist: load_mnist,
    DataName.digits: load_digits,
    DataName.cifar10: load_cifar10,
    DataName.image_folder: load_image_folder,
    DataName.translated: load_placed,  # a base dataset placed on a larger canvas (edgebench.data.placed)
    DataName.cluttered: load_placed,
}


KEPT = {DataName.fashion_mnist, DataName.mnist, DataName.digits, DataName.cifar10}  # fixed published sets
_LAST: tuple[str, DataSplits] | None = None  # the last splits this process loaded (a sweep's jobs share a process)


def load_data(cfg: DataConfig, data_dir: str | Path) -> DataSplits:
    """Load the dataset named by ``cfg.name`` into memory, split and normalised.

    The process keeps the last splits of a published data set it loaded (not an image folder, whose files may change),
    as data=translated|cluttered keeps its own (:mod:`placed`): the next
    run of a sweep or study in the same process (Hydra's launchers run many jobs per process) with the same data
    config gets a fresh :class:`DataSplits` over the same tensors without reading, splitting and hashing again (4-6 s
    for Fashion-MNIST). Nothing writes to the tensors after loading."""
    global _LAST
    name = DataName(cfg.name)
    if LOADERS[name] is load_placed:
        return load_placed(cfg, Path(data_dir))
    if name not in KEPT:  # a folder of the user's images may change between two runs of one process: read it again
        return LOADERS[name](cfg, Path(data_dir))
    from edgebench.store import digest

    key = digest({"cfg": cfg, "dir": str(Path(data_dir).resolve())})
    if _LAST is None or _LAST[0] != key:
        _LAST = None  # the old splits go before the new ones load
        _LAST = (key, LOADERS[name](cfg, Path(data_dir)))
    return dataclasses.replace(_LAST[1])  # attribute changes a caller makes stay its own
