"""In-memory datasets and the data module every source feeds.

Small datasets live in memory as normalised float tensors, so batches are tensor slices
and no worker processes are needed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Optional

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset


class DataNotFoundError(FileNotFoundError):
    """The dataset's files are not where edgebench looked; the message says how to get them."""


@dataclass
class DataSplits:
    """Train/val/test tensors of one dataset. Images are N x C x H x W float32, labels int64."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    source: str = ""  # where the data came from, for the log and MLflow
    # the per-channel train statistics (1 x C x 1 x 1) the images were normalised with, x_norm = (x - mean) / std;
    # None while the images are still raw [0, 1] (a loader called with normalise=False)
    mean: Optional[torch.Tensor] = None
    std: Optional[torch.Tensor] = None
    # sha256 of the raw images and labels the splits were carved from (:func:`content_digest`): the data's identity
    # in every store key, wherever its files lie (data.root is in no key: the same bytes elsewhere are the same data)
    digest: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}


def content_digest(**tensors: torch.Tensor) -> str:
    """sha256 (hex) of named tensors: each one's name, dtype, shape and bytes, in the order given.

    Computed once per load, on the raw [0, 1] images and the labels before the validation split is carved and
    before normalisation (whose float reductions can differ in the last bit between thread counts): the carving
    and the normalisation are fixed by ``data.*`` (val_fraction, split_seed), which the store keys hold beside it.
    About 0.3 s for Fashion-MNIST's 70,000 images.
    """
    h = hashlib.sha256()
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")
    return h.hexdigest()


def carve_split(n: int, fraction: float, seed: int, labels: torch.Tensor | None = None):
    """Indices (keep, held_out) with a fixed seed; stratified by label when labels are given."""
    g = torch.Generator().manual_seed(seed)
    if labels is None:
        perm = torch.randperm(n, generator=g)
        k = int(round(n * fraction))
        return perm[k:].sort().values, perm[:k].sort().values
    held, keep = [], []
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(len(idx) * fraction))
        held.append(idx[:k])
        keep.append(idx[k:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values


def make_splits(
    name: str,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    val_fraction: float,
    split_seed: int,
    num_classes: int,
    class_names: list[str] | None = None,
    source: str = "",
    normalise: bool = True,
) -> DataSplits:
    """Carve the validation split from the training split and normalise with train statistics.

    ``train_x``/``test_x`` are float tensors in [0, 1], N x C x H x W. The per-channel mean and
    std come from the remaining training images only; the test split is never looked at. With
    ``normalise=False`` the splits keep the raw [0, 1] images (for datasets built from another
    one, e.g. data=translated, which normalise afterwards with :func:`normalise_splits`).
    """
    digest = content_digest(train_x=train_x, train_y=train_y.long(), test_x=test_x, test_y=test_y.long())
    keep, val = carve_split(len(train_y), val_fraction, split_seed, labels=train_y)
    splits = DataSplits(
        name=name,
        train_x=train_x[keep], train_y=train_y[keep].long(),
        val_x=train_x[val], val_y=train_y[val].long(),
        test_x=test_x, test_y=test_y.long(),
        num_classes=num_classes,
        class_names=class_names or [str(i) for i in range(num_classes)],
        source=source,
        digest=digest,
    )
    return normalise_splits(splits) if normalise else splits


def normalise_splits(splits: DataSplits, inplace: bool = False) -> DataSplits:
    """Raw [0, 1] splits normalised with the per-channel mean and std of their training split.

    Returns a new DataSplits that records ``mean`` and ``std``. ``inplace=True`` overwrites the
    image tensors instead of copying them (for large images the caller owns, e.g. data=translated).
    """
    if splits.mean is not None:
        raise ValueError(f"{splits.name}: the splits are already normalised")
    tx = splits.train_x
    mean = tx.mean(dim=(0, 2, 3), keepdim=True)
    std = tx.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)

    def norm(x: torch.Tensor) -> torch.Tensor:
        if inplace and x.is_contiguous():
            return x.sub_(mean).div_(std)
        return ((x - mean) / std).contiguous()

    return replace(splits, train_x=norm(splits.train_x), val_x=norm(splits.val_x), test_x=norm(splits.test_x),
                   mean=mean, std=std)


def batch_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """A DataLoader that fetches whole batches by tensor indexing (no per-sample collate)."""
    ds = TensorDataset(x, y)
    if shuffle:
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(ds)
    return DataLoader(ds, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None)


class EdgeDataModule:
    """The train (shuffled with ``seed``), validation and test loaders of one set of splits."""

    def __init__(self, splits: DataSplits, batch_size: int, eval_batch_size: int, seed: int = 0):
        self.splits = splits
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        s = self.splits
        return batch_loader(s.train_x, s.train_y, self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> DataLoader:
        s = self.splits
        return batch_loader(s.val_x, s.val_y, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        s = self.splits
        return batch_loader(s.test_x, s.test_y, self.eval_batch_size, shuffle=False)
