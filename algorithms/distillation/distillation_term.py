"""One distillation loss term, as a Composer Algorithm: the base of every distillation method of the project.

A ``DistillationTerm`` adds ``weight * loss_fn(student_io, teacher_io, batch)`` to ``state.loss`` under its own key
(``'kd'``, ``'at'``, ``'sp'``, ...), so several of them compose into one dict ``{'total', 'ce', 'kd', 'at', ...}``
that Composer backpropagates (``'total'``) and logs (``loss/train/<key>``). It owns what every method needs:

* a ``[start, end)`` window in Composer time strings, outside which no teacher runs;
* teachers in a :class:`TeacherPool` (one draw per optimizer step); terms given the same pool share one teacher
  forward per microbatch, with every feature any of them tapped;
* feature taps on the student (``student_features``) and the teachers (``teacher_features``), by module path;
* trainable heads (embeddings, regressors): :meth:`heads` returns them; at ``Event.INIT`` (Composer's moment for
  model surgery, before DDP wrapping and checkpoint loading) they are registered on the student as
  ``model.distillation_heads[<key>]`` and added to the optimizer as a parameter group (Composer builds the
  optimizer before the algorithms run). So they are trained and saved in and restored from the checkpoint with the
  model and the optimizer state (Composer maps optimizer state to model parameter names, so a head outside the
  model could not be checkpointed). DDP is told to ignore them (they are used after the forward, and not at all
  outside the window, which DDP's reducer refuses); instead their gradients are averaged across ranks after each
  backward. ``load_teacher_weights`` ignores them when such a student later serves as a teacher.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from composer.core import Algorithm, Event, State, Time
from composer.core.precision import get_precision_context
from composer.loggers import Logger
from composer.utils import dist

from ..common.feature_taps import FeatureTaps, resolve_module
from ..common.time_strings import parse_time, reached
from .loss_dict import add_distillation_loss
from .model_io import DistillationLossFn, ModelIO
from .teacher_pool import TeacherPool

__all__ = ['DistillationTerm', 'HEADS_ATTR']

#: The student's attribute that holds every term's trainable heads, by loss key.
HEADS_ATTR = 'distillation_heads'


def _uses_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-d (convolution) weight is stored channels-last."""
    for p in model.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


