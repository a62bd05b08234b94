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
* :func:`fsp_matrices` / :func:`fsp_loss` (Yim et al. 2017, FSP): ``G = f_1^T f_2 / (H W)`` for each pair of
  consecutive conv features (the larger map average-pooled to the smaller's size first), shape ``[B, C_2, C_1]``;
  the loss sums over pairs the mean (over batch and matrix entries) of the squared difference. RepDistiller trains
  it alone, unweighted, as an initialisation stage.
* :func:`contrast_loss` (Tian et al. 2020, CRD): the NCE loss of RepDistiller's ``ContrastLoss`` (Eq. 18) on the
  scores of one positive and ``K`` negatives, with the uniform noise distribution ``P_n = 1/N``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ['attention_map', 'attention_transfer_loss', 'similarity_preserving_loss', 'pkt_loss', 'fsp_matrices',
           'fsp_loss', 'contrast_loss']


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


def fsp_matrices(features: list[torch.Tensor]) -> list[torch.Tensor]:
    """The FSP ("flow of solution procedure") matrix of each pair of consecutive conv features ``[B, C, H, W]``:
    ``G[b, j, i] = mean_{h,w} top[b, j, h, w] * bottom[b, i, h, w]``, shape ``[B, C_top, C_bottom]``; the larger
    spatial map of the pair is average-pooled to the smaller's size, as RepDistiller's ``FSP.compute_fsp``."""
    if len(features) < 2 or any(f.dim() != 4 for f in features):
        raise ValueError(f'FSP needs two or more conv features [B, C, H, W], got shapes '
                         f'{[tuple(f.shape) for f in features]}')
    out = []
    for bottom, top in zip(features[:-1], features[1:]):
        bottom, top = bottom.float(), top.float()
        if bottom.shape[2] > top.shape[2]:
            bottom = F.adaptive_avg_pool2d(bottom, top.shape[2:])
        elif bottom.shape[2] < top.shape[2]:
            top = F.adaptive_avg_pool2d(top, bottom.shape[2:])
        hw = top.shape[2] * top.shape[3]
        out.append(torch.bmm(top.flatten(2), bottom.flatten(2).transpose(1, 2)) / hw)
    return out


def fsp_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """FSP: ``sum_pairs mean((G_s - G_t)^2)`` over consecutive feature pairs; each student feature must have its
    teacher feature's channel count (RepDistiller raises otherwise)."""
    if len(student) != len(teacher):
        raise ValueError(f'FSP: {len(student)} student features but {len(teacher)} teacher features')
    s_c, t_c = [f.shape[1] for f in student], [f.shape[1] for f in teacher]
    if s_c != t_c:
        raise ValueError(f'FSP needs equal channel counts in student and teacher features, got {s_c} vs {t_c}')
    return sum((g_s - g_t).pow(2).mean() for g_s, g_t in zip(fsp_matrices(student), fsp_matrices(teacher)))


def contrast_loss(scores: torch.Tensor, num_data: int, eps: float = 1e-7) -> torch.Tensor:
    """RepDistiller's ``ContrastLoss``: ``-(sum_b log D(pos_b) + sum_{b,k} log(1 - D(neg_bk))) / B`` with
    ``D(x) = x / (x + K P_n)`` and ``P_n = 1/N``.

    Args:
        scores: ``[B, K + 1]`` (or ``[B, K + 1, 1]``) normalised scores ``exp(v . m / T) / Z``, the positive first.
        num_data: ``N``, the size of the memory (the training set).
    """
    scores = scores.reshape(scores.shape[0], -1).float()
    k, pn = scores.shape[1] - 1, 1.0 / float(num_data)
    pos, neg = scores[:, 0], scores[:, 1:]
    log_d1 = torch.log(pos / (pos + k * pn + eps))
    log_d0 = torch.log((k * pn) / (neg + k * pn + eps))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]
