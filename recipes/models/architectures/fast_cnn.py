"""A plain conv net built for CPU throughput on small images (the default job's model).

Stages of 3x3 conv (no bias) -> [2x2 max-pool] -> BatchNorm -> ReLU, with the pooling before the normalisation as in
the fastest CIFAR-10 trainers (Page's ResNet-9, Keller Jordan's airbench), then a global max-pool and a linear
classifier. The default ``widths=(16, 32, 64, 128)``, ``pools=(True, False, True, True)`` sees 28x28 in the first
conv, 14x14 in the next two and 7x7 in the last (98,682 parameters). Modules are named ``stage1`` ... ``stageN``,
``pool`` and ``fc`` (features for distillation by forward hooks, as for the other models).

``flip_tta=True`` averages, in eval mode only, the logits of each image and of its horizontal mirror (test-time
augmentation matching the training flips; it doubles the cost of evaluation, and of a teacher's forward pass).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ['FastCNN', 'fast_cnn']


def _stage(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FastCNN(nn.Module):
    """``len(widths)`` conv stages (``pools[i]``: max-pool after stage ``i``'s conv), global max-pool, linear."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64, 128),
                 pools: Sequence[bool] = (True, False, True, True), flip_tta: bool = False) -> None:
        super().__init__()
        self.flip_tta = flip_tta
        if len(widths) != len(pools) or not widths:
            raise ValueError(f'widths and pools must have the same non-zero length, got {list(widths)} and '
                             f'{list(pools)}')
        cin = in_channels
        for i, (width, pool) in enumerate(zip(widths, pools), 1):
            self.add_module(f'stage{i}', _stage(cin, width, bool(pool)))
            cin = width
        self.n_stages = len(widths)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.n_stages + 1):
            x = getattr(self, f'stage{i}')(x)
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip_tta and not self.training:
            return (self.logits(x) + self.logits(x.flip(-1))) / 2
        return self.logits(x)


def fast_cnn(num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64, 128),
             pools: Sequence[bool] = (True, False, True, True), flip_tta: bool = False) -> FastCNN:
    """The fast conv net (see the module docstring)."""
    return FastCNN(num_classes, in_channels, tuple(widths), tuple(bool(p) for p in pools), flip_tta)
