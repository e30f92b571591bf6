"""Datasets: one loader per `data=` option, all returning in-memory :class:`DataSplits`."""

from __future__ import annotations

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


def load_data(cfg: DataConfig, data_dir: str | Path) -> DataSplits:
    """Load the dataset named by ``cfg.name`` into memory, split and normalised."""
    return LOADERS[DataName(cfg.name)](cfg, Path(data_dir))


__all__ = ["DataNotFoundError", "DataSplits", "EdgeDataModule", "batch_loader", "load_data", "read_idx", "LOADERS"]
