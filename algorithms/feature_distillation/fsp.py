"""FSP (Yim et al., "A Gift from Knowledge Distillation", CVPR 2017) as an initialisation stage, as RepDistiller.

The FSP matrix of two consecutive conv features is their channel-by-channel Gram averaged over space
(:func:`~.losses.fsp_matrices`); the student learns to match the teacher's FSP matrices (:func:`~.losses.fsp_loss`).
RepDistiller (the code the seed's chapter III used) does not add this loss to the classification loss: its
``init()`` trains the student's feature layers on the FSP loss alone for ``init_epochs`` (30), then the main stage
trains on the task loss (plus KD in FSP+KD) with no FSP term. :class:`FSP` is that stage inside one run: within its
window ``[start, end)`` the loss Composer backpropagates (``'total'``) is ``weight * fsp`` alone (the task loss and
other terms are still computed and logged, not trained on); after ``end`` it adds nothing.

Inside the window the layers after the last FSP feature (the classifier) get no gradient, as in RepDistiller's
``init()`` where they are not optimised. Two consequences are handled here: DDP is told to expect unused parameters
(:attr:`FSP.find_unused_parameters`), and the optimizer state of those parameters is created once with a zero
gradient (one step of weight decay), since a checkpoint whose optimizer lacks state for some parameters cannot be
loaded (resuming inside the window would fail).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from composer.core import Event, State, Time
from composer.loggers import Logger

from ..distillation import DistillationTerm, ModelIO, TeacherPool
from .feature_terms import _names
from .losses import fsp_loss

__all__ = ['FSP']


class FSP(DistillationTerm):
    """Within ``[start, end)`` train on ``weight * sum_pairs MSE(G_s, G_t)`` alone, keyed ``'fsp'``.

    Args:
        teachers: a teacher, teachers or a shared :class:`TeacherPool` (features averaged over a pool's picks).
        student_features: two or more conv features in forward order (for the project's CIFAR ResNets
            ``['relu', 'layer1', 'layer2', 'layer3']``, RepDistiller's ``feat[:-1]``); consecutive ones are paired.
        teacher_features: the teacher's (default: the same names); each must have its student feature's channels.
        end: when the initialisation stage ends (required: e.g. ``'30ep'``, RepDistiller's ``init_epochs``).
        weight: the FSP loss's weight in ``total`` within the window (RepDistiller: 1, the plain sum over pairs).
        Other arguments as :class:`DistillationTerm`.

    After ``end`` the teachers do not run for this term and the loss is what the model and the other terms make of
    it; give a KD term ``start`` equal to this ``end`` for RepDistiller's FSP+KD (a KD term running inside the window
    is logged but not trained on, and costs its teacher forwards).
    """

    def __init__(self,
                 teachers: Union[nn.Module, Sequence[nn.Module], TeacherPool],
                 student_features: Sequence[str],
                 teacher_features: Optional[Sequence[str]] = None,
                 *,
                 end: Union[str, Time],
                 weight: float = 1.0,
                 key: str = 'fsp',
                 start: Union[str, Time] = '0dur',
                 pool_mode: str = 'all',
                 k: Optional[int] = None,
                 seed: int = 0):
        s_names = _names(student_features, 'student_features')
        t_names = _names(teacher_features, 'teacher_features') if teacher_features is not None else list(s_names)
        if len(s_names) < 2 or len(s_names) != len(t_names):
            raise ValueError(f'FSP needs two or more student features and as many teacher features, got '
                             f'{len(s_names)} and {len(t_names)}')
        super().__init__(teachers, weight=weight, key=key, start=start, end=end, student_features=s_names,
                         teacher_features=t_names, pool_mode=pool_mode, k=k, seed=seed)
        self.student_names, self.teacher_names = s_names, t_names
        self._alone = False  # whether this microbatch's total must become the FSP term alone

    def compute(self, student: ModelIO, teacher: ModelIO, batch: Any) -> torch.Tensor:
        return fsp_loss([student.feature(n) for n in self.student_names],
                        [teacher.feature(n) for n in self.teacher_names])

    @property
    def find_unused_parameters(self) -> bool:
        return True  # the classifier is not in the loss within the window

    def _materialise_optimizer_state(self, state: State) -> None:
        """Give a zero gradient to trainable parameters that have none and no optimizer state yet (checkpoints)."""
        for optimizer in state.optimizers:
            for group in optimizer.param_groups:
                for p in group['params']:
                    if p.requires_grad and p.grad is None and not optimizer.state.get(p):
                        p.grad = torch.zeros_like(p)

    def match(self, event: Event, state: State) -> bool:
        return super().match(event, state) or event == Event.BEFORE_BACKWARD

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.BEFORE_BACKWARD:
            # After every term's AFTER_LOSS, whatever their order: 'total' is the FSP term alone in the window.
            if self._alone and isinstance(state.loss, dict) and self.key in state.loss:
                state.loss = {**state.loss, 'total': self.weight * state.loss[self.key]}
            self._alone = False
            return
        if event == Event.AFTER_LOSS:
            self._alone = self.in_window(state)
        elif event == Event.AFTER_BACKWARD and self.in_window(state):
            self._materialise_optimizer_state(state)
        super().apply(event, state, logger)

    def __repr__(self) -> str:
        return (f'FSP(student={self.student_names}, teacher={self.teacher_names}, weight={self.weight}, '
                f'start={str(self.start)!r}, end={str(self.end)!r}, pool={self.pool!r})')
