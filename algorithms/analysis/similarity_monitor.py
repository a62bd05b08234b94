"""A Composer callback that tracks how similar a model's layers stay to (or become to) a reference model.

At the end of every ``interval`` epochs (and when training ends) it computes :func:`layer_similarity` between the
reference and the model being trained, on the first ``images`` examples of the trainer's first evaluation
dataloader (the same images, in the same order, every time), and logs ``similarity/<layer>``. The seed's chapter
II plots exactly this during retraining after pruning: which layers re-converge to the original, and when.
``history`` keeps ``[{'epoch', 'batch', '<layer>': similarity, ...}, ...]`` and travels in the checkpoint.
"""

from __future__ import annotations

import copy
import os
from typing import Any, Optional, Sequence, Union

from torch import nn

from composer.core import Callback, Event, State
from composer.loggers import Logger

from ..common.feature_taps import resolve_module
from ..distillation.teachers import load_teacher_weights, module_weights
from .layer_similarity import layer_similarity

__all__ = ['SimilarityMonitor']


class SimilarityMonitor(Callback):
    """Log per-layer SVCCA (or linear CKA) similarity to a reference model during training.

    Args:
        reference: the reference model (an ``nn.Module`` of any architecture with the named layers), or the path of
            a checkpoint of the trained model's own architecture (loaded with ``weights_only=True`` into a copy of
            the model at ``FIT_START``).
        layers: dotted module paths present in both models.
        images: how many evaluation examples to compare on.
        method, conv_mode, keep, max_datapoints: as :func:`~algorithms.analysis.layer_similarity`.
        interval: every how many epochs.
    """

    def __init__(self, reference: Union[nn.Module, str, os.PathLike], layers: Sequence[str], images: int = 1000,
                 method: str = 'svcca', conv_mode: str = 'pooled', keep: Union[float, int] = 0.99,
                 max_datapoints: Optional[int] = 10_000, interval: int = 1) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be a positive number of epochs, got {interval!r}')
        if not layers:
            raise ValueError('layers: name at least one module to compare')
        if not isinstance(reference, nn.Module) and not os.path.isfile(reference):
            raise ValueError(f'reference: checkpoint not found: {reference}')
        self.reference = reference
        self.layers = list(layers)
        self.images = images
        self.kwargs = dict(method=method, conv_mode=conv_mode, keep=keep, max_datapoints=max_datapoints)
        self.interval = interval
        self.history: list[dict[str, Any]] = []
        self._batches: Optional[list[Any]] = None
        self._model: Optional[nn.Module] = None

    def check_model(self, model: nn.Module) -> None:
        """Check, before training, what ``FIT_START`` and the first measurement would find: every layer name in
        ``model`` (and in a reference module), and a reference checkpoint that loads into ``model``'s architecture
        (memory-mapped keys and shapes; refused if not a checkpoint or unsafe). ``KeyError``/``ValueError`` if not."""
        for name in self.layers:
            resolve_module(model, name)
            if isinstance(self.reference, nn.Module):
                resolve_module(self.reference, name)
        if not isinstance(self.reference, nn.Module):
            module_weights(model, self.reference, mmap=True)

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.FIT_START:
            self._prepare(state)
        elif event == Event.EPOCH_END and int(state.timestamp.epoch) % self.interval == 0:
            self._measure(state, logger)
        elif event == Event.FIT_END and (not self.history or self.history[-1]['batch'] != int(state.timestamp.batch)):
            self._measure(state, logger)

    def _prepare(self, state: State) -> None:
        if isinstance(self.reference, nn.Module):
            self._model = self.reference
        else:
            self._model = load_teacher_weights(copy.deepcopy(state.model), self.reference)
        state.device.module_to_device(self._model)
        self._model.eval()
        if not state.evaluators:
            raise ValueError('SimilarityMonitor compares on the evaluation data: give the Trainer an eval_dataloader')
        batches, seen = [], 0
        for batch in state.evaluators[0].dataloader.dataloader:
            batches.append(batch)
            seen += len(batch[0]) if isinstance(batch, (tuple, list)) else len(next(iter(batch.values())))
            if seen >= self.images:
                break
        self._batches = batches

    def _measure(self, state: State, logger: Logger) -> None:
        assert self._model is not None and self._batches is not None
        model = state.model
        was_training = model.training
        try:
            rows = layer_similarity(self._model, model, self._batches, self.layers, **self.kwargs)
        finally:
            model.train(was_training)
        values = {r['layer']: float(r['similarity']) for r in rows}
        self.history.append({'epoch': int(state.timestamp.epoch), 'batch': int(state.timestamp.batch), **values})
        logger.log_metrics({f'similarity/{layer}': v for layer, v in values.items()})

    def state_dict(self) -> dict[str, Any]:
        return {'history': list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get('history', []))

