"""Layer-wise magnitude pruning during training, one-shot or iterative, as a Composer Algorithm.

Han et al., "Learning both Weights and Connections for Efficient Neural Networks" (2015); layer-wise as in the seed's
chapter II (every prunable layer to the same sparsity, the final classifier dense). The pure functions live in
:mod:`.masks` (:func:`~.masks.magnitude_masks`, :func:`~.masks.apply_masks`); this class schedules them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional, Union

import torch
from torch import nn

from composer.core import Algorithm, Event, State, Time
from composer.loggers import Logger

from ._composer import (check_unsharded, enforce, log_sparsity, masks_from_state, masks_on_model, masks_state,
                        parse_time, reached)
from .masks import check_sparsity, magnitude_masks, mask_gradients, prunable_layers

__all__ = ['MagnitudePruning', 'parse_schedule']

ScheduleEntry = tuple[Union[str, Time], float]


def parse_schedule(schedule: Iterable[Any]) -> list[tuple[Time, float]]:
    """Validate a pruning schedule: ``(time, sparsity)`` pairs, time a Composer time string, sparsity in (0, 1).

    The sparsities must not decrease along the list (pruned weights stay pruned), and two entries in the same time
    unit must come in increasing time. ``ValueError`` naming the entry otherwise.
    """
    if isinstance(schedule, (str, bytes)) or not isinstance(schedule, Iterable):
        raise ValueError(f"schedule must be a list of (time, sparsity) pairs such as [('2ep', 0.6)], got {schedule!r}")
    entries = list(schedule)
    if not entries:
        raise ValueError("schedule must hold at least one (time, sparsity) pair, e.g. [('2ep', 0.6)]")
    parsed: list[tuple[Time, float]] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != 2:
            raise ValueError(f'schedule[{i}] must be a (time, sparsity) pair, got {entry!r}')
        time = parse_time(entry[0], f'schedule[{i}] time')
        sparsity = check_sparsity(entry[1], f'schedule[{i}] sparsity')
        if parsed and sparsity < parsed[-1][1]:
            raise ValueError(f'schedule[{i}] sparsity {sparsity} is lower than the previous entry\'s '
                             f'{parsed[-1][1]}: pruned weights stay pruned, so sparsity cannot decrease')
        for j, (earlier, _) in enumerate(parsed):
            if earlier.unit == time.unit and earlier.value >= time.value:
                raise ValueError(f'schedule[{i}] time {entry[0]!r} is not after schedule[{j}] time {str(earlier)!r}')
        parsed.append((time, sparsity))
    return parsed


class MagnitudePruning(Algorithm):
    """Prune each prunable layer to a scheduled sparsity by weight magnitude, and keep pruned weights at zero.

    At ``Event.BATCH_START`` of the first batch at or after each scheduled time, the masks are recomputed from the
    current weights (each layer loses its smallest-``|w|`` fraction ``sparsity``; weights pruned earlier are pruned
    first, so they stay pruned) and applied: the pruned weights and their optimizer state (momentum, Adam moments)
    are zeroed. The masks are then enforced at every step:

    * ``Event.AFTER_TRAIN_BATCH`` (after backward, gradients unscaled, just *before* ``optimizer.step()``): the
      gradients of pruned weights are zeroed, so gradient clipping and layer-wise optimizers see only kept weights;
    * ``Event.BATCH_END`` (the first event *after* ``optimizer.step()``, before evaluation and ``BATCH_CHECKPOINT``):
      the masks are re-applied to the weights and to the optimizer's state buffers, whatever the optimizer did
      (weight decay, momentum, Adam's epsilon), so evaluation and checkpoints see exactly-zero pruned weights;
    * ``Event.FIT_START``: re-applied after a checkpoint is loaded (the masks come back with :meth:`load_state_dict`).

    Logged (measured from the weights, not the masks): ``pruning/sparsity/<layer>`` for each pruned layer,
    ``pruning/global_sparsity`` and ``pruning/target_sparsity``, after each pruning round and at each epoch end.

    Args:
        schedule: ``(time, sparsity)`` pairs in Composer time strings. One-shot: ``[('2ep', 0.6)]``; the seed's
            iterative schedule: ``[('2ep', 0.6), ('4ep', 0.7), ('6ep', 0.8), ('8ep', 0.9)]``. ``'0ba'`` prunes at the
            first batch (e.g. of a fine-tuning run started from a dense checkpoint). A time at or after the end of
            training never fires. Sparsities must not decrease.
        exclude: layers to leave dense (names in the bare network or with wrapper prefixes); ``None`` leaves the
            final classifier (the last ``nn.Linear``) dense, ``[]`` prunes every conv / linear layer.

    Example:
        >>> algorithm = MagnitudePruning([('2ep', 0.6), ('4ep', 0.7), ('6ep', 0.8), ('8ep', 0.9)])
    """

    def __init__(self, schedule: Iterable[ScheduleEntry], exclude: Optional[Iterable[str]] = None):
        self.schedule = parse_schedule(schedule)
        if isinstance(exclude, str):
            exclude = [exclude]
        self.exclude = None if exclude is None else list(exclude)
        self.masks: dict[str, torch.Tensor] = {}
        self.fired: list[bool] = [False] * len(self.schedule)
        self.sparsity: Optional[float] = None  # the target of the latest round
        self._layers: Optional[list[str]] = None

    def __repr__(self) -> str:
        schedule = [(str(t), s) for t, s in self.schedule]
        return f'MagnitudePruning(schedule={schedule!r}, exclude={self.exclude!r})'

    def check_model(self, model: nn.Module) -> None:
        """Raise ``KeyError`` now (before training) if ``exclude`` names a layer ``model`` lacks."""
        prunable_layers(model, self.exclude)

    def layers(self, state: State) -> list[str]:
        """The names of the layers this algorithm prunes in ``state.model``."""
        if self._layers is None:
            self._layers = list(prunable_layers(state.model, self.exclude))
        return self._layers

    # --- Composer hooks -----------------------------------------------------------------------------------------
    def match(self, event: Event, state: State) -> bool:
        return event in (Event.INIT, Event.FIT_START, Event.BATCH_START, Event.AFTER_TRAIN_BATCH, Event.BATCH_END,
                         Event.EPOCH_END)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.INIT:
            self.layers(state)  # an unknown name in `exclude` fails when the Trainer is built
            return
        if event == Event.FIT_START:
            check_unsharded(state, self)
            self._layers = None
            self.layers(state)
            if self.masks:  # resumed: the checkpoint's masks, re-applied to the weights and the optimizer state
                self.masks = masks_on_model(state.model, self.masks)
                enforce(state, self.masks)
                log_sparsity(logger, state, self.masks, self.sparsity)
            return
        if event == Event.BATCH_START:
            due = [i for i, (time, _) in enumerate(self.schedule) if not self.fired[i] and reached(time, state)]
            if due:
                self.prune(state, max(self.schedule[i][1] for i in due), logger)
                for i in due:
                    self.fired[i] = True
            return
        if not self.masks:
            return
        if event == Event.AFTER_TRAIN_BATCH:
            mask_gradients(state.model, self.masks)
        elif event == Event.BATCH_END:
            enforce(state, self.masks)
        elif event == Event.EPOCH_END:
            log_sparsity(logger, state, self.masks, self.sparsity)

    def prune(self, state: State, sparsity: float, logger: Optional[Logger] = None) -> None:
        """One pruning round now: masks of the current weights at ``sparsity``, applied to weights and optimizer."""
        self.masks = magnitude_masks(state.model, sparsity, self.layers(state), previous=self.masks or None)
        self.sparsity = float(sparsity)
        enforce(state, self.masks)
        if logger is not None:
            log_sparsity(logger, state, self.masks, self.sparsity)

    # --- checkpointing (Composer saves every algorithm's state_dict and restores it on load_path) ----------------
    def state_dict(self) -> dict[str, Any]:
        return {
            'repr': repr(self),
            'masks': masks_state(self.masks),
            'fired': list(self.fired),
            'sparsity': self.sparsity,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        fired = [bool(f) for f in state.get('fired', self.fired)]
        if len(fired) != len(self.schedule):
            raise ValueError(f'the checkpoint\'s MagnitudePruning had {len(fired)} schedule entries, this one has '
                             f'{len(self.schedule)} ({self!r}); resume with the same schedule')
        self.fired = fired
        self.masks = masks_from_state(state.get('masks'), 'MagnitudePruning state')
        sparsity = state.get('sparsity')
        self.sparsity = None if sparsity is None else float(sparsity)
