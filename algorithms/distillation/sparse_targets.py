"""Sparse teacher targets and the KL loss on them: top-k with the tail's mass, and Random-Sampling KD's samples.

A dense cache stores every logit; over a large label space (ImageNet's 1,000 classes, a vocabulary) a cache stores
a few entries per row instead. Both sparse kinds are fixed at the temperature ``T`` they were made at (the loss
refuses another ``T``):

* ``topk`` (FKD's soft labels, Shen & Xing 2022): the ``k`` largest teacher logits (``values``, at their
  ``indices``) and ``tail``, the teacher's total probability at ``T`` outside them. The loss is the KL between the
  teacher's and the student's distributions coarsened to ``k + 1`` buckets (the ``k`` classes, and "any other"
  whose student mass is the student's probability outside the ``k`` classes): exact at ``k = C`` (the tail is
  empty), a lower bound of the full KL otherwise (coarsening never increases a KL), and biased.
* ``sampled`` (Random-Sampling KD, Anshumann et al., ACL 2025): ``m`` classes drawn with replacement from a
  proposal ``r`` (``r = p_t`` by default, or ``r ~ p_t^beta``), kept as distinct ``indices`` with importance
  weights ``values = (count / m) * p_t / r`` (zero for padding), and ``tail`` = the teacher's entropy ``H(p_t)``
  at ``T``. ``sum_i w_i (-log q_s(i)) - H`` is an unbiased estimate of ``KL(p_t || q_s)`` and its gradient is an
  unbiased estimate of the full gradient: ``E[w_i] = p_t(i)`` for every class.

Every loss is Hinton's convention of :func:`~algorithms.distillation.kl_divergence_loss`: ``T^2`` times the mean
over rows, computed in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ['SparseTargets', 'SPARSE_KINDS', 'topk_targets', 'sampled_targets', 'topk_probabilities',
           'sparse_kl_loss']

SPARSE_KINDS = ('topk', 'sampled')


@dataclass
class SparseTargets:
    """A teacher's sparse targets for ``N`` rows.

    Attributes:
        kind: ``'topk'`` or ``'sampled'``.
        indices: ``[N, m]`` class indices (int64).
        values: ``[N, m]`` topk: the teacher's raw logits at ``indices``; sampled: importance weights (0: padding).
        tail: ``[N]`` topk: the teacher's probability at ``T`` outside ``indices``; sampled: its entropy at ``T``.
        temperature: the ``T`` they were made at.
    """

    kind: str
    indices: torch.Tensor
    values: torch.Tensor
    tail: torch.Tensor
    temperature: float

    def __post_init__(self) -> None:
        if self.kind not in SPARSE_KINDS:
            raise ValueError(f'unknown sparse target kind {self.kind!r}; expected one of {", ".join(SPARSE_KINDS)}')
        if self.indices.shape != self.values.shape or self.indices.dim() != 2 or \
                self.tail.shape != self.indices.shape[:1]:
            raise ValueError(f'sparse targets need indices and values [N, m] and tail [N]; got '
                             f'{tuple(self.indices.shape)}, {tuple(self.values.shape)}, {tuple(self.tail.shape)}')

    def __len__(self) -> int:
        return self.indices.shape[0]

    def kl_loss(self, student_logits: torch.Tensor, temperature: float,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:func:`sparse_kl_loss` towards these targets (what ``kl_divergence_loss`` calls for them)."""
        return sparse_kl_loss(student_logits, self, temperature, mask)

    def to(self, device: torch.device | str) -> 'SparseTargets':
        return SparseTargets(self.kind, self.indices.to(device), self.values.to(device), self.tail.to(device),
                             self.temperature)

    def select(self, rows: torch.Tensor | slice) -> 'SparseTargets':
        return SparseTargets(self.kind, self.indices[rows], self.values[rows], self.tail[rows], self.temperature)


