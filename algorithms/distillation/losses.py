"""Logit distillation losses: KL divergence with temperature (Hinton et al., 2015) and MSE between logits.

Both take student and teacher logits of shape ``[N, C]`` or ``[N, L, C]`` (a sequence model: every position is a
row) and an optional boolean ``mask`` of shape ``logits.shape[:-1]`` that keeps only some rows, e.g. the masked
positions of a masked language model (``labels != -100``). Teacher logits ``[M, C]`` with student logits
``[N, L, C]`` and a mask of ``M`` kept rows are a teacher cache's rows (already the masked positions). Both compute
in float32 whatever the input dtype.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

__all__ = ['kl_divergence_loss', 'mse_logits_loss', 'KD_LOSSES', 'IGNORE_INDEX']

#: The label value that marks a position without a target (PyTorch's and Hugging Face's convention).
IGNORE_INDEX = -100


def _rows(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
          mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten ``[..., C]`` logits to float32 rows ``[M, C]``, keeping only the rows where ``mask`` is True."""
    if mask is not None and student_logits.dim() == 3 and teacher_logits.dim() == 2 and \
            student_logits.shape[-1] == teacher_logits.shape[-1]:  # a cache's rows: the masked positions already
        student_logits = student_logits[mask.to(device=student_logits.device, dtype=torch.bool)]
        if student_logits.shape[0] != teacher_logits.shape[0]:
            raise ValueError(f'{student_logits.shape[0]} masked positions of the student for {teacher_logits.shape[0]} '
                             'rows of teacher logits')
        mask = None
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f'student logits {tuple(student_logits.shape)} and teacher logits '
                         f'{tuple(teacher_logits.shape)} must have the same shape')
    if student_logits.dim() < 2:
        raise ValueError(f'logits must have shape [N, C] or [N, L, C], got {tuple(student_logits.shape)}')
    num_classes = student_logits.shape[-1]
    if mask is not None:
        if mask.shape != student_logits.shape[:-1]:
            raise ValueError(f'mask {tuple(mask.shape)} must have the logits shape without the class dimension, '
                             f'{tuple(student_logits.shape[:-1])}')
        mask = mask.to(device=student_logits.device, dtype=torch.bool)
        student_logits, teacher_logits = student_logits[mask], teacher_logits[mask]
    return (student_logits.reshape(-1, num_classes).float(), teacher_logits.reshape(-1, num_classes).float())


def kl_divergence_loss(student_logits: torch.Tensor,
                       teacher_logits: torch.Tensor,
                       temperature: float = 4.0,
                       mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Hinton's distillation loss ``KL(softmax(t / T) || softmax(s / T)) * T^2``, averaged over rows.

    The teacher's softened distribution is the target: ``sum_c p_t(c) * (log p_t(c) - log p_s(c))`` per row, the
    mean over rows (``reduction='batchmean'``), times ``T^2`` so that gradient magnitudes do not shrink as ``T``
    grows. Returns a zero that keeps the graph when the mask selects no row.

    Args:
        student_logits: ``[N, C]`` or ``[N, L, C]`` logits of the student (carry the gradient).
        teacher_logits: the teacher's logits, same shape.
        temperature: ``T > 0``; 4 as in RepDistiller.
        mask: optional boolean tensor of shape ``logits.shape[:-1]``; only rows where it is True count.

    ``teacher_logits`` may also be a teacher cache's sparse targets (top-k or sampled, one per kept row): then
    :func:`~algorithms.distillation.sparse_targets.sparse_kl_loss` computes the KL towards them.
    """
    if temperature <= 0:
        raise ValueError(f'temperature must be > 0, got {temperature}')
    if not isinstance(teacher_logits, torch.Tensor):  # a cache's SparseTargets (no import: this file stands alone)
        return teacher_logits.kl_loss(student_logits, temperature, mask)
    s, t = _rows(student_logits, teacher_logits, mask)
    if s.shape[0] == 0:
        return student_logits.sum() * 0.0
    return F.kl_div(
        F.log_softmax(s / temperature, dim=-1),
        F.log_softmax(t / temperature, dim=-1),
        log_target=True,
        reduction='batchmean',
    ) * (temperature**2)


def mse_logits_loss(student_logits: torch.Tensor,
                    teacher_logits: torch.Tensor,
                    temperature: Optional[float] = None,
                    mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean squared error between raw student and teacher logits (mean over every kept element).

    ``temperature`` is accepted so that both losses share one signature, and ignored: the MSE works on raw logits.
    """
    del temperature  # raw logits, no softening
    if not isinstance(teacher_logits, torch.Tensor):  # a cache's SparseTargets
        raise ValueError(f'the MSE between logits needs every teacher logit; these targets are {teacher_logits.kind} '
                         '(use a dense cache, or the KL loss)')
    s, t = _rows(student_logits, teacher_logits, mask)
    if s.shape[0] == 0:
        return student_logits.sum() * 0.0
    return F.mse_loss(s, t)


#: Losses by the name a config uses; each is ``fn(student_logits, teacher_logits, temperature, mask)``.
KD_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    'kl': kl_divergence_loss,
    'mse': mse_logits_loss,
}
