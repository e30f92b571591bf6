"""data=translated and data=cluttered: base images placed on a black canvas, seeded, with clutter.

Built on sklearn's digits (8x8) so every test runs in seconds; one slow test uses Debian's
Fashion-MNIST when it is installed.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edgebench.config import ConfigError, DataConfig, validate
from edgebench.data import load_data, placed, sources
from edgebench.data.base import normalise_splits

DATA_DIR = Path("unused")  # digits and the Debian Fashion-MNIST need no data_dir
SPLITS = ("train", "val", "test")


def cfg(name="translated", base="digits", canvas=16, clutter=None, **kw) -> DataConfig:
    if clutter is None:
        clutter = 3 if name == "cluttered" else 0
    return DataConfig(name=name, base=base, canvas=canvas, clutter=clutter, **kw)


def raw_base(split_seed: int = 0):
    """The digits splits placed images come from, still in [0, 1] (same carve as the base)."""
    return sources.load_digits(DataConfig(name="digits", split_seed=split_seed), DATA_DIR, normalise=False)


def matches(canvas: torch.Tensor, orig: torch.Tensor, atol: float = 0.0) -> torch.Tensor:
    """(N, S-h+1, S-w+1) bool: where ``orig`` sits in ``canvas`` with nothing but zeros around it."""
    s, (h, w) = canvas.shape[-1], orig.shape[-2:]
    chunk = max(1, 2**24 // ((s - h + 1) * (s - w + 1) * h * w))  # all windows of all images at once: GBs at 60x60
    out = []
    for i in range(0, len(canvas), chunk):
        cv, og = canvas[i:i + chunk], orig[i:i + chunk]
        patches = cv[:, 0].unfold(1, h, 1).unfold(2, w, 1)  # (n, S-h+1, S-w+1, h, w)
        same = (patches - og[:, 0, None, None]).abs().amax(dim=(-1, -2)) <= atol
        # pixels brighter than atol outside the window (counts, so no float summation error)
        outside = cv.abs().gt(atol).sum(dim=(1, 2, 3))[:, None, None] - patches.abs().gt(atol).sum(dim=(-1, -2))
        out.append(same & (outside == 0))
    return torch.cat(out)


def offsets(canvas: torch.Tensor, orig: torch.Tensor, atol: float = 0.0) -> torch.Tensor:
    """N x 2 (row, col) of the one place where each original image sits; asserts exactly one."""
    m = matches(canvas, orig, atol)
    assert torch.equal(m.sum(dim=(1, 2)), torch.ones(len(m), dtype=torch.long)), "not exactly one place per image"
    return torch.nonzero(m)[:, 1:]


def bbox_offsets(canvas: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
    """N x 2 offsets from the first nonzero row and column (cheap; valid for translated canvases only)."""
    def first(x: torch.Tensor, dim: int) -> torch.Tensor:
        return x[:, 0].ne(0).any(dim=dim).int().argmax(dim=1)

    return torch.stack([first(canvas, 2) - first(orig, 2), first(canvas, 1) - first(orig, 1)], 1)


def test_shape_labels_classes_and_source():
    s = load_data(cfg(canvas=20), DATA_DIR)
    base = load_data(DataConfig(name="digits"), DATA_DIR)
    assert s.name == "translated" and s.input_shape == (1, 20, 20)
    assert s.sizes() == base.sizes() == {"train": 1295, "val": 143, "test": 359}  # val carved as the base does
    for split in SPLITS:
        assert getattr(s, f"{split}_x").shape[-2:] == (20, 20)
        assert torch.equal(getattr(s, f"{split}_y"), getattr(base, f"{split}_y"))
    assert s.class_names == base.class_names and s.num_classes == 10
    assert s.source == "digits from sklearn.datasets.load_digits placed on 20x20, seed 0"
    c = load_data(cfg("cluttered", canvas=20, clutter=2), DATA_DIR)
    assert c.source == "digits from sklearn.datasets.load_digits placed on 20x20, 2 clutter crops of 4x4, seed 0"
    # normalised with the canvas train statistics (not the base's)
    assert abs(float(s.train_x.mean())) < 1e-4 and abs(float(s.train_x.std()) - 1) < 1e-3
    assert float(s.mean) < float(base.mean)  # the black canvas pulls the mean down


def test_seam_raw_then_normalise_is_the_normal_loader():
    """The base loaders' normalise=False + normalise_splits gives exactly what the loaders always gave."""
    a = sources.load_digits(DataConfig(name="digits"), DATA_DIR)
    b = normalise_splits(raw_base())
    for split in SPLITS:
        assert torch.equal(getattr(a, f"{split}_x"), getattr(b, f"{split}_x"))
    assert torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)
    assert raw_base().mean is None and float(raw_base().train_x.min()) == 0.0