def topk_targets(logits: torch.Tensor, k: int, temperature: float) -> SparseTargets:
    """The ``k`` largest of each row of ``logits`` ``[N, C]`` and the probability at ``temperature`` outside them
    (summed over the tail itself, so that it is exactly 0 at ``k = C``)."""
    logits = logits.float()
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f'k must be between 1 and the number of classes ({logits.shape[-1]}), got {k}')
    values, indices = logits.topk(k, dim=-1)
    probs = F.softmax(logits / temperature, dim=-1)
    tail = probs.scatter(-1, indices, 0.0).sum(-1)  # over the tail's own classes (no cancellation); 0 at k = C
    return SparseTargets('topk', indices, values, tail, float(temperature))


def topk_probabilities(targets: SparseTargets) -> torch.Tensor:
    """The teacher's probabilities at ``T`` of the top-k classes, ``[N, k]``: ``softmax(values / T)`` scaled by
    ``1 - tail``, so that they and the tail add up to 1."""
    return F.softmax(targets.values.float() / targets.temperature, dim=-1) * (1 - targets.tail.float()).unsqueeze(-1)


def sampled_targets(logits: torch.Tensor, m: int, temperature: float, generator: Optional[torch.Generator] = None,
                    power: float = 1.0) -> SparseTargets:
    """Random-Sampling KD's targets: ``m`` draws with replacement per row from the proposal ``r ~ p_t^power``
    (``p_t = softmax(logits / T)``), kept as distinct classes with weights ``count / m * p_t / r``, and the
    teacher's entropy. ``generator`` lives on ``logits``' device (None: the global one)."""
    logits = logits.float()
    if m < 1:
        raise ValueError(f'the number of samples must be >= 1, got {m}')
    log_p = F.log_softmax(logits / temperature, dim=-1)
    log_r = F.log_softmax(log_p * power, dim=-1)
    draws = torch.multinomial(log_r.exp(), m, replacement=True, generator=generator)  # [N, m]
    draws, _ = draws.sort(dim=-1)
    first = torch.ones_like(draws, dtype=torch.bool)
    first[:, 1:] = draws[:, 1:] != draws[:, :-1]
    counts = torch.zeros_like(logits).scatter_add_(-1, draws, torch.ones_like(draws, dtype=logits.dtype))
    ratio = (log_p - log_r).exp()  # p / r, 1 when the proposal is the teacher itself
    weights = (counts / m * ratio).gather(-1, draws) * first  # one weight per distinct class, 0 on repeats
    entropy = -(log_p.exp() * log_p).sum(-1)
    return SparseTargets('sampled', draws, weights, entropy, float(temperature))


def sparse_kl_loss(student_logits: torch.Tensor, targets: SparseTargets, temperature: float = 4.0,
                   mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``T^2`` times the mean over rows of the KL towards sparse ``targets`` (see the module docstring).

    ``student_logits`` ``[N, C]`` (or ``[N, L, C]`` with a ``mask`` that keeps as many rows as ``targets`` has).
    """
    if abs(float(temperature) - targets.temperature) > 1e-12:
        raise ValueError(f'these {targets.kind} targets were made at temperature {targets.temperature}, not '
                         f'{temperature}: the tail mass and the samples depend on it')
    s = student_logits
    if mask is not None:
        s = s[mask.to(device=s.device, dtype=torch.bool)]
    s = s.reshape(-1, s.shape[-1]).float()
    if s.shape[0] != len(targets):
        raise ValueError(f'{s.shape[0]} student rows for {len(targets)} rows of teacher targets')
    if s.shape[0] == 0:
        return student_logits.sum() * 0.0
    t = targets.to(s.device)
    log_q = F.log_softmax(s / temperature, dim=-1)
    if t.kind == 'sampled':
        per_row = -(t.values.float() * log_q.gather(-1, t.indices)).sum(-1) - t.tail.float()
    else:
        p = topk_probabilities(t)
        log_q_top = log_q.gather(-1, t.indices)
        # The student's log-mass outside the k classes; a finite floor (not -inf) keeps k = C free of NaN gradients.
        log_q_tail = torch.logsumexp(log_q.scatter(-1, t.indices, -1e30), dim=-1)
        tail = t.tail.float()
        per_row = torch.xlogy(p, p).sum(-1) - (p * log_q_top).sum(-1) + torch.xlogy(tail, tail) - tail * log_q_tail
    return per_row.mean() * temperature**2
