"""Knowledge distillation (Hinton et al., 2015) from a pool of teachers, for a window of training, as a Composer
Algorithm: the total loss is ``L = lambda * L_kd + L_task``.

The pure functions (:func:`distillation_loss`, :func:`distillation_mask`, :func:`add_distillation_loss`) work in
any PyTorch loop; :class:`KnowledgeDistillation` is a :class:`DistillationTerm` keyed ``'kd'`` whose loss compares
the student's and the teachers' logits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from composer.core import Time

from .distillation_term import DistillationTerm
from .losses import IGNORE_INDEX, KD_LOSSES
from .model_io import ModelIO
from .teacher_pool import TeacherPool

__all__ = ['KnowledgeDistillation', 'distillation_loss', 'distillation_mask']

LogitLossFn = Callable[..., torch.Tensor]


def _loss_fn(kd_loss: Union[str, LogitLossFn]) -> LogitLossFn:
    if callable(kd_loss):
        return kd_loss
    if kd_loss not in KD_LOSSES:
        raise ValueError(f'unknown kd_loss {kd_loss!r}; expected one of {", ".join(KD_LOSSES)} or a callable '
                         'fn(student_logits, teacher_logits, temperature, mask)')
    return KD_LOSSES[kd_loss]


def distillation_loss(student_logits: torch.Tensor,
                      teacher_logits: torch.Tensor,
                      kd_loss: Union[str, LogitLossFn] = 'kl',
                      temperature: float = 4.0,
                      mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``L_kd`` between student and teacher logits: ``'kl'`` (KL with temperature, times ``T^2``) or ``'mse'`` (MSE
    between raw logits), over the rows of ``[N, C]`` / ``[N, L, C]`` logits where ``mask`` (if given) is True."""
    return _loss_fn(kd_loss)(student_logits, teacher_logits, temperature=temperature, mask=mask)


def distillation_mask(batch: Any, student_logits: torch.Tensor) -> Optional[torch.Tensor]:
    """The positions to distil: for a sequence model (``[N, L, C]`` logits) fed a mapping batch with ``labels`` of
    shape ``[N, L]``, the positions whose label is not ``-100`` (a masked LM's masked tokens); otherwise ``None``
    (every row counts)."""
    if student_logits.dim() != 3 or not isinstance(batch, Mapping):
        return None
    labels = batch.get('labels')
    if not isinstance(labels, torch.Tensor) or labels.shape != student_logits.shape[:-1]:
        return None
    return labels != IGNORE_INDEX


class KnowledgeDistillation(DistillationTerm):
    """Distil a pool of frozen teachers into the student: ``L = kd_loss_weight * L_kd + L_task``.

    A :class:`DistillationTerm` keyed ``'kd'``: at ``Event.AFTER_LOSS`` of each training microbatch whose time lies
    in ``[start, end)``, the teachers that the pool selects for this step (one draw per optimizer step, shared by its
    microbatches and by any other term given the same pool) run on ``state.batch`` (eval mode, ``torch.no_grad()``,
    the trainer's precision context), their logits are averaged, and ``state.loss`` becomes
    ``{'total': lambda * kd + task, '<task key>': task, 'kd': kd}`` (see :func:`add_distillation_loss`). Outside the
    window the teachers do not run at all and the loss is left as the model returned it.

    For a sequence model with ``[N, L, C]`` logits and a mapping batch with ``labels`` (a masked LM), only the
    positions whose label is not -100 are distilled. The teachers live on this object, never on the student: they are
    not in the optimizer, not wrapped by DDP/FSDP, not in the model's state_dict. They are moved to the training
    device at ``Event.FIT_START``. The checkpoint carries this algorithm's :meth:`state_dict` (Composer saves every
    algorithm's state), which holds the pool's generator: a resumed run draws the same teachers.

    Logged: ``loss/train/kd`` (and the other loss keys) by Composer; ``kd/teachers_per_step`` (0 outside the
    window) by this algorithm. ``teacher_forwards`` counts every teacher forward pass (per microbatch) and
    ``cache_reads`` every read of cached teacher outputs instead (a pool of caches runs no teacher: its teacher
    forwards stay 0; both as the pool reports them, :meth:`TeacherPool.forwards_for` / ``reads_for``).

    Args:
        teachers: a teacher model, a sequence of them (``nn.Module``: Composer models, HF models, plain modules;
            see :func:`teacher_forward` for how each is called) or a :class:`TeacherPool` (shared with other terms).
        kd_loss: ``'kl'`` or ``'mse'`` (or a callable ``fn(student_logits, teacher_logits, temperature, mask)``).
        key: the loss key (``'kd'``); give a second KD term another key.
        kd_loss_weight: ``lambda >= 0``, the weight of ``L_kd``.
        temperature: softmax temperature of the KL loss (ignored by MSE).
        start, end: the distillation window, Composer time strings (``'0dur'``, ``'0.3dur'``, ``'10ep'``,
            ``'1000ba'``, ``'500sp'``) or ``Time``; ``dur`` is a fraction of ``max_duration``.
        pool_mode, k, scores, seed: how teachers are selected each step (see :class:`TeacherPool`).

    Example:
        >>> import torch
        >>> from composer.models import ComposerClassifier
        >>> teacher = ComposerClassifier(torch.nn.Linear(8, 3), num_classes=3)
        >>> algorithm = KnowledgeDistillation([teacher], kd_loss='kl', kd_loss_weight=1.0, end='0.3dur')
    """

    def __init__(self,
                 teachers: Union[nn.Module, Sequence[nn.Module], TeacherPool],
                 kd_loss: Union[str, LogitLossFn] = 'kl',
                 kd_loss_weight: float = 1.0,
                 temperature: float = 4.0,
                 start: Union[str, Time] = '0dur',
                 end: Union[str, Time] = '1dur',
                 pool_mode: str = 'all',
                 k: Optional[int] = None,
                 scores: Optional[Sequence[float]] = None,
                 seed: int = 0,
                 key: str = 'kd'):
        self.kd_loss = kd_loss
        self._kd_loss_fn = _loss_fn(kd_loss)
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f'temperature must be a finite number > 0, got {temperature!r}')
        if isinstance(kd_loss_weight, bool) or not isinstance(kd_loss_weight, (int, float)) or \
                not math.isfinite(kd_loss_weight) or kd_loss_weight < 0:
            raise ValueError(f'kd_loss_weight must be a finite number >= 0, got {kd_loss_weight!r}')
        self.temperature = float(temperature)
        super().__init__(teachers, weight=kd_loss_weight, key=key, start=start, end=end,
                         pool_mode=pool_mode, k=k, scores=scores, seed=seed)

    @property
    def kd_loss_weight(self) -> float:
        return self.weight

    def __repr__(self) -> str:
        loss = self.kd_loss if isinstance(self.kd_loss, str) else getattr(self.kd_loss, '__name__', 'custom')
        return (f'KnowledgeDistillation(kd_loss={loss!r}, kd_loss_weight={self.kd_loss_weight}, '
                f'temperature={self.temperature}, start={str(self.start)!r}, end={str(self.end)!r}, pool={self.pool!r})')

    def compute(self, student: ModelIO, teacher: ModelIO, batch: Any) -> torch.Tensor:
        """``L_kd`` between the student's and the (mean) teacher logits, on the masked positions of a masked LM."""
        student_logits = student.logits
        mask = distillation_mask(batch, student_logits)
        return self._kd_loss_fn(student_logits, teacher.logits, temperature=self.temperature, mask=mask)
