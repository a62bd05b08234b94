"""Knowledge distillation (Hinton et al., 2015) from a pool of teachers, for a window of training, as a Composer
Algorithm: the total loss is ``L = lambda * L_kd + L_task``.

The pure functions (:func:`distillation_loss`, :func:`distillation_mask`, :func:`add_distillation_loss`) work in
any PyTorch loop; :class:`KnowledgeDistillation` wires them into Composer's training loop at ``Event.AFTER_LOSS``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from composer.core import Algorithm, Event, State, Time, TimeUnit
from composer.core.precision import get_precision_context
from composer.loggers import Logger

from .losses import IGNORE_INDEX, KD_LOSSES
from .teacher_pool import TeacherPool, extract_logits

__all__ = ['KnowledgeDistillation', 'distillation_loss', 'distillation_mask', 'add_distillation_loss']

LossFn = Callable[..., torch.Tensor]


def _loss_fn(kd_loss: Union[str, LossFn]) -> LossFn:
    if callable(kd_loss):
        return kd_loss
    if kd_loss not in KD_LOSSES:
        raise ValueError(f'unknown kd_loss {kd_loss!r}; expected one of {", ".join(KD_LOSSES)} or a callable '
                         'fn(student_logits, teacher_logits, temperature, mask)')
    return KD_LOSSES[kd_loss]


def distillation_loss(student_logits: torch.Tensor,
                      teacher_logits: torch.Tensor,
                      kd_loss: Union[str, LossFn] = 'kl',
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


def add_distillation_loss(loss: Any, kd: torch.Tensor, kd_loss_weight: float) -> dict[str, torch.Tensor]:
    """Combine the task loss that a Composer model returned with ``L_kd`` into the dict Composer understands.

    Returns ``{'total': kd_loss_weight * kd + task, <task entries>, 'kd': kd}``: a tensor task loss is keyed
    ``'ce'``; a dict keeps its entries (its ``'total'``, if any, is the task loss; otherwise the sum of the entries'
    means, as Composer would sum them); a tuple/list is keyed ``'loss0'``, ``'loss1'``... Composer backpropagates
    ``'total'`` and logs every key as ``loss/train/<key>``.
    """
    if isinstance(loss, torch.Tensor):
        entries = {'ce': loss}
        task = loss.mean()
    elif isinstance(loss, Mapping):
        entries = dict(loss)
        task = entries['total'] if 'total' in entries else sum(v.mean() for v in entries.values())
    elif isinstance(loss, (tuple, list)):
        entries = {f'loss{i}': v for i, v in enumerate(loss)}
        task = sum(v.mean() for v in loss)
    else:
        raise TypeError(f'cannot add a distillation loss to a task loss of type {type(loss).__name__}')
    if 'kd' in entries:
        raise ValueError("the task loss already has a 'kd' entry (two distillation algorithms?)")
    entries['kd'] = kd
    entries['total'] = kd_loss_weight * kd + task
    return entries


def _parse_time(value: Union[str, Time], name: str) -> Time:
    if isinstance(value, Time):
        time = value
    elif isinstance(value, str):
        try:
            time = Time.from_timestring(value)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{name}={value!r} is not a Composer time string such as '0.3dur', '10ep', '1000ba', "
                             f"'500sp' ({e})") from e
    else:
        raise ValueError(f"{name} must be a Composer time string such as '0.3dur' or a Time, got {value!r}")
    if time.value < 0:
        raise ValueError(f'{name}={value!r} must not be negative')
    return time


def _uses_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-d (convolution) weight is stored channels-last."""
    for p in model.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


