"""The model zoo: ``build_model(cfg, input_shape, num_classes)`` for every `model=` option.

Small nets are sized from the input shape. Torchvision nets are built exactly as torchvision
builds them (only ``num_classes`` changes); when the data does not fit them, a parameter-free
:class:`InputAdapter` in front repeats a grayscale channel to RGB and resizes images smaller
than the net's minimum resolution up to it (bilinear). GoogLeNet and Inception v3 are built
without their training-only auxiliary classifiers, as deployed.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from edgebench.config import ModelConfig, ModelName
from edgebench.models.ram import RecurrentAttention
from edgebench.models.small import ConvNet, LeNet5, LeNet300100, ResNetCifar, SmallConv2

log = logging.getLogger(__name__)

SMALL: dict[str, Callable[[tuple[int, int, int], int], nn.Module]] = {
    "lenet_300_100": LeNet300100,
    "lenet5": LeNet5,
    "conv2": partial(ConvNet, blocks=1),
    "conv4": partial(ConvNet, blocks=2),
    "conv6": partial(ConvNet, blocks=3),
    "resnet8": partial(ResNetCifar, depth=8),  # MLPerf Tiny's image-classification ResNet-8 (78 k parameters)
    "resnet20": partial(ResNetCifar, depth=20),
    "conv2_small": SmallConv2,
}
SMALL_MIN_SIZE = {"lenet5": LeNet5.min_input_size, "conv2_small": 4}

# Smallest square input each torchvision net accepts (its downsampling must leave >= 1 pixel).
TORCHVISION_MIN_SIZE = {
    "alexnet": 64, "vgg11": 32, "vgg16": 32, "vgg19": 32, "googlenet": 32, "inception_v3": 75,
    "resnet18": 32, "resnet50": 32, "resnet152": 32, "densenet121": 32,
    "mobilenet_v2": 32, "mobilenet_v3_small": 32,
}
TORCHVISION_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


class PretrainedWeightsError(FileNotFoundError):
    """Pretrained weights were asked for but are not in the local cache (edgebench never downloads)."""


class InputAdapter(nn.Module):
    """Parameter-free front: repeat 1 channel to 3, and resize up to ``size`` when smaller."""

    def __init__(self, in_channels: int, out_channels: int, size: int | None):
        super().__init__()
        self.in_channels, self.out_channels, self.size = in_channels, out_channels, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1 and self.out_channels != 1:  # a broadcast view: litert-torch mis-lowers aten.repeat
            x = x.expand(-1, self.out_channels, -1, -1)
        elif self.in_channels != self.out_channels:
            x = x.repeat(1, self.out_channels // self.in_channels, 1, 1)
        if self.size is not None:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x

    def extra_repr(self) -> str:
        return f"channels {self.in_channels}->{self.out_channels}, resize_to={self.size}"


class Adapted(nn.Module):
    """``adapter`` then ``net``; the net keeps its own parameter names under ``net.``."""

    def __init__(self, adapter: InputAdapter, net: nn.Module):
        super().__init__()
        self.adapter = adapter
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.adapter(x))


def _resize_target(h: int, w: int, min_size: int) -> int | None:
    return min_size if min(h, w) < min_size else None


def torchvision_weights_path(name: str) -> Path:
    """Where torch.hub keeps the DEFAULT weights file of a torchvision model."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _load_pretrained(name: str, net: nn.Module, num_classes: int) -> None:
    path = torchvision_weights_path(name)
    if not path.exists():
        raise PretrainedWeightsError(
            f"model.pretrained=true: torchvision weights for {name} are not in the cache ({path}). "
            f"edgebench never downloads weights; copy the file there (e.g. from a machine with a network, "
            f"`python -c \"import torchvision; torchvision.models.{name}(weights='DEFAULT')\"`), "
            "set TORCH_HOME to a folder that has it, or use model.pretrained=false."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if num_classes != 1000:  # keep the backbone, leave the new classifier head freshly initialised
        own = net.state_dict()
        state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if unexpected:
        raise PretrainedWeightsError(f"{path} does not match torchvision's {name}: unexpected keys {unexpected[:5]}")
    log.info("loaded pretrained %s from %s (%d tensors re-initialised for %d classes)",
             name, path, len(missing), num_classes)


def build_model(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build the zoo model named by ``cfg.name`` for inputs of ``input_shape`` (C, H, W)."""
    name = ModelName(cfg.name).value
    c, h, w = input_shape
    if name == "ram":  # reads glimpses of any image size: no adapter, nothing sized from H x W
        if cfg.pretrained:
            raise PretrainedWeightsError("model.pretrained=true: there are no pretrained weights for ram")
        return RecurrentAttention(input_shape, num_classes, glimpse_size=cfg.glimpse_size, scales=cfg.scales,
                                  glimpses=cfg.glimpses, loc_std=cfg.loc_std, hidden=cfg.hidden)
    if name in SMALL:
        if cfg.pretrained:
            raise PretrainedWeightsError(f"model.pretrained=true: there are no pretrained weights for {name}; "
                                         "only torchvision models have them.")
        min_size = cfg.min_input_size or SMALL_MIN_SIZE.get(name, 0)
        size = _resize_target(h, w, min_size) if min_size else None
        if size is None:
            return SMALL[name](input_shape, num_classes)
        return Adapted(InputAdapter(c, c, size), SMALL[name]((c, size, size), num_classes))

    kwargs = dict(TORCHVISION_KWARGS.get(name, {}))
    if cfg.width_mult is not None:
        kwargs["width_mult"] = cfg.width_mult
    if cfg.pretrained:
        kwargs["init_weights"] = False if "init_weights" in kwargs else None
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if cfg.pretrained:
        _load_pretrained(name, net, num_classes)
    size = _resize_target(h, w, cfg.min_input_size or TORCHVISION_MIN_SIZE[name])
    if c == 3 and size is None:
        return net
    if c not in (1, 3):
        raise ValueError(f"{name} takes 1- or 3-channel images, the data has {c} channels")
    return Adapted(InputAdapter(c, 3, size), net)


MODEL_NAMES = [m.value for m in ModelName]

__all__ = ["build_model", "MODEL_NAMES", "InputAdapter", "PretrainedWeightsError", "torchvision_weights_path"]
