"""CIFAR-style ResNets as in RepDistiller (``models/resnet.py`` of HobbitLong/RepDistiller).

A 3x3 stem convolution, then three stages of ``BasicBlock`` s (depth = 6n + 2), global average pooling and a
linear classifier. ``resnet8`` ... ``resnet110`` use widths 16-16-32-64; ``resnet8x4`` and ``resnet32x4`` use
32-64-128-256. Two departures from the reference, neither changing the parameter count: the stem takes
``in_channels`` (1 for Fashion-MNIST), and the final pooling is adaptive, so 28x28 inputs work as well as 32x32.
Blocks return a plain tensor; features for distillation are taken by forward hooks on named modules
(``layer1``, ``layer2``, ``layer3``, ``avgpool``).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ['BasicBlock', 'CifarResNet', 'resnet8', 'resnet14', 'resnet20', 'resnet32', 'resnet44', 'resnet56',
           'resnet110', 'resnet8x4', 'resnet32x4']


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut, ReLU after the sum."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + residual)


class CifarResNet(nn.Module):
    """ResNet for small images: ``depth`` = 6n + 2, ``num_filters`` = [stem, stage1, stage2, stage3] widths."""

    def __init__(self, depth: int, num_filters: list[int], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f'depth must be 6n+2 (8, 14, 20, 32, 44, 56, 110), got {depth}')
        n = (depth - 2) // 6
        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(in_channels, num_filters[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(num_filters[1], n)
        self.layer2 = self._make_layer(num_filters[2], n, stride=2)
        self.layer3 = self._make_layer(num_filters[3], n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(num_filters[3] * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * BasicBlock.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


_NARROW = [16, 16, 32, 64]
_WIDE = [32, 64, 128, 256]


def _builder(depth: int, widths: list[int], doc: str) -> Callable[..., CifarResNet]:
    """A named builder ``(num_classes=10, in_channels=3) -> CifarResNet`` for one depth and width."""

    def build(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
        return CifarResNet(depth, widths, num_classes, in_channels)

    build.__name__ = build.__qualname__ = f'resnet{depth}' + ('x4' if widths is _WIDE else '')
    build.__doc__ = doc
    return build


resnet8 = _builder(8, _NARROW, 'ResNet-8, widths 16-16-32-64 (about 78k parameters with 10 classes).')
resnet14 = _builder(14, _NARROW, 'ResNet-14, widths 16-16-32-64.')
resnet20 = _builder(20, _NARROW, 'ResNet-20, widths 16-16-32-64 (about 0.27M parameters).')
resnet32 = _builder(32, _NARROW, 'ResNet-32, widths 16-16-32-64.')
resnet44 = _builder(44, _NARROW, 'ResNet-44, widths 16-16-32-64.')
resnet56 = _builder(56, _NARROW, 'ResNet-56, widths 16-16-32-64.')
resnet110 = _builder(110, _NARROW, 'ResNet-110, widths 16-16-32-64.')
resnet8x4 = _builder(8, _WIDE, "ResNet-8x4, widths 32-64-128-256 (RepDistiller's student for resnet32x4).")
resnet32x4 = _builder(32, _WIDE, "ResNet-32x4, widths 32-64-128-256 (about 7.43M parameters with 100 classes; "
                      "RepDistiller's teacher).")
