"""Stop a run as soon as its training loss is NaN or infinite, naming the step, before the weights are touched."""

from __future__ import annotations

import math
from typing import Any

import torch
from composer.core import Callback, Event, State
from composer.loggers import Logger


def _loss_values(loss: Any) -> dict[str, torch.Tensor]:
    if isinstance(loss, dict):
        return {k: v for k, v in loss.items() if isinstance(v, torch.Tensor)}
    if isinstance(loss, (tuple, list)):
        return {str(i): v for i, v in enumerate(loss) if isinstance(v, torch.Tensor)}
    return {'loss': loss} if isinstance(loss, torch.Tensor) else {}


class NonFiniteLossGuard(Callback):
    """Raise ``FloatingPointError`` at ``AFTER_LOSS`` when any loss term is NaN or infinite.

    The check runs before backward and the optimizer step, so the model is never updated with a non-finite
    gradient and no checkpoint of the broken state is written: the last good checkpoint stays as it was.
    The message names the step (batches completed so far), the epoch and the offending loss term.
    """

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event != Event.AFTER_LOSS:
            return
        for name, value in _loss_values(state.loss).items():
            v = float(value.detach().float().sum())
            if not math.isfinite(v):
                step = int(state.timestamp.batch)
                raise FloatingPointError(
                    f'training loss {name!r} became {v} at step {step + 1} (after {step} completed batches, '
                    f'epoch {int(state.timestamp.epoch)}); stopped before the optimizer step, '
                    'the last saved checkpoint is intact',
                )
