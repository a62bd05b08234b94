"""Feature distillation terms: a loss on pairs of (student, teacher) features named by module path.

:class:`FeatureDistillation` is a :class:`~algorithms.distillation.DistillationTerm` that sums ``loss(f_s, f_t)``
over its feature pairs; :class:`AttentionTransfer`, :class:`SimilarityPreserving` and :class:`PKT` are it with
RepDistiller's loss and weight. Each composes with :class:`~algorithms.distillation.KnowledgeDistillation` (AT+KD,
SP+KD, PKT+KD): name both in one Trainer (sharing a :class:`~algorithms.distillation.TeacherPool` shares the
teacher forward) and the loss dict holds ``ce``, ``kd`` and the feature term.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from composer.core import Time

from ..distillation import DistillationTerm, ModelIO, TeacherPool
from .losses import attention_transfer_loss, pkt_loss, similarity_preserving_loss

__all__ = ['FeatureDistillation', 'AttentionTransfer', 'SimilarityPreserving', 'PKT']

Teachers = Union[nn.Module, Sequence[nn.Module], TeacherPool]


def _names(features: Union[str, Sequence[str]], what: str) -> list[str]:
    names = [features] if isinstance(features, str) else list(features)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f'{what}: expected one or more module paths, got {features!r}')
    return names


class FeatureDistillation(DistillationTerm):
    """``weight * sum_i loss(student[s_i], teacher[t_i])`` over paired features, keyed ``key``.

    Args:
        teachers: a teacher, teachers or a shared pool (features are averaged over a pool's picks).
        student_features, teacher_features: module paths, paired in order (``teacher_features`` defaults to the
            student's names: same-architecture teachers).
        loss: ``fn(student_feature, teacher_feature) -> Tensor``.
        weight, key, start, end, pool_mode, k, seed: as :class:`DistillationTerm`.
    """

    def __init__(self, teachers: Teachers, student_features: Union[str, Sequence[str]],
                 loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 teacher_features: Union[str, Sequence[str], None] = None, weight: float = 1.0, key: str = 'feat',
                 start: Union[str, Time] = '0dur', end: Union[str, Time] = '1dur', pool_mode: str = 'all',
                 k: Optional[int] = None, seed: int = 0):
        s_names = _names(student_features, 'student_features')
        t_names = _names(teacher_features, 'teacher_features') if teacher_features is not None else list(s_names)
        if len(s_names) != len(t_names):
            raise ValueError(f'student_features ({len(s_names)}) and teacher_features ({len(t_names)}) must pair up')
        super().__init__(teachers, weight=weight, key=key, start=start, end=end, student_features=s_names,
                         teacher_features=t_names, pool_mode=pool_mode, k=k, seed=seed)
        self.pairs = list(zip(s_names, t_names))
        self.feature_loss = loss

    def compute(self, student: ModelIO, teacher: ModelIO, batch: Any) -> torch.Tensor:
        return sum(self.feature_loss(student.feature(s), teacher.feature(t)) for s, t in self.pairs)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(pairs={self.pairs}, weight={self.weight}, start={str(self.start)!r}, '
                f'end={str(self.end)!r}, pool={self.pool!r})')


class AttentionTransfer(FeatureDistillation):
    """AT (Zagoruyko & Komodakis 2017) on conv features, RepDistiller's ``p = 2``, ``beta = 1000``, keyed ``'at'``."""

    def __init__(self, teachers: Teachers, student_features: Union[str, Sequence[str]],
                 teacher_features: Union[str, Sequence[str], None] = None, p: float = 2.0, weight: float = 1000.0,
                 key: str = 'at', **kwargs: Any):
        self.p = float(p)
        super().__init__(teachers, student_features, lambda s, t: attention_transfer_loss(s, t, self.p),
                         teacher_features, weight=weight, key=key, **kwargs)


class SimilarityPreserving(FeatureDistillation):
    """SP (Tung & Mori 2019), RepDistiller's ``beta = 3000`` (on the last feature before the classifier), ``'sp'``."""

    def __init__(self, teachers: Teachers, student_features: Union[str, Sequence[str]],
                 teacher_features: Union[str, Sequence[str], None] = None, weight: float = 3000.0, key: str = 'sp',
                 **kwargs: Any):
        super().__init__(teachers, student_features, similarity_preserving_loss, teacher_features, weight=weight,
                         key=key, **kwargs)


class PKT(FeatureDistillation):
    """PKT (Passalis & Tefas 2018), RepDistiller's ``beta = 30000`` (on the penultimate embedding), ``'pkt'``."""

    def __init__(self, teachers: Teachers, student_features: Union[str, Sequence[str]],
                 teacher_features: Union[str, Sequence[str], None] = None, weight: float = 30000.0,
                 key: str = 'pkt', **kwargs: Any):
        super().__init__(teachers, student_features, pkt_loss, teacher_features, weight=weight, key=key, **kwargs)