def test_hand_check_one_image():
    raw = placed.build_placed(cfg(), DATA_DIR, normalise=False)
    canvas, orig = raw.test_x[0, 0], raw_base().test_x[0, 0]
    # locate it by the bounding boxes of the nonzero pixels of the digit and of the canvas
    rows, cols = torch.nonzero(orig, as_tuple=True)
    crow, ccol = torch.nonzero(canvas, as_tuple=True)
    r, c = int(crow.min() - rows.min()), int(ccol.min() - cols.min())
    assert 0 <= r <= 8 and 0 <= c <= 8
    assert torch.equal(canvas[r:r + 8, c:c + 8], orig)  # the digit, bit for bit
    rest = canvas.clone()
    rest[r:r + 8, c:c + 8] = 0
    assert not rest.any()  # black elsewhere


def test_each_image_once_on_black_exact_and_unnormalised():
    raw = placed.build_placed(cfg(), DATA_DIR, normalise=False)
    s = load_data(cfg(), DATA_DIR)
    base = raw_base()
    for split in SPLITS:
        x, orig = getattr(raw, f"{split}_x"), getattr(base, f"{split}_x")
        offsets(x, orig)  # the raw canvases: exactly, bit for bit
        # what the loader gives, un-normalised with the statistics it records
        unnorm = getattr(s, f"{split}_x") * s.std + s.mean
        assert torch.equal(offsets(unnorm, orig, atol=1e-5), offsets(x, orig))


def test_same_seed_same_tensors_other_seed_other_positions():
    a = placed.build_placed(cfg(), DATA_DIR)  # no cache: built twice
    b = placed.build_placed(cfg(), DATA_DIR)
    for split in SPLITS:
        assert torch.equal(getattr(a, f"{split}_x"), getattr(b, f"{split}_x"))
    o0 = offsets(placed.build_placed(cfg(), DATA_DIR, normalise=False).train_x, raw_base(0).train_x)
    o1 = offsets(placed.build_placed(cfg(split_seed=1), DATA_DIR, normalise=False).train_x, raw_base(1).train_x)
    assert (o0 == o1).all(dim=1).float().mean() < 0.1  # 1/81 agree by chance


def test_splits_draw_from_their_own_streams():
    raw, base = placed.build_placed(cfg(), DATA_DIR, normalise=False), raw_base()
    o = {split: offsets(getattr(raw, f"{split}_x"), getattr(base, f"{split}_x")) for split in SPLITS}
    n = len(o["val"])
    assert not torch.equal(o["train"][:n], o["val"]) and not torch.equal(o["val"], o["test"][:n])
    g = np.random.default_rng([0, placed.STREAMS["test"]])  # the documented stream of the test split
    expected = np.stack([g.integers(0, 9, len(o["test"])), g.integers(0, 9, len(o["test"]))], 1)
    assert np.array_equal(o["test"].numpy(), expected)


def test_positions_cover_the_canvas():
    raw = placed.build_placed(cfg(), DATA_DIR, normalise=False)
    o = offsets(raw.train_x, raw_base().train_x)
    assert len({tuple(p) for p in o.tolist()}) == 81  # every one of the 9 x 9 positions is used
    assert o.min() == 0 and o.max() == 8
    assert abs(float(o.float().mean()) - 4) < 0.3  # uniform, not piled in a corner
    big = placed.build_placed(cfg(canvas=40), DATA_DIR, normalise=False)
    ob = offsets(big.test_x, raw_base().test_x)
    assert ob.min() <= 2 and ob.max() >= 30


def test_cluttered_adds_crops_outside_the_image_and_overlays():
    t = placed.build_placed(cfg(), DATA_DIR, normalise=False)
    c = placed.build_placed(cfg("cluttered", clutter=4), DATA_DIR, normalise=False)
    base = raw_base()
    for split in SPLITS:
        tx, cx = getattr(t, f"{split}_x"), getattr(c, f"{split}_x")
        assert (cx >= tx).all()  # the same image positions, clutter composited with max: nothing erased
        assert float(cx.max()) <= 1.0 and float(cx.min()) == 0.0
        o = offsets(tx, getattr(base, f"{split}_x"))
        outside = cx.clone()
        for i, (r, col) in enumerate(o.tolist()):
            outside[i, :, r:r + 8, col:col + 8] = 0
        has_clutter = outside.flatten(1).gt(0).any(dim=1)
        assert has_clutter.float().mean() > 0.9, f"{split}: clutter outside the image in too few canvases"
        assert outside.flatten(1).gt(0).sum(1).max() <= 4 * 16  # at most four 4x4 crops
    assert not torch.equal(t.train_x, c.train_x)


def test_clutter_zero_is_translated():
    t = load_data(cfg(), DATA_DIR)
    c = load_data(cfg("cluttered", clutter=0), DATA_DIR)
    assert c.name == "cluttered" and t.name == "translated"
    for split in SPLITS:
        assert torch.equal(getattr(t, f"{split}_x"), getattr(c, f"{split}_x"))


