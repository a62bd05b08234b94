"""Training one replacement block on the teacher's own activations (the seed's local loss), keeping its best
weights by the accuracy of the model it is spliced into.

The loss is ``L = 1/N sum_i ||f_k(x_i) - g_k(f_{k-1}(x_i))||^2`` (sum of squares over an example's output, mean over
the batch), with ``f_{k-1}(x)`` the layer's input and ``f_k(x)`` its output in the teacher. The optimizer is the
author's: RMSprop, lr 2e-3 decayed by 0.96 every 3,000 steps (continuously, as TensorFlow's ``exponential_decay``
without ``staircase``), ``alpha`` 0.9 (TensorFlow's RMSprop ``decay``/``rho``). Every ``check_every`` epochs and at
the end, ``evaluate(block)`` scores the spliced model; the best-scoring weights are kept, and the block is accepted
when the best score is at most ``max_drop`` below the teacher's (``reference``). Without ``evaluate`` the final
weights are kept and accepted.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from .phases import PhaseClock

__all__ = ['LocalTrainingSettings', 'BlockResult', 'local_loss', 'fit_block']

log = logging.getLogger(__name__)


@dataclass
class LocalTrainingSettings:
    """The author's defaults; ``epochs``/``check_every`` as the seed's CIFAR-10 runs (30 epochs, a check every 2)."""

    epochs: int = 30
    check_every: int = 2
    lr: float = 2e-3
    lr_decay: float = 0.96
    decay_steps: int = 3000
    alpha: float = 0.9
    max_drop: float = 1.0  # accuracy points (0-100 scale)

    def __post_init__(self) -> None:
        for key in ('epochs', 'check_every', 'decay_steps'):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{key}: expected an integer >= 1, got {value!r}')
        for key in ('lr', 'lr_decay', 'alpha'):
            if not getattr(self, key) > 0:
                raise ValueError(f'{key}: expected a positive number, got {getattr(self, key)!r}')
        if not self.max_drop >= 0:
            raise ValueError(f'max_drop: expected a number >= 0 (accuracy points), got {self.max_drop!r}')


@dataclass
class BlockResult:
    """What training one block gave: the kept weights, the score history and the verdict."""

    layer: str
    state_dict: dict[str, torch.Tensor]
    accepted: bool
    best_accuracy: Optional[float]
    reference_accuracy: Optional[float]
    best_epoch: int
    losses: list[float] = field(default_factory=list)  # mean local loss per epoch
    checks: list[tuple[int, float]] = field(default_factory=list)  # (epoch, accuracy of the spliced model)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds by phase (see :mod:`.phases`)

    def summary(self) -> dict[str, Any]:
        """Everything but the weights, JSON-friendly."""
        out = asdict(self)
        out.pop('state_dict')
        out['checks'] = [list(c) for c in self.checks]
        return out


def local_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean over the batch of ||output_i - target_i||^2`` (the seed's ``L_k``)."""
    return (output - target).pow(2).flatten(1).sum(1).mean()


def fit_block(layer: str, block: nn.Module, batches: Callable[[], Iterable[Any]],
              pairs: Callable[[Any], tuple[torch.Tensor, torch.Tensor]], settings: LocalTrainingSettings,
              evaluate: Optional[Callable[[nn.Module], float]] = None, reference: Optional[float] = None,
              ) -> BlockResult:
    """Train ``block`` on ``pairs(batch) -> (input, target)`` over ``batches()`` (one call per epoch).

    ``evaluate(block)`` (block in eval mode) returns the accuracy in percent of the model with the block spliced in;
    ``reference`` is the teacher's accuracy on the same data. Returns the best weights and the verdict."""
    start = time.perf_counter()
    clock = PhaseClock()
    optimizer = torch.optim.RMSprop(block.parameters(), lr=settings.lr, alpha=settings.alpha)
    decay = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: settings.lr_decay ** (step / settings.decay_steps))
    result = BlockResult(layer, {}, False, None, reference, 0)
    for epoch in range(1, settings.epochs + 1):
        block.train()
        total, count = 0.0, 0
        clock.lap('other')
        for batch in batches():
            clock.lap('data')  # the batch's gather and augmentation
            inputs, target = pairs(batch)
            clock.lap('prefix')
            loss = local_loss(block(inputs), target)
            clock.lap('forward')
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clock.lap('backward')
            optimizer.step()
            decay.step()
            total, count = total + loss.item(), count + 1
            clock.lap('optimizer')
        result.losses.append(total / max(count, 1))
        if evaluate is not None and (epoch % settings.check_every == 0 or epoch == settings.epochs):
            block.eval()
            accuracy = float(evaluate(block))
            clock.lap('check')
            result.checks.append((epoch, accuracy))
            log.info('%s: epoch %d, local loss %.4g, spliced accuracy %.2f%%', layer, epoch, result.losses[-1],
                     accuracy)
            if result.best_accuracy is None or accuracy > result.best_accuracy:
                result.best_accuracy, result.best_epoch = accuracy, epoch
                result.state_dict = copy.deepcopy(block.state_dict())
    if evaluate is None:
        result.best_epoch, result.state_dict = settings.epochs, copy.deepcopy(block.state_dict())
        result.accepted = True
    else:
        result.accepted = reference is None or reference - result.best_accuracy <= settings.max_drop
    block.load_state_dict(result.state_dict)
    block.eval()
    clock.lap('other')
    result.seconds = time.perf_counter() - start
    result.phases = clock.as_dict()
    return result
