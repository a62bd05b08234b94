"""Turn a layer's output into the ``neurons x datapoints`` matrix that SVCCA takes (transpose it for CKA).

A convolutional layer's neurons are its channels: the same filter is applied at every spatial position. Two ways
of making datapoints of a ``[B, C, H, W]`` map (google/svcca's tutorial 002):

* ``'positions'``: every spatial position of every image is a datapoint, ``C x (B*H*W)``. Each position sees a
  different image patch; this gives many datapoints (enough for wide layers on few images), but both layers
  compared must have the same ``H x W``. Column ``b*H*W + h*W + w`` is image ``b`` at ``(h, w)``.
* ``'pooled'``: average over space first, one datapoint per image, ``C x B``. Works across spatial sizes, but
  needs more images than channels.
"""

from __future__ import annotations

import torch

__all__ = ['CONV_MODES', 'conv_activations']

CONV_MODES = ('positions', 'pooled')


def conv_activations(t: torch.Tensor, mode: str = 'positions') -> torch.Tensor:
    """A layer output as ``neurons x datapoints`` (same dtype and device).

    * ``[B, C, H, W]`` (conv): ``C x (B*H*W)`` with ``mode='positions'`` (each image's each spatial position is a
      datapoint), ``C x B`` with ``mode='pooled'`` (spatially averaged, one datapoint per image).
    * ``[B, L, D]`` (sequence): ``D x (B*L)`` with ``'positions'`` (each token a datapoint), ``D x B`` with
      ``'pooled'`` (mean over the ``L`` positions, padding included).
    * ``[B, D]`` (fully connected): ``D x B`` whatever the mode.

    Raises:
        ValueError: another number of dimensions, or an unknown ``mode``.
    """
    if mode not in CONV_MODES:
        raise ValueError(f"mode: expected one of {', '.join(CONV_MODES)}, got {mode!r}")
    if not isinstance(t, torch.Tensor):
        raise ValueError(f'expected a tensor, got {type(t).__name__}')
    if t.ndim == 2:
        return t.T
    if t.ndim == 3:
        return t.mean(dim=1).T if mode == 'pooled' else t.reshape(-1, t.shape[2]).T
    if t.ndim == 4:
        if mode == 'pooled':
            return t.mean(dim=(2, 3)).T
        return t.transpose(0, 1).reshape(t.shape[1], -1)
    raise ValueError(f'expected a [B, D], [B, L, D] or [B, C, H, W] layer output, got shape {tuple(t.shape)}')