class DistillationTerm(Algorithm):
    """Add ``weight * loss_fn(student_io, teacher_io, batch)`` to ``state.loss[key]`` inside ``[start, end)``.

    Args:
        teachers: a teacher, a sequence of teachers, or a :class:`TeacherPool` (pass the same pool to several
            terms to share its forwards).
        loss_fn: ``fn(student_io, teacher_io, batch) -> Tensor`` (see :class:`ModelIO`); subclasses may instead
            override :meth:`compute`.
        weight: the term's weight ``>= 0`` in ``total``.
        key: its key in ``state.loss`` (logged as ``loss/train/<key>``); two terms with one key are refused.
        start, end: the window, Composer time strings (``'0dur'``, ``'0.3dur'``, ``'10ep'``, ``'1000ba'``) or Time.
        student_features, teacher_features: module paths to tap (e.g. ``['layer2', 'layer3']``).
        pool_mode, k, scores, seed: the pool's selection rule when ``teachers`` is not already a pool.
    """

    def __init__(self,
                 teachers: Union[nn.Module, Sequence[nn.Module], TeacherPool],
                 loss_fn: Optional[DistillationLossFn] = None,
                 weight: float = 1.0,
                 key: str = 'distill',
                 start: Union[str, Time] = '0dur',
                 end: Union[str, Time] = '1dur',
                 student_features: Sequence[str] = (),
                 teacher_features: Sequence[str] = (),
                 pool_mode: str = 'all',
                 k: Optional[int] = None,
                 scores: Optional[Sequence[float]] = None,
                 seed: int = 0):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f'{key} weight must be a finite number >= 0, got {weight!r}')
        if not isinstance(key, str) or not key or key == 'total':
            raise ValueError(f"key must be a non-empty loss name other than 'total', got {key!r}")
        self.loss_fn = loss_fn
        self.weight = float(weight)
        self.key = key
        self.start = parse_time(start, 'start')
        self.end = parse_time(end, 'end')
        if self.start.unit == self.end.unit and self.end.value <= self.start.value:
            raise ValueError(f'end ({end!r}) must be after start ({start!r})')
        self.pool = teachers if isinstance(teachers, TeacherPool) else \
            TeacherPool(teachers, mode=pool_mode, k=k, scores=scores, seed=seed)
        self.student_features = list(student_features)
        self.pool.request_features(list(teacher_features))  # an unknown module name fails here, before training
        self.teacher_forwards = 0  # teacher forwards this term used (a shared pool runs each only once)
        self.cache_reads = 0  # reads of cached teacher outputs instead (a CachedTeacherPool runs no teacher)
        self._taps: Optional[FeatureTaps] = None

    @property
    def teachers(self) -> list[nn.Module]:
        return self.pool.teachers

    # --- what subclasses customise --------------------------------------------------------------------------------
    def compute(self, student: ModelIO, teacher: ModelIO, batch: Any) -> torch.Tensor:
        """The term's unweighted value; by default ``loss_fn(student, teacher, batch)``."""
        if self.loss_fn is None:
            raise NotImplementedError(f'{type(self).__name__} needs a loss_fn or a compute() of its own')
        return self.loss_fn(student, teacher, batch)

    def heads(self) -> Optional[nn.Module]:
        """Trainable modules of the method (CRD embeddings, FitNets regressors), or None."""
        return None

    def check_model(self, model: nn.Module) -> None:
        """Raise ``KeyError`` now (before training) if a student feature names a module ``model`` lacks."""
        for name in self.student_features:
            resolve_module(model, name)

    # --- the window ---------------------------------------------------------------------------------------------
    def in_window(self, state: State) -> bool:
        """Whether the current step lies in ``[start, end)``."""
        return reached(self.start, state) and not reached(self.end, state)

    # --- Composer hooks -----------------------------------------------------------------------------------------
    def match(self, event: Event, state: State) -> bool:
        return event in (Event.INIT, Event.FIT_START, Event.BEFORE_FORWARD, Event.AFTER_LOSS,
                         Event.AFTER_BACKWARD)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.INIT:
            self._add_heads(state)
        elif event == Event.FIT_START:
            self.pool.prepare(state.device, channels_last=_uses_channels_last(state.model))
            if self.student_features and self._taps is None:
                self._taps = FeatureTaps(state.model, self.student_features)
        elif event == Event.BEFORE_FORWARD:
            if self._taps is not None:
                self._taps.active = self.in_window(state)
        elif event == Event.AFTER_LOSS:
            self._add_term(state, logger)
        elif event == Event.AFTER_BACKWARD:
            self._average_head_grads()

    def _add_term(self, state: State, logger: Logger) -> None:
        if not self.in_window(state):
            logger.log_metrics({f'{self.key}/teachers_per_step': 0})
            return
        step = int(state.timestamp.batch)
        indices = self.pool.selection(step)
        # AFTER_LOSS runs outside the trainer's autocast: give the teachers the student's precision context.
        with get_precision_context(state.precision, state.precision_config, fp8_autocast_enabled=False):
            teacher = self.pool.forward(state.batch, indices, step=step)
        self.teacher_forwards += self.pool.forwards_for(indices)  # what the pool says serving them costs
        self.cache_reads += self.pool.reads_for(indices)
        student = ModelIO(outputs=state.outputs)
        if self._taps is not None:
            student.features, student.inputs = dict(self._taps.outputs), dict(self._taps.inputs)
            self._taps.clear()
            self._taps.active = False
        value = self.compute(student, teacher, state.batch)
        state.loss = add_distillation_loss(state.loss, value, self.weight, key=self.key)
        logger.log_metrics({f'{self.key}/teachers_per_step': len(indices)})

    def _add_heads(self, state: State) -> None:
        heads = self.heads()
        if heads is None:
            return
        container = getattr(state.model, HEADS_ATTR, None)
        if container is None:
            container = nn.ModuleDict()
            setattr(state.model, HEADS_ATTR, container)
        container[self.key] = heads
        # DDP (wrapped after INIT) must not manage the heads: keep them out of its reducer and buffer broadcast.
        ignored = set(getattr(state.model, '_ddp_params_and_buffers_to_ignore', ()))
        ignored |= {f'{HEADS_ATTR}.{self.key}.{name}' for name, _ in heads.named_parameters()}
        ignored |= {f'{HEADS_ATTR}.{self.key}.{name}' for name, _ in heads.named_buffers()}
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(state.model, sorted(ignored))
        state.device.module_to_device(heads)  # in place: the parameters stay the objects the optimizer will hold
        params = [p for p in heads.parameters() if p.requires_grad]
        for optimizer in state.optimizers[:1]:
            held = {id(p) for group in optimizer.param_groups for p in group['params']}
            new = [p for p in params if id(p) not in held]
            if new:
                optimizer.add_param_group({'params': new})  # the optimizer's defaults (lr, weight decay, ...)
                group = optimizer.param_groups[-1]
                if 'initial_lr' in optimizer.param_groups[0]:  # Composer's decoupled optimizers keep it per group
                    group['initial_lr'] = group['lr']

    def _average_head_grads(self) -> None:
        """Average the heads' gradients across ranks (DDP ignores them). Run after every microbatch's backward:
        the gradient accumulated so far is already equal on all ranks, so averaging again keeps it exact.

        A head not used in this step (outside the window) gets a zero gradient, so that the optimizer holds state
        for it from the first step: a checkpoint taken before the window opens can then be resumed (Composer
        restores optimizer state by parameter name and fails on a parameter without any). Weight decay acts on an
        idle head as on any other parameter."""
        heads = self.heads()
        if heads is None:
            return
        for p in heads.parameters():
            if p.requires_grad and p.grad is None:
                p.grad = torch.zeros_like(p)
        world = dist.get_world_size()
        if world == 1:
            return
        for p in heads.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad, reduce_operation='SUM')
                p.grad /= world

    # --- checkpointing (Composer saves and restores every algorithm's state_dict) --------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {'repr': repr(self), 'pool': self.pool.state_dict(), 'teacher_forwards': self.teacher_forwards,
                'cache_reads': self.cache_reads}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if 'pool' in state:
            self.pool.load_state_dict(state['pool'])
        self.teacher_forwards = int(state.get('teacher_forwards', self.teacher_forwards))
        self.cache_reads = int(state.get('cache_reads', self.cache_reads))
