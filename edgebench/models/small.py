"""The small nets of the compression literature, sized from the input shape at build time."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _flat_features(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).flatten(1).shape[1])


class LeNet300100(nn.Module):
    """LeNet-300-100 (LeCun et al. 1998): input -> FC300 -> FC100 -> classes, ReLU."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        c, h, w = input_shape
        self.fc1 = nn.Linear(c * h * w, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    """LeNet-5: conv5x5(6, pad 2) - pool - conv5x5(16) - pool - FC120 - FC84 - classes (ReLU, max-pool)."""

    min_input_size = 28

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        c = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        n = _flat_features(self.features, input_shape)
        self.classifier = nn.Sequential(
            nn.Linear(n, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class ConvNet(nn.Module):
    """Conv-2/4/6 of the lottery-ticket paper (Frankle & Carbin 2019, Fig. 2).

    Blocks of two 3x3 'same' convolutions followed by 2x2 max-pool (64, 128, 256 filters),
    then FC 256-256-classes; ReLU throughout.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, blocks: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = input_shape[0]
        for width in (64, 128, 256)[:blocks]:
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
                       nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c = width
        self.features = nn.Sequential(*layers)
        n = _flat_features(self.features, input_shape)
        self.classifier = nn.Sequential(
            nn.Linear(n, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class SmallConv2(nn.Module):
    """A two-layer convolutional net sized like the recurrent attention model at 60x60 (about 244k parameters):
    conv5x5(16, pad 2) - pool - conv5x5(32, pad 2) - pool - FC32 - classes (ReLU, max-pool). Its compute grows with
    the image area and its first FC layer with the image (the point of comparing it with model=ram)."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        n = _flat_features(self.features, input_shape)
        self.classifier = nn.Sequential(nn.Linear(n, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:  # 1x1 projection shortcut (as in open_lth's CIFAR ResNets)
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet-(6n+2) for small images (He et al. 2016, Sec. 4.2): 16/32/64 filters, n blocks each."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, depth: int = 20):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(input_shape[0], 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks: list[nn.Module] = []
        cin = 16
        for i, width in enumerate((16, 32, 64)):
            for j in range(n):
                blocks.append(_BasicBlock(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