def test_crops_come_from_other_images_and_have_the_crop_size():
    # image i is the constant (i + 1) / 10: every pixel tells which image it came from
    x = (torch.arange(1, 9, dtype=torch.float32) / 10).view(8, 1, 1, 1).expand(8, 1, 8, 8).contiguous()
    out, off = placed.place(x, 40, clutter=1, crop=4, rng=np.random.default_rng(3))
    for i in range(8):
        img = out[i, 0].clone()
        r, c = off[i].tolist()
        assert torch.all(img[r:r + 8, c:c + 8] >= x[i, 0, 0, 0])  # the image, maybe under brighter clutter
        img[r:r + 8, c:c + 8] = 0
        vals = set(img[img > 0].tolist())
        assert x[i, 0, 0, 0].item() not in vals  # never a crop of itself
        if i == 0:  # the darkest image: its one crop is wholly visible, a 4x4 square of one other image
            (v,) = vals
            rows, cols = torch.nonzero(out[0, 0] == v, as_tuple=True)
            assert len(rows) == 16 and int(rows.max() - rows.min()) == 3 and int(cols.max() - cols.min()) == 3


def test_built_once_per_process():
    placed._CACHE.clear()
    a, b = load_data(cfg(), DATA_DIR), load_data(cfg(), DATA_DIR)
    assert a is not b and a.train_x is b.train_x  # one build, a fresh DataSplits each time
    a.train_x = None  # a caller replacing an attribute does not change the cached entry
    assert load_data(cfg(), DATA_DIR).train_x is b.train_x
    c = load_data(cfg(split_seed=1), DATA_DIR)
    assert c.train_x is not b.train_x
    load_data(cfg(canvas=12), DATA_DIR)
    assert len(placed._CACHE) == placed._CACHE_SIZE  # the oldest entry went


@pytest.mark.parametrize("overrides,key,msg", [
    (dict(canvas=7), "data.canvas", "must be >= the 8x8 images of data.base=digits, got 7"),
    (dict(base="fashion_mnist", canvas=10), "data.canvas", "must be >= the 28x28 images"),
    (dict(base="cifar10"), "data.base", "must be one of fashion_mnist, mnist, digits"),
    (dict(clutter=2), "data.clutter", "data=translated has no clutter"),
    (dict(name="cluttered", clutter=-1), "data.clutter", "must be >= 0"),
])
def test_bad_config_names_the_key(overrides, key, msg):
    with pytest.raises(ConfigError, match="^" + re.escape(f"{key}: {msg}")):
        cfg(**overrides)


def test_bad_config_from_the_command_line(make_cfg):
    spec = validate(make_cfg("data=cluttered", "data.base=digits", "data.canvas=16"))
    assert (spec.data.base, spec.data.canvas, spec.data.clutter) == ("digits", 16, 4)
    with pytest.raises(ConfigError, match=r"^data\.canvas: must be >= the 28x28 images of data\.base=fashion_mnist, got 10$"):
        validate(make_cfg("data=translated", "data.canvas=10"))
    with pytest.raises(ConfigError, match=r"^data\.canvas: applies to data=translated\|cluttered only, not data=digits$"):
        validate(make_cfg("data=digits", "data.canvas=60"))


@pytest.mark.slow
@pytest.mark.skipif(not sources.DEBIAN_FASHION_MNIST.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_cluttered_fashion_mnist_from_debian():
    t0 = time.perf_counter()
    c = placed.build_placed(cfg("cluttered", base="fashion_mnist", canvas=60, clutter=4), DATA_DIR, normalise=False)
    built = time.perf_counter() - t0
    assert c.sizes() == {"train": 54000, "val": 6000, "test": 10000} and c.input_shape == (1, 60, 60)
    assert c.class_names == sources.FASHION_CLASSES
    assert c.source.startswith(f"fashion_mnist from {sources.DEBIAN_FASHION_MNIST} placed on 60x60, 4 clutter crops of 8x8")
    t = placed.build_placed(cfg(base="fashion_mnist", canvas=60), DATA_DIR, normalise=False)
    base = sources.load_fashion_mnist(DataConfig(name="fashion_mnist"), DATA_DIR, normalise=False)
    o = bbox_offsets(t.train_x, base.train_x)
    assert o.min() == 0 and o.max() == 32 and len({tuple(p) for p in o.tolist()}) == 33 * 33  # 54,000 over 1,089
    assert torch.equal(offsets(t.test_x[:256], base.test_x[:256]), bbox_offsets(t.test_x[:256], base.test_x[:256]))
    assert (c.test_x >= t.test_x).all() and (c.test_x > t.test_x).flatten(1).any(1).float().mean() > 0.9
    assert built < 60, f"building cluttered Fashion-MNIST took {built:.0f} s"