class KnowledgeDistillation(Algorithm):
    """Distil a pool of frozen teachers into the student: ``L = kd_loss_weight * L_kd + L_task``.

    At ``Event.AFTER_LOSS`` of each training microbatch whose time lies in ``[start, end)``, the teachers that the
    pool selects for this step (one draw per optimizer step, shared by its microbatches) run on ``state.batch``
    (eval mode, ``torch.no_grad()``, the trainer's precision context), their logits are averaged, and ``state.loss``
    becomes ``{'total': lambda * kd + task, '<task key>': task, 'kd': kd}`` (see :func:`add_distillation_loss`).
    Outside the window the teachers do not run at all and the loss is left as the model returned it.

    For a sequence model with ``[N, L, C]`` logits and a mapping batch with ``labels`` (a masked LM), only the
    positions whose label is not -100 are distilled. The teachers live on this object, never on the student: they are
    not in the optimizer, not wrapped by DDP/FSDP, not in the model's state_dict. They are moved to the training
    device at ``Event.FIT_START``. The checkpoint carries this algorithm's :meth:`state_dict` (Composer saves every
    algorithm's state), which holds the pool's generator: a resumed run draws the same teachers.

    Logged: ``loss/train/kd`` (and the other loss keys) by Composer; ``kd/teachers_per_step`` (0 outside the
    window) by this algorithm. ``teacher_forwards`` counts every teacher forward pass (per microbatch).

    Args:
        teachers: a teacher model or a sequence of them (``nn.Module``: Composer models, HF models, plain modules;
            see :func:`teacher_forward` for how each is called).
        kd_loss: ``'kl'`` or ``'mse'`` (or a callable ``fn(student_logits, teacher_logits, temperature, mask)``).
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
                 teachers: Union[nn.Module, Sequence[nn.Module]],
                 kd_loss: Union[str, LossFn] = 'kl',
                 kd_loss_weight: float = 1.0,
                 temperature: float = 4.0,
                 start: Union[str, Time] = '0dur',
                 end: Union[str, Time] = '1dur',
                 pool_mode: str = 'all',
                 k: Optional[int] = None,
                 scores: Optional[Sequence[float]] = None,
                 seed: int = 0):
        self.kd_loss = kd_loss
        self._kd_loss_fn = _loss_fn(kd_loss)
        if isinstance(kd_loss_weight, bool) or not isinstance(kd_loss_weight, (int, float)) or \
                not math.isfinite(kd_loss_weight) or kd_loss_weight < 0:
            raise ValueError(f'kd_loss_weight must be a finite number >= 0, got {kd_loss_weight!r}')
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f'temperature must be a finite number > 0, got {temperature!r}')
        self.kd_loss_weight = float(kd_loss_weight)
        self.temperature = float(temperature)
        self.start = _parse_time(start, 'start')
        self.end = _parse_time(end, 'end')
        if self.start.unit == self.end.unit and self.end.value <= self.start.value:
            raise ValueError(f'end ({end!r}) must be after start ({start!r})')
        self.pool = TeacherPool(teachers, mode=pool_mode, k=k, scores=scores, seed=seed)
        self.teacher_forwards = 0
        self._step: Optional[int] = None  # the batch the current selection was drawn for
        self._indices: list[int] = []

    def __repr__(self) -> str:
        loss = self.kd_loss if isinstance(self.kd_loss, str) else getattr(self.kd_loss, '__name__', 'custom')
        return (f'KnowledgeDistillation(kd_loss={loss!r}, kd_loss_weight={self.kd_loss_weight}, '
                f'temperature={self.temperature}, start={str(self.start)!r}, end={str(self.end)!r}, pool={self.pool!r})')

    @property
    def teachers(self) -> list[nn.Module]:
        return self.pool.teachers

    # --- the window ---------------------------------------------------------------------------------------------
    def _reached(self, time: Time, state: State) -> bool:
        """Whether training has reached ``time`` (the timestamp counts the batches completed before this one)."""
        if time.unit != TimeUnit.DURATION:
            return state.timestamp.get(time.unit).value >= time.value
        max_duration = state.max_duration
        if max_duration is None:
            raise ValueError(f"a '{time}' window needs the trainer's max_duration")
        if max_duration.unit == TimeUnit.EPOCH and state.dataloader_len is not None and int(state.dataloader_len) > 0:
            # Batch resolution instead of whole epochs: '0.3dur' of 2 epochs starts mid-epoch.
            elapsed = state.timestamp.batch.value / (max_duration.value * int(state.dataloader_len))
        else:
            elapsed = state.timestamp.get(max_duration.unit).value / max_duration.value
        return elapsed >= time.value

    def in_window(self, state: State) -> bool:
        """Whether the current step lies in ``[start, end)``."""
        return self._reached(self.start, state) and not self._reached(self.end, state)

    # --- Composer hooks -----------------------------------------------------------------------------------------
    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_LOSS)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.FIT_START:
            channels_last = _uses_channels_last(state.model)
            for teacher in self.pool.teachers:
                state.device.module_to_device(teacher)
                if channels_last:  # match the student's memory format (e.g. after Composer's ChannelsLast)
                    teacher.to(memory_format=torch.channels_last)
                teacher.eval()
            return

        if not self.in_window(state):
            logger.log_metrics({'kd/teachers_per_step': 0})
            return

        step = int(state.timestamp.batch)
        if self._step != step:  # one draw per optimizer step, shared by its microbatches
            self._indices = self.pool.select()
            self._step = step
        # AFTER_LOSS runs outside the trainer's autocast: give the teachers the student's precision context.
        with get_precision_context(state.precision, state.precision_config, fp8_autocast_enabled=False):
            teacher_logits = self.pool.logits(state.batch, self._indices)
        self.teacher_forwards += len(self._indices)

        student_logits = extract_logits(state.outputs)
        mask = distillation_mask(state.batch, student_logits)
        kd = self._kd_loss_fn(student_logits, teacher_logits, temperature=self.temperature, mask=mask)
        state.loss = add_distillation_loss(state.loss, kd, self.kd_loss_weight)
        logger.log_metrics({'kd/teachers_per_step': len(self._indices)})

    # --- checkpointing (Composer saves and restores every algorithm's state_dict) --------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {'repr': repr(self), 'pool': self.pool.state_dict(), 'teacher_forwards': self.teacher_forwards}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if 'pool' in state:
            self.pool.load_state_dict(state['pool'])
        self.teacher_forwards = int(state.get('teacher_forwards', self.teacher_forwards))
        self._step = None
