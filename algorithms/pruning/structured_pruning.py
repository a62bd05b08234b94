"""Filter-wise structured pruning on the AGP schedule, as a Composer Algorithm (the seed's chapter III).

Zhu & Gupta's automated gradual pruning: from ``start`` the target sparsity rises from ``initial_sparsity`` to
``final_sparsity`` along ``s_t = s_f + (s_0 - s_f)(1 - (t - t0)/(n dt))^3``, one pruning round every ``interval``,
reached at ``end`` and held there (:func:`~.agp.agp_sparsity`). The seed: start at 10%, prune every 5 epochs, done
by the half-way point (``end: 0.5dur``), every layer the same sparsity; the rest of training fine-tunes. Each round
prunes whole filters by L1 norm (:mod:`.structured`); pruned channels stay pruned and exactly zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

import torch
from torch import nn

from composer.core import Algorithm, Event, State, Time, TimeUnit
from composer.loggers import Logger

from ._composer import check_unsharded, masks_from_state, parse_time
from .agp import agp_sparsity
from .masks import check_sparsity, masks_to_cpu, network
from .structured import (ChannelGroup, apply_channel_masks, channel_groups, filter_masks, filter_sparsity,
                         mask_channel_gradients)

__all__ = ['StructuredPruning', 'to_batches']


def to_batches(time: Time, state: State, name: str) -> float:
    """``time`` in optimizer steps of this run (``ep`` via the dataloader's length, ``dur`` via max_duration)."""
    per_epoch = int(state.dataloader_len) if state.dataloader_len is not None else None
    if time.unit == TimeUnit.BATCH:
        return float(time.value)
    if time.unit == TimeUnit.EPOCH and per_epoch:
        return float(time.value) * per_epoch
    if time.unit == TimeUnit.DURATION and state.max_duration is not None:
        return float(time.value) * to_batches(state.max_duration, state, 'max_duration')
    raise ValueError(f'{name}: {time} cannot be converted to batches here (use ep, ba or dur; epochs need a '
                     'dataloader with a length)')


class StructuredPruning(Algorithm):
    """Prune whole filters by L1 norm to the AGP target sparsity, and keep pruned channels exactly zero.

    Pruning rounds happen at ``Event.BATCH_START`` whenever the AGP target (evaluated in optimizer steps) has grown
    since the last round; the masks are enforced like :class:`~.MagnitudePruning`'s: gradients zeroed at
    ``AFTER_TRAIN_BATCH``, weights, biases, norm scales / shifts and optimizer state zeroed at ``BATCH_END`` and
    after a checkpoint is loaded (``FIT_START``). Channel groups (coupled channels of residual networks) are traced
    by Torch-Pruning on the first round, on one example of the current batch.

    Logged: ``pruning/filter_sparsity/<layer>`` (fraction of all-zero filters, measured), ``pruning/target_sparsity``.

    Args:
        final_sparsity: the fraction of each layer's filters pruned at ``end`` and after, in (0, 1).
        initial_sparsity: the fraction pruned at ``start`` (the seed: 0.1; capped at ``final_sparsity``).
        start, end, interval: Composer time strings (``ep``, ``ba`` or ``dur``); the seed: ``0ep``, ``0.5dur``, ``5ep``.
        exclude: layers whose output channels stay (bare names); ``None``: the classifier (last ``nn.Linear``).
    """

    def __init__(self, final_sparsity: float, initial_sparsity: float = 0.1, start: Union[str, Time] = '0ep',
                 end: Union[str, Time] = '0.5dur', interval: Union[str, Time] = '5ep',
                 exclude: Optional[Iterable[str]] = None):
        self.final_sparsity = check_sparsity(final_sparsity, 'final_sparsity')
        if isinstance(initial_sparsity, bool) or not isinstance(initial_sparsity, (int, float)) or \
                not 0 <= initial_sparsity < 1:
            raise ValueError(f'initial_sparsity must be a number in [0, 1) (Zhu & Gupta start at 0, the seed at '
                             f'0.1), got {initial_sparsity!r}')
        self.initial_sparsity = min(float(initial_sparsity), self.final_sparsity)
        self.start, self.end = parse_time(start, 'start'), parse_time(end, 'end')
        self.interval = parse_time(interval, 'interval')
        for name, t in (('start', self.start), ('end', self.end), ('interval', self.interval)):
            if t.unit not in (TimeUnit.EPOCH, TimeUnit.BATCH, TimeUnit.DURATION):
                raise ValueError(f'{name}: use ep, ba or dur, got {str(t)!r}')
        self.exclude = None if exclude is None else ([exclude] if isinstance(exclude, str) else list(exclude))
        self.masks: dict[str, torch.Tensor] = {}
        self.sparsity: float = 0.0
        self.groups: Optional[list[ChannelGroup]] = None

    def __repr__(self) -> str:
        return (f'StructuredPruning(final_sparsity={self.final_sparsity}, initial_sparsity={self.initial_sparsity}, '
                f'start={str(self.start)!r}, end={str(self.end)!r}, interval={str(self.interval)!r}, '
                f'exclude={self.exclude!r})')

    def check_model(self, model: nn.Module) -> None:
        """``KeyError`` now (before training) if ``exclude`` names a module the model lacks."""
        known = dict(network(model).named_modules())
        for name in self.exclude or []:
            if name not in known:
                raise KeyError(f'exclude: no module named {name!r} in {type(network(model)).__name__}')

    def target(self, state: State) -> float:
        """The AGP target sparsity at the current step."""
        start, end = to_batches(self.start, state, 'start'), to_batches(self.end, state, 'end')
        interval = to_batches(self.interval, state, 'interval')
        if end <= start:
            raise ValueError(f'end ({self.end}) must come after start ({self.start}) in this run')
        return agp_sparsity(float(state.timestamp.batch.value), self.final_sparsity, self.initial_sparsity, start,
                            end, interval)

    # --- Composer hooks -----------------------------------------------------------------------------------------
    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.BATCH_START, Event.AFTER_TRAIN_BATCH, Event.BATCH_END,
                         Event.EPOCH_END)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.FIT_START:
            check_unsharded(state, self)
            self.check_model(state.model)
            self.target(state)  # a bad window fails now
            if self.masks:
                self.masks = {n: m.to(torch.bool) for n, m in self.masks.items()}
                apply_channel_masks(state.model, self.masks, state.optimizers)
        elif event == Event.BATCH_START:
            target = self.target(state)
            if target > self.sparsity + 1e-12:
                self.prune(state, target, logger)
        elif self.masks and event == Event.AFTER_TRAIN_BATCH:
            mask_channel_gradients(state.model, self.masks)
        elif self.masks and event == Event.BATCH_END:
            apply_channel_masks(state.model, self.masks, state.optimizers)
        elif self.masks and event == Event.EPOCH_END:
            self.log(logger, state)

    def prune(self, state: State, sparsity: float, logger: Optional[Logger] = None) -> None:
        """One pruning round now, to ``sparsity`` of every group's channels."""
        if self.groups is None:
            batch = state.batch
            if isinstance(batch, Mapping):  # keyword inputs (a Hugging Face model): one row of each tensor
                example = {k: v[:1] for k, v in batch.items() if isinstance(v, torch.Tensor) and k != 'labels'}
            else:
                example = batch[0] if isinstance(batch, (tuple, list)) else batch
                example = example[:1] if isinstance(example, torch.Tensor) else example
            self.groups = channel_groups(state.model, example, self.exclude)
        self.masks = filter_masks(state.model, self.groups, sparsity, previous=self.masks or None)
        self.sparsity = float(sparsity)
        apply_channel_masks(state.model, self.masks, state.optimizers)
        if logger is not None:
            self.log(logger, state)

    def log(self, logger: Logger, state: State) -> dict[str, float]:
        per_layer = filter_sparsity(state.model, self.masks)
        metrics = {f'pruning/filter_sparsity/{n}': s for n, s in per_layer.items()}
        metrics['pruning/target_sparsity'] = self.sparsity
        logger.log_metrics(metrics)
        return metrics

    # --- checkpointing ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {'repr': repr(self), 'masks': masks_to_cpu(self.masks), 'sparsity': self.sparsity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = masks_from_state(state.get('masks'), 'StructuredPruning state')
        self.sparsity = float(state.get('sparsity', 0.0))
