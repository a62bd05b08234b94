"""Feature distillation losses as RepDistiller computes them (the code the seed's chapter III used).

Each takes one student feature and one teacher feature (same batch, same order) and returns a scalar tensor, in
float32 whatever the input dtype:

* :func:`attention_transfer_loss` (Zagoruyko & Komodakis 2017, AT): the attention map of a conv feature is the
  channel mean of ``f^p`` flattened and L2-normalised; the loss is the mean squared difference of the two maps,
  the larger map average-pooled to the smaller's size first. RepDistiller: ``p = 2``, weight ``beta = 1000``.
* :func:`similarity_preserving_loss` (Tung & Mori 2019, SP): the batch Gram matrix ``G = F F^T`` of flattened
  features, each row L2-normalised; ``||G_t - G_s||_F^2 / B^2``. RepDistiller: ``beta = 3000``.
* :func:`pkt_loss` (Passalis & Tefas 2018, PKT): cosine similarities of flattened features mapped to ``(s + 1) / 2``,
  each row normalised to a probability distribution; ``mean(P_t * log((P_t + eps) / (P_s + eps)))``, ``eps=1e-7``.
  RepDistiller: ``beta = 30000``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ['attention_map', 'attention_transfer_loss', 'similarity_preserving_loss', 'pkt_loss']


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``normalize(mean_c(f^p).flatten())``: one L2-normalised spatial attention vector per example."""
    if feature.dim() != 4:
        raise ValueError(f'attention transfer needs conv features [N, C, H, W], got {tuple(feature.shape)}')
    return F.normalize(feature.float().pow(p).mean(1).view(feature.size(0), -1))


def attention_transfer_loss(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """AT between two conv features; the larger spatial map is average-pooled to the smaller one's size."""
    s_h, t_h = student.shape[2], teacher.shape[2]
    if s_h > t_h:
        student = F.adaptive_avg_pool2d(student, teacher.shape[2:])
    elif s_h < t_h:
        teacher = F.adaptive_avg_pool2d(teacher, student.shape[2:])
    return (attention_map(student, p) - attention_map(teacher, p)).pow(2).mean()


def similarity_preserving_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """SP: ``||normalize(F_t F_t^T) - normalize(F_s F_s^T)||_F^2 / B^2`` over flattened features."""
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f'student and teacher batches differ: {student.shape[0]} vs {teacher.shape[0]}')
    b = student.shape[0]
    s, t = student.float().reshape(b, -1), teacher.float().reshape(b, -1)
    g_s, g_t = F.normalize(s @ s.t()), F.normalize(t @ t.t())
    return (g_t - g_s).pow(2).sum() / (b * b)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """PKT: KL-like divergence between the two batches' cosine-similarity distributions (flattened features)."""
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f'student and teacher batches differ: {student.shape[0]} vs {teacher.shape[0]}')

    def distribution(x: torch.Tensor) -> torch.Tensor:
        x = x.float().reshape(x.shape[0], -1)
        x = torch.nan_to_num(x / (x.norm(dim=1, keepdim=True) + eps), nan=0.0)
        sim = (x @ x.t() + 1.0) / 2.0
        return sim / sim.sum(dim=1, keepdim=True)

    p_s, p_t = distribution(student), distribution(teacher)
    return torch.mean(p_t * torch.log((p_t + eps) / (p_s + eps)))
