"""Dataset sources: each turns a DataConfig into raw [0, 1] tensors plus labels.

Every loader is ``load_<name>(cfg, data_dir, *, normalise=True)``: split and normalised with the
training statistics, or with ``normalise=False`` split but still raw [0, 1] (datasets built from
another one, such as data=translated, place the raw images and normalise afterwards).
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import torch

from edgebench.config import DataConfig
from edgebench.data.base import DataNotFoundError, DataSplits, carve_split, make_splits

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (the MNIST / Fashion-MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are supported, got type 0x{dtype_code:02x}")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {arr.size}")
    return arr.reshape(dims)


def _find_idx_dir(candidates: list[Path]) -> Path | None:
    for d in candidates:
        if all((d / f).exists() or (d / (f + ".gz")).exists() for f in IDX_FILES.values()):
            return d
    return None


def _load_idx_dir(d: Path) -> dict[str, np.ndarray]:
    out = {}
    for key, f in IDX_FILES.items():
        p = d / f if (d / f).exists() else d / (f + ".gz")
        out[key] = read_idx(p)
    return out


def _idx_to_splits(name: str, arrays: dict[str, np.ndarray], cfg: DataConfig, classes: list[str], source: str,
                   normalise: bool = True):
    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.copy()).float().div_(255.0).unsqueeze(1)

    return make_splits(
        name, images(arrays["train_x"]), torch.from_numpy(arrays["train_y"].astype(np.int64)),
        images(arrays["test_x"]), torch.from_numpy(arrays["test_y"].astype(np.int64)),
        val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, num_classes=10,
        class_names=classes, source=source, normalise=normalise,
    )


def _idx_file_list() -> str:
    return ", ".join(f"{f}(.gz)" for f in IDX_FILES.values())


def _root_without_data(name: str, root: Path, subdir: str, extra: str = "") -> DataNotFoundError:
    """The error for a data.root that was given but does not hold the dataset (never a silent fallback)."""
    state = "does not exist" if not root.exists() else "does not hold them"
    return DataNotFoundError(
        f"data.root={root}: {name} IDX files not found there ({state}). The folder (or its {subdir} "
        f"sub-folder) must hold the four IDX files {_idx_file_list()}. Point data.root at such a folder, "
        f"set data.download=true to download them into it{extra}."
    )


def load_fashion_mnist(cfg: DataConfig, data_dir: Path, *, normalise: bool = True) -> DataSplits:
    if cfg.root:  # a given root is where the data must be: no fallback to another copy
        root = Path(cfg.root)
        found = _find_idx_dir([root, root / "FashionMNIST" / "raw"])
        if found is None and cfg.download:
            found = _find_idx_dir([_torchvision_download("FashionMNIST", root) or root])
        if found is None:
            raise _root_without_data(
                "Fashion-MNIST", root, "FashionMNIST/raw",
                ", or leave data.root unset to use the system copy (`sudo apt-get install dataset-fashion-mnist`, "
                f"installs to {DEBIAN_FASHION_MNIST}). For a quick try without files use data=digits")
    else:
        candidates = [DEBIAN_FASHION_MNIST, data_dir / "FashionMNIST" / "raw"]
        found = _find_idx_dir(candidates)
        if found is None and cfg.download:
            found = _torchvision_download("FashionMNIST", data_dir)
        if found is None:
            looked = ", ".join(str(c) for c in candidates)
            raise DataNotFoundError(
                f"Fashion-MNIST IDX files not found (looked in: {looked}). Get them with "
                "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, installs to "
                f"{DEBIAN_FASHION_MNIST}), or point data.root at a folder holding the four IDX files "
                f"{_idx_file_list()}, or set data.download=true on a machine with a network. "
                "For a quick try without files use data=digits."
            )
    log.info("Fashion-MNIST from %s", found)
    return _idx_to_splits("fashion_mnist", _load_idx_dir(found), cfg, FASHION_CLASSES, str(found), normalise)


def _torchvision_download(cls_name: str, data_dir: Path) -> Path | None:
    """Download an IDX dataset with torchvision; None (with a warning) when there is no network."""
    import torchvision

    try:
        getattr(torchvision.datasets, cls_name)(str(data_dir), train=True, download=True)
        getattr(torchvision.datasets, cls_name)(str(data_dir), train=False, download=True)
    except Exception as e:  # no network, a proxy error, a refused connection ...
        log.warning("torchvision could not download %s: %s", cls_name, e)
        return None
    return data_dir / cls_name / "raw"


def load_mnist(cfg: DataConfig, data_dir: Path, *, normalise: bool = True) -> DataSplits:
    root = Path(cfg.root) if cfg.root else data_dir
    found = _find_idx_dir([root, root / "MNIST" / "raw"])
    if found is None and cfg.download:
        found = _find_idx_dir([_torchvision_download("MNIST", root) or root])
    if found is None:
        if cfg.root:
            raise _root_without_data("MNIST", root, "MNIST/raw", ", or leave data.root unset (default: "
                                     f"{data_dir}). For a quick try without files use data=digits")
        raise DataNotFoundError(
            f"MNIST IDX files not found under {root} (or {root / 'MNIST' / 'raw'}). Copy the four IDX "
            f"files {_idx_file_list()} there, set data.root to where they are, or set data.download=true "
            "on a machine with a network."
        )
    return _idx_to_splits("mnist", _load_idx_dir(found), cfg, [str(i) for i in range(10)], str(found), normalise)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as (images N x 8 x 8 in 0..16, labels): its ``digits.csv.gz`` read as
    ``sklearn.datasets.load_digits`` reads it, without importing scikit-learn (about 1.5 s of a short run)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        f = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if f.is_file():
            data = np.loadtxt(f, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sk_digits  # a scikit-learn that keeps the file elsewhere

    d = sk_digits()
    return d.images, d.target


def load_digits(cfg: DataConfig, data_dir: Path, *, normalise: bool = True) -> DataSplits:
    images, labels = _digits_arrays()
    x = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    keep, test = carve_split(len(y), cfg.test_fraction, cfg.split_seed, labels=y)
    return make_splits(
        "digits", x[keep], y[keep], x[test], y[test],
        val_fraction=cfg.val_fraction, split_seed=cfg.split_seed + 1, num_classes=10,
        source="sklearn.datasets.load_digits", normalise=normalise,
    )


def load_cifar10(cfg: DataConfig, data_dir: Path, *, normalise: bool = True) -> DataSplits:
    import torchvision

    root = Path(cfg.root) if cfg.root else data_dir
    try:
        train = torchvision.datasets.CIFAR10(str(root), train=True, download=cfg.download)
        test = torchvision.datasets.CIFAR10(str(root), train=False, download=cfg.download)
    except Exception as e:
        raise DataNotFoundError(
            f"CIFAR-10 not found under {root} ({e}). Put the extracted cifar-10-batches-py folder "
            "there, set data.root, or set data.download=true on a machine with a network."
        ) from None

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255.0)

    return make_splits(
        "cifar10", images(train.data), torch.tensor(train.targets), images(test.data), torch.tensor(test.targets),
        val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, num_classes=10,
        class_names=list(train.classes), source=str(root), normalise=normalise,
    )


def load_image_folder(cfg: DataConfig, data_dir: Path, *, normalise: bool = True) -> DataSplits:
    import torchvision
    from torchvision import transforms

    root = Path(cfg.root or "")
    if not root.is_dir():
        raise DataNotFoundError(f"data.root={root} is not a folder. data=image_folder needs a folder with "
                                "one sub-folder of images per class (or train/ and test/ holding those).")
    tf = transforms.Compose([
        transforms.Grayscale(1) if cfg.channels == 1 else transforms.Lambda(lambda im: im.convert("RGB")),
        transforms.Resize((cfg.image_size, cfg.image_size)),
        transforms.ToTensor(),
    ])

    def load(folder: Path):
        try:
            ds = torchvision.datasets.ImageFolder(str(folder), transform=tf)
        except FileNotFoundError as e:  # no class folders, or class folders without images: torchvision's traceback
            what = "no class folders" if "class folder" in str(e) else "no images in its class folders"
            raise DataNotFoundError(f"data.root={root}: {what} in {folder} ({e}). data=image_folder needs one "
                                    "sub-folder of images per class (or train/ and test/ holding those).") from None
        if len(ds) == 0:
            raise DataNotFoundError(f"no images found under {folder}")
        xs, ys = zip(*[ds[i] for i in range(len(ds))])
        return torch.stack(xs), torch.tensor(ys), ds.classes

    if (root / "train").is_dir() and (root / "test").is_dir():
        tx, ty, classes = load(root / "train")
        sx, sy, test_classes = load(root / "test")
        if test_classes != classes:
            raise DataNotFoundError(f"{root}/train and {root}/test have different class folders: "
                                    f"{classes} vs {test_classes}")
    else:
        x, y, classes = load(root)
        keep, test = carve_split(len(y), cfg.test_fraction, cfg.split_seed, labels=y)
        tx, ty, sx, sy = x[keep], y[keep], x[test], y[test]
    return make_splits(
        "image_folder", tx, ty, sx, sy, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed,
        num_classes=len(classes), class_names=list(classes), source=str(root), normalise=normalise,
    )
