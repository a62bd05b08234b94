"""FitNets hint learning (Romero et al., "FitNets: Hints for Thin Deep Nets", 2015) as a distillation term.

A trainable regressor maps the student's feature (the "guided" layer) to the teacher's (the "hint" layer) and the
term is the MSE between them: ``L_hint = || r(f_s) - f_t ||^2`` (mean over elements). The regressor is a head: it is
in the optimizer and in the checkpoint (see :class:`~algorithms.distillation.DistillationTerm`). RepDistiller's
weight for it is ``beta = 100``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from composer.core import Time

from ..distillation import DistillationTerm, ModelIO, TeacherPool

__all__ = ['FitNets', 'hint_loss']


def hint_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, regressor: nn.Module) -> torch.Tensor:
    """``MSE(regressor(student_feature), teacher_feature)``; a conv map is average-pooled to the teacher's size."""
    mapped = regressor(student_feature)
    if mapped.dim() == 4 and mapped.shape[-2:] != teacher_feature.shape[-2:]:
        mapped = F.adaptive_avg_pool2d(mapped, teacher_feature.shape[-2:])
    if mapped.shape != teacher_feature.shape:
        raise ValueError(f'hint: the regressed student feature {tuple(mapped.shape)} does not match the teacher '
                         f'feature {tuple(teacher_feature.shape)}')
    return F.mse_loss(mapped.float(), teacher_feature.float())


def regressor(student_channels: int, teacher_channels: int, conv: bool = True) -> nn.Module:
    """RepDistiller's ``ConvReg`` for conv maps (1x1 conv + BN + ReLU), a linear map for vectors."""
    if conv:
        return nn.Sequential(nn.Conv2d(student_channels, teacher_channels, 1), nn.BatchNorm2d(teacher_channels),
                             nn.ReLU())
    return nn.Linear(student_channels, teacher_channels)


class FitNets(DistillationTerm):
    """Add ``weight * MSE(r(student[student_feature]), teacher[teacher_feature])`` to the loss, keyed ``'hint'``.

    Args:
        teachers: a teacher, teachers, or a shared :class:`TeacherPool` (features averaged over a pool's picks).
        student_feature, teacher_feature: module paths (e.g. ``'layer2'``).
        student_channels, teacher_channels: the features' channel (or width) counts: the regressor's shape.
        conv: whether the features are conv maps ``[N, C, H, W]`` (1x1-conv regressor) or vectors (linear).
        weight: the term's weight (RepDistiller: 100). Other arguments as :class:`DistillationTerm`.

    Example:
        >>> from composer.models import ComposerClassifier
        >>> net = lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
        >>> hint = FitNets([net()], student_feature='0', teacher_feature='0', student_channels=4, teacher_channels=4)
    """

    def __init__(self,
                 teachers: Union[nn.Module, Sequence[nn.Module], TeacherPool],
                 student_feature: str,
                 teacher_feature: str,
                 student_channels: int,
                 teacher_channels: int,
                 conv: bool = True,
                 weight: float = 100.0,
                 key: str = 'hint',
                 start: Union[str, Time] = '0dur',
                 end: Union[str, Time] = '1dur',
                 pool_mode: str = 'all',
                 k: Optional[int] = None,
                 seed: int = 0):
        super().__init__(teachers, weight=weight, key=key, start=start, end=end, student_features=[student_feature],
                         teacher_features=[teacher_feature], pool_mode=pool_mode, k=k, seed=seed)
        self.student_feature, self.teacher_feature = student_feature, teacher_feature
        self.regressor = regressor(student_channels, teacher_channels, conv)

    def heads(self) -> nn.Module:
        return self.regressor

    def compute(self, student: ModelIO, teacher: ModelIO, batch: Any) -> torch.Tensor:
        return hint_loss(student.feature(self.student_feature), teacher.feature(self.teacher_feature), self.regressor)

    def __repr__(self) -> str:
        return (f'FitNets({self.student_feature!r} -> {self.teacher_feature!r}, weight={self.weight}, '
                f'start={str(self.start)!r}, end={str(self.end)!r}, pool={self.pool!r})')
