"""Replacement blocks: cheaper stand-ins for a teacher's convolution (and its batch norm), with the same input and
output shapes.

The seed's block search (VGG-16 on CIFAR-10, chapter IV) tried two and three depthwise-separable layers, each
``[depthwise kxk conv + pointwise 1x1 conv + BN + ReLU]``, with and without a skip connection; two layers without a
skip won. Names: ``ds2`` (the default), ``ds3``, ``ds2_skip``, ``ds3_skip``.

A block replaces ``conv -> BN`` and is followed by the teacher's own activation, so its last layer has no ReLU:
block + the teacher's ReLU is exactly ``n x [DS conv + BN + ReLU]``, and the block is trained on the teacher's
pre-activation (negative values included, which a block ending in a ReLU could not reproduce). The first
depthwise conv takes the replaced conv's kernel size, stride, padding and dilation (so the output size is the
same); the following ones keep the size (stride 1, ``padding='same'``). A skip connection is the identity when
shapes allow, else a 1x1 conv + BN projection.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ['SeparableConv', 'ReplacementBlock', 'BLOCKS', 'build_block']


class SeparableConv(nn.Sequential):
    """Depthwise ``kxk`` conv (``groups=in_channels``) + pointwise 1x1 conv + BN, then ReLU if ``relu``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], stride: tuple[int, int] = (1, 1),
                 padding: object = 'same', dilation: tuple[int, int] = (1, 1), relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ReplacementBlock(nn.Module):
    """``depth`` separable layers (ReLU after all but the last), plus an optional skip connection."""

    def __init__(self, conv: nn.Conv2d, depth: int = 2, skip: bool = False) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f'depth must be >= 1, got {depth}')
        c_in, c_out = conv.in_channels, conv.out_channels
        stages = [SeparableConv(c_in, c_out, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                                relu=depth > 1)]
        stages += [SeparableConv(c_out, c_out, conv.kernel_size, relu=i < depth - 1) for i in range(1, depth)]
        self.layers = nn.Sequential(*stages)
        self.shortcut: nn.Module | None = None
        if skip:
            same = c_in == c_out and tuple(conv.stride) == (1, 1)
            self.shortcut = nn.Identity() if same else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=conv.stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return out


#: Block name -> builder ``(conv) -> nn.Module``.
BLOCKS: dict[str, Callable[[nn.Conv2d], nn.Module]] = {
    'ds2': lambda conv: ReplacementBlock(conv, depth=2),
    'ds3': lambda conv: ReplacementBlock(conv, depth=3),
    'ds2_skip': lambda conv: ReplacementBlock(conv, depth=2, skip=True),
    'ds3_skip': lambda conv: ReplacementBlock(conv, depth=3, skip=True),
}


def build_block(name: str, conv: nn.Conv2d) -> nn.Module:
    """A fresh replacement block ``name`` for ``conv`` (on ``conv``'s device; a ``ValueError`` names the choices)."""
    if name not in BLOCKS:
        raise ValueError(f'unknown block {name!r}; allowed: {", ".join(BLOCKS)}')
    block = BLOCKS[name](conv)
    device = conv.weight.device
    return block if device.type == 'meta' else block.to(device)
