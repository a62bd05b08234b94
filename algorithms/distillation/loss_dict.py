"""Compose distillation terms into the loss dict Composer backpropagates: ``{'total', <task keys>, 'kd', 'at', ...}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ['add_distillation_loss']


def add_distillation_loss(loss: Any, value: torch.Tensor, weight: float, key: str = 'kd') -> dict[str, torch.Tensor]:
    """Add the term ``weight * value`` under ``key`` to the loss a Composer model (or an earlier term) returned.

    Returns ``{'total': weight * value + previous total, <previous entries>, key: value}``: a tensor task loss is
    keyed ``'ce'``; a dict keeps its entries (its ``'total'``, if any, is the loss so far; otherwise the sum of the
    entries' means, as Composer would sum them); a tuple/list is keyed ``'loss0'``, ``'loss1'``... Terms compose:
    KD then AT gives ``{'total': ce + l_kd * kd + l_at * at, 'ce', 'kd', 'at'}``. Composer backpropagates
    ``'total'`` and logs every key as ``loss/train/<key>``.

    Raises:
        ValueError: ``key`` is already in the loss (two terms with one key), or is ``'total'``.
    """
    if isinstance(loss, torch.Tensor):
        entries = {'ce': loss}
        so_far = loss.mean()
    elif isinstance(loss, Mapping):
        entries = dict(loss)
        so_far = entries['total'] if 'total' in entries else sum(v.mean() for v in entries.values())
    elif isinstance(loss, (tuple, list)):
        entries = {f'loss{i}': v for i, v in enumerate(loss)}
        so_far = sum(v.mean() for v in loss)
    else:
        raise TypeError(f'cannot add a distillation loss to a task loss of type {type(loss).__name__}')
    if key == 'total':
        raise ValueError("a distillation term cannot be keyed 'total'")
    if key in entries:
        raise ValueError(f'the loss already has a {key!r} entry: give each distillation term its own key')
    entries[key] = value
    entries['total'] = weight * value + so_far
    return entries
