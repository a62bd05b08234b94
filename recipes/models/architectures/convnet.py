"""The small ConvNet of the seed's chapter II: two conv layers and two fully connected layers.

conv(in, 32, 5) + ReLU + 2x2 max-pool, conv(32, 64, 5) + ReLU + 2x2 max-pool (no padding: 28 -> 24 -> 12 -> 8 -> 4),
adaptive average pooling to 4x4 (an identity at 28 px; 32 px gives 5x5 -> 4x4), FC(1024 -> hidden) + ReLU,
FC(hidden -> classes).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ['ConvNet', 'convnet']


class ConvNet(nn.Module):
    """Two 5x5 conv layers (32, 64 filters) then two linear layers with ``hidden`` units between them."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, hidden: int = 512) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=5)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.pool = nn.MaxPool2d(2)
        self.avgpool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(64 * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc2(self.relu(self.fc1(x)))


def convnet(num_classes: int = 10, in_channels: int = 3, hidden: int = 512) -> ConvNet:
    """The chapter-II ConvNet (2 conv + 2 FC)."""
    return ConvNet(num_classes, in_channels, hidden)
