"""VGG-16 with BatchNorm for small images (the classic CIFAR VGG, as RepDistiller's ``vgg16_bn``).

Five conv stacks 64,64 | 128,128 | 256x3 | 512x3 | 512x3, each conv 3x3 + BN + ReLU and each stack followed by a
2x2 max-pool, then global average pooling and one linear classifier (512 -> classes), about 14.7M parameters.
The pools use ``ceil_mode=True`` and are skipped on a map already 1x1 wide, so 28x28 inputs
(28-14-7-4-2-1) work as well as 32x32 (32-16-8-4-2-1). Initialisation follows RepDistiller.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ['VGG', 'vgg16', 'vgg_small']

VGG16_STAGES: list[list[int]] = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
VGG_SMALL_STAGES: list[list[int]] = [[16, 16], [32, 32], [64, 64]]


class SafeMaxPool2d(nn.MaxPool2d):
    """2x2/2 max-pool with ``ceil_mode``; a spatial dimension of size 1 is left as is instead of failing."""

    def __init__(self) -> None:
        super().__init__(kernel_size=2, stride=2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 2 or x.shape[-2] < 2:
            return x
        return super().forward(x)


class VGG(nn.Module):
    """VGG with BatchNorm: ``stages`` lists conv widths per stage; each stage ends with a max-pool."""

    def __init__(self, stages: list[list[int]], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for stage in stages:
            for width in stage:
                layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.BatchNorm2d(width),
                           nn.ReLU(inplace=True)]
                in_channels = width
            layers.append(SafeMaxPool2d())
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / n))
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def vgg16(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """VGG-16 with BatchNorm, CIFAR variant (one linear classifier)."""
    return VGG(VGG16_STAGES, num_classes, in_channels)


def vgg_small(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """A VGG-style network for CPU-scale studies: three stages 16,16 | 32,32 | 64,64 of 3x3 conv + BN + ReLU, each
    followed by a max-pool (about 72k parameters; about 7.3M MACs per 28x28 image)."""
    return VGG(VGG_SMALL_STAGES, num_classes, in_channels)
