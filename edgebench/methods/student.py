"""DistilBERT-style student initialisation (Sanh et al. 2019) for the CNN families of the zoo.

DistilBERT's student keeps the teacher's architecture with fewer layers and starts from the
teacher's own layers (one of every two). :func:`half_depth` does the same for CNNs: it deep-copies
the teacher, removes every other repeatable unit and leaves everything kept bit-identical:

* CIFAR ResNets (``resnet20``) and torchvision ResNets (``resnet18``, ``resnet50``, ...): in every
  stage (``blocks`` grouped by width / ``layerN``) keep blocks 0, 2, 4, ... Block 0 carries the
  downsampling shortcut; later blocks map c -> c at stride 1, so dropping them keeps all shapes.
  ResNet-20 (3 blocks a stage) -> ResNet-14-like (2); resnet18 (2 a layer) -> 1; resnet50 3/4/6/3 -> 2/2/3/2.
* Conv-2/4/6 and torchvision VGG: within each stage (the convolutions between two max-pools) keep
  convs 0, 2, 4, ... with the BatchNorm/ReLU after each; the dropped convs all map c -> c at stride 1
  with 'same' padding, so the channel flow, the pooling and the classifier's input are unchanged.
  Conv-2/4/6 thus loses the second conv of every block.

The stem, every kept block/conv (weights, BatchNorm affine parameters and running statistics) and
the classifier are copied exactly; an :class:`~edgebench.models.Adapted` wrapper (parameter-free
input adapter) is kept as is. The student is the teacher's own classes with shorter ``nn.Sequential``
containers, so it trains and exports like any zoo model. Other families raise ConfigError.
"""

from __future__ import annotations

import copy

import torchvision
from torch import nn

from edgebench.config import ConfigError
from edgebench.models import Adapted
from edgebench.models.small import ConvNet, ResNetCifar

SUPPORTED = ("CIFAR ResNet (resnet20), torchvision ResNet (resnet18/resnet50/resnet152), "
             "Conv-2/4/6 (conv2/conv4/conv6), torchvision VGG (vgg11/vgg16/vgg19)")

Copied = list[tuple[str, str]]


def _every_other(n: int) -> list[int]:
    return list(range(0, n, 2))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _has_state(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))


def _thin_blocks(seq: nn.Sequential, groups: list[list[int]], t_prefix: str, s_prefix: str,
                 copied: Copied) -> nn.Sequential:
    """Keep indices 0, 2, 4, ... of every group of ``seq``; returns the new Sequential (renumbered)."""
    kept: list[nn.Module] = []
    for group in groups:
        for k in _every_other(len(group)):
            i = group[k]
            copied.append((_join(t_prefix, str(i)), _join(s_prefix, str(len(kept)))))
            kept.append(seq[i])
    return nn.Sequential(*kept)


def _resnet_cifar(net: ResNetCifar, prefix: str, copied: Copied) -> int:
    """Stages are runs of blocks of one width: a new stage starts at every projection shortcut."""
    groups: list[list[int]] = []
    for i, block in enumerate(net.blocks):
        if not groups or not isinstance(block.shortcut, nn.Identity):
            groups.append([])
        groups[-1].append(i)
    for name in ("conv", "bn"):
        copied.append((_join(prefix, name), _join(prefix, name)))
    before = len(net.blocks)
    net.blocks = _thin_blocks(net.blocks, groups, _join(prefix, "blocks"), _join(prefix, "blocks"), copied)
    copied.append((_join(prefix, "fc"), _join(prefix, "fc")))
    return before - len(net.blocks)


def _resnet_tv(net: torchvision.models.ResNet, prefix: str, copied: Copied) -> int:
    for name in ("conv1", "bn1"):
        copied.append((_join(prefix, name), _join(prefix, name)))
    removed = 0
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        seq = getattr(net, layer)
        thinned = _thin_blocks(seq, [list(range(len(seq)))], _join(prefix, layer), _join(prefix, layer), copied)
        removed += len(seq) - len(thinned)
        setattr(net, layer, thinned)
    copied.append((_join(prefix, "fc"), _join(prefix, "fc")))
    return removed


def _thin_convs(net: nn.Module, prefix: str, copied: Copied) -> int:
    """``net.features``: a Sequential of conv units (Conv2d + its BatchNorm/ReLU) and pools.

    In each stage (units between pools) keep units 0, 2, 4, ...; the dropped convs must map c -> c
    and keep the spatial size, so nothing downstream changes."""
    features: nn.Sequential = net.features
    items = list(features)
    # Split into units: a conv unit starts at a Conv2d and takes what follows up to the next conv or pool.
    units: list[tuple[str, list[int]]] = []  # ("conv" | "other", indices)
    for i, m in enumerate(items):
        if isinstance(m, nn.Conv2d):
            units.append(("conv", [i]))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) or not units or units[-1][0] != "conv":
            units.append(("other", [i]))
        else:
            units[-1][1].append(i)
    keep: list[int] = []
    run = 0  # position of a conv unit within its stage
    removed = 0
    for kind, idx in units:
        if kind != "conv":
            run = 0
            keep += idx
            continue
        if run % 2 == 0:
            keep += idx
        else:
            conv: nn.Conv2d = items[idx[0]]
            same = (conv.in_channels == conv.out_channels and conv.stride == (1, 1) and conv.groups == 1
                    and all(2 * p == d * (k - 1) for p, d, k in zip(conv.padding, conv.dilation, conv.kernel_size)))
            if not same:  # not the zoo's nets: refuse rather than build a student whose shapes break
                raise ConfigError(f"half_depth: {type(net).__name__}.features.{idx[0]} ({conv}) does not keep "
                                  "its input's shape, so it cannot be dropped")
            removed += 1
        run += 1
    t_features, s_features = _join(prefix, "features"), _join(prefix, "features")
    for new, old in enumerate(keep):
        if _has_state(items[old]):
            copied.append((_join(t_features, str(old)), _join(s_features, str(new))))
    net.features = nn.Sequential(*(items[i] for i in keep))
    copied.append((_join(prefix, "classifier"), _join(prefix, "classifier")))
    return removed


def half_depth(teacher: nn.Module) -> tuple[nn.Module, list[tuple[str, str]]]:
    """A shallower student of the teacher's family, initialised from the teacher's weights.
    Returns (student, copied): copied lists (teacher module name, student module name) for every block/layer
    whose weights were copied. The teacher is not modified."""
    student = copy.deepcopy(teacher)
    net, prefix = student, ""
    if isinstance(net, Adapted):  # the input adapter is parameter-free: the student keeps it as is
        net, prefix = net.net, "net"
    copied: Copied = []
    if isinstance(net, ResNetCifar):
        removed = _resnet_cifar(net, prefix, copied)
    elif isinstance(net, torchvision.models.ResNet):
        removed = _resnet_tv(net, prefix, copied)
    elif isinstance(net, (ConvNet, torchvision.models.VGG)):
        removed = _thin_convs(net, prefix, copied)
    else:
        raise ConfigError(f"half_depth: no student rule for {type(net).__name__}; supported families: {SUPPORTED}")
    if removed == 0:
        raise ConfigError(f"half_depth: {type(net).__name__} has one block/conv per stage already; "
                          "there is no shallower student of it")
    return student, copied


__all__ = ["half_depth", "SUPPORTED"]
