"""CRD (Tian et al., "Contrastive Representation Distillation", ICLR 2020) as a distillation term, as RepDistiller.

The student's and the teacher's penultimate features are embedded (``Linear(dim -> 128)`` + L2 norm) and contrasted
against memory banks of past embeddings, one per network, ``N x 128`` for a training set of ``N`` samples: for each
sample the positive is its own bank entry, the ``K`` negatives are bank entries drawn at random. The loss is NCE with
the uniform noise distribution ``P_n = 1/N`` (:func:`~.losses.contrast_loss`), both ways (student embedding against
the teacher bank, teacher embedding against the student bank); after it the banks take the batch's embeddings with
momentum. So CRD needs each training sample's index in the dataset: the train loader yields ``(x, y, index)`` and
this term strips the index before anything else sees the batch (the model, its loss, the teachers, other terms and
Composer's train metrics all get ``(x, y)``).

Everything that is state is checkpointed: the embeddings and the banks (and the normalisation constant ``Z``) are a
head registered on the student (:meth:`CRD.heads`), so they are in the model's state dict and the embeddings in the
optimizer; the negatives come from a generator of this term whose state is in :meth:`CRD.state_dict`, so a resumed
run draws the same negatives.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from composer.core import Event, State, Time
from composer.loggers import Logger

from ..distillation import DistillationTerm, ModelIO, TeacherPool
from .crd_memory import ContrastMemory, Embed
from .losses import contrast_loss

log = logging.getLogger(__name__)

__all__ = ['CRD', 'Embed', 'ContrastMemory', 'split_index']

MISSING_INDEX = ('CRD: the training batch has no sample indices; the train loader must yield (x, y, index) '
                 '(set `indices: true` on the train dataset in the YAML)')


def split_index(batch: Any) -> tuple[Any, torch.Tensor]:
    """``(x, y, index) -> ((x, y), index)``; a mapping batch loses its ``'index'`` key (in a copy)."""
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return type(batch)(batch[:2]), batch[2]
    if isinstance(batch, Mapping) and 'index' in batch:
        return {k: v for k, v in batch.items() if k != 'index'}, batch['index']
    raise ValueError(MISSING_INDEX)


def _num_samples(batch: Any) -> int:
    first = next(iter(batch.values())) if isinstance(batch, Mapping) else batch[0]
    return int(first.shape[0])


class _CRDHeads(nn.Module):
    def __init__(self, student_dim: int, teacher_dim: int, feat_dim: int, num_data: int, nce_t: float,
                 nce_m: float):
        super().__init__()
        self.embed_s, self.embed_t = Embed(student_dim, feat_dim), Embed(teacher_dim, feat_dim)
        self.memory = ContrastMemory(feat_dim, num_data, nce_t, nce_m)


class CRD(DistillationTerm):
    """Add ``weight * (L_nce(student -> teacher bank) + L_nce(teacher -> student bank))``, keyed ``'crd'``.

    Args:
        teachers: a teacher, teachers or a shared :class:`TeacherPool` (features averaged over a pool's picks).
        student_feature, teacher_feature: module paths of the penultimate features (``'avgpool'`` for the project's
            CIFAR ResNets; the output is flattened).
        student_dim, teacher_dim: their flattened sizes.
        num_data: ``N``, the training set's size (the banks' rows; indices lie in ``[0, N)``).
        feat_dim: the embedding size (128). nce_k: negatives per sample (16384, capped at ``N - 1``).
        nce_t: the temperature (0.07). nce_m: the banks' momentum (0.5). weight: ``beta`` (0.8).
        labels: optional ``[N]`` class of each sample: negatives are then drawn among the samples of other classes
            (RepDistiller's CIFAR loader, ``mode='exact'``); by default uniformly over ``[0, N)`` (its memory's own
            sampler). sampler_seed: seed of the negatives' generator.
        Other arguments as :class:`DistillationTerm`.
    """

    #: The train loader must yield ``(x, y, index)`` (recipes check ``train_loader.indices: true`` by this flag).
    needs_sample_indices: bool = True

    def __init__(self,
                 teachers: Union[nn.Module, Sequence[nn.Module], TeacherPool],
                 student_dim: int,
                 teacher_dim: int,
                 num_data: int,
                 student_feature: str = 'avgpool',
                 teacher_feature: Optional[str] = None,
                 feat_dim: int = 128,
                 nce_k: int = 16384,
                 nce_t: float = 0.07,
                 nce_m: float = 0.5,
                 weight: float = 0.8,
                 key: str = 'crd',
                 labels: Optional[Union[torch.Tensor, Sequence[int]]] = None,
                 sampler_seed: int = 0,
                 start: Union[str, Time] = '0dur',
                 end: Union[str, Time] = '1dur',
                 pool_mode: str = 'all',
                 k: Optional[int] = None,
                 seed: int = 0):
        for name, value, low in (('num_data', num_data, 2), ('nce_k', nce_k, 1), ('feat_dim', feat_dim, 1),
                                 ('student_dim', student_dim, 1), ('teacher_dim', teacher_dim, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f'CRD {name} must be an integer >= {low}, got {value!r}')
        if not isinstance(nce_t, (int, float)) or not math.isfinite(nce_t) or nce_t <= 0:
            raise ValueError(f'CRD nce_t must be a finite number > 0, got {nce_t!r}')
        if not isinstance(nce_m, (int, float)) or not 0 <= nce_m < 1:
            raise ValueError(f'CRD nce_m must be a number in [0, 1), got {nce_m!r}')
        teacher_feature = teacher_feature or student_feature
        super().__init__(teachers, weight=weight, key=key, start=start, end=end, student_features=[student_feature],
                         teacher_features=[teacher_feature], pool_mode=pool_mode, k=k, seed=seed)
        self.student_feature, self.teacher_feature = student_feature, teacher_feature
        self.num_data, self.nce_k = num_data, min(nce_k, num_data - 1)
        self.nce_t, self.nce_m, self.sampler_seed = float(nce_t), float(nce_m), sampler_seed
        self._heads = _CRDHeads(student_dim, teacher_dim, feat_dim, num_data, self.nce_t, self.nce_m)
        self.generator = torch.Generator().manual_seed(sampler_seed)  # moved to the banks' device on first use
        self._pending_sampler: Optional[torch.Tensor] = None  # a checkpoint's sampler state, for that generator
        self.labels = None if labels is None else self._class_groups(torch.as_tensor(labels).long())
        self._index: Optional[torch.Tensor] = None  # the current batch's indices (stripped at AFTER_DATALOADER)
        self._cursor = 0  # where the current microbatch's indices start in it
        self._batch_index: Optional[torch.Tensor] = None  # the current microbatch's indices

    def _class_groups(self, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if labels.shape != (self.num_data,):
            raise ValueError(f'CRD labels must have one class per sample, shape ({self.num_data},), '
                             f'got {tuple(labels.shape)}')
        counts = torch.bincount(labels)
        if int(counts.max()) == self.num_data:
            raise ValueError('CRD labels: every sample has the same class, so there are no negatives to draw')
        return labels, torch.argsort(labels, stable=True), counts, torch.cumsum(counts, 0) - counts

    def heads(self) -> nn.Module:
        return self._heads

    def _generator(self, device: torch.device) -> torch.Generator:
        """The negatives' generator, on ``device`` (the banks'): drawing 16,384 negatives per sample on the CPU and
        copying them over cost a third of a KD step on an H100 (benchmarks/results/crd_step_overhead_h100.md)."""
        if self.generator.device.type != device.type:
            self.generator = torch.Generator(device=device).manual_seed(self.sampler_seed)
        if self._pending_sampler is not None:
            try:
                self.generator.set_state(self._pending_sampler.cpu())
            except RuntimeError:  # a CUDA generator's state does not fit a CPU one (or back): draw afresh
                log.warning('CRD: the checkpoint\'s negative sampler ran on another device type; reseeding it')
            self._pending_sampler = None
        return self.generator

    def sample(self, idx: torch.Tensor) -> torch.Tensor:
        """``[B, K+1]`` bank rows on ``idx``'s device: ``idx`` (the positives) in column 0, then ``K`` negatives
        drawn with replacement from this term's generator (RepDistiller's layout)."""
        b, k, device = idx.shape[0], self.nce_k, idx.device
        generator = self._generator(device)
        if self.labels is None:  # AliasMethod with uniform weights is uniform sampling
            neg = torch.randint(0, self.num_data, (b, k), generator=generator, device=device)
        else:  # uniform over the other classes' samples: skip the anchor class's block in class-sorted order
            if self.labels[0].device != device:
                self.labels = tuple(t.to(device) for t in self.labels)
            labels, order, counts, starts = self.labels
            c = labels[idx].unsqueeze(1)
            r = torch.rand((b, k), generator=generator, dtype=torch.float64, device=device) * (self.num_data - counts[c])
            r = r.long()
            neg = order[r + (r >= starts[c]).long() * counts[c]]
        return torch.cat([idx.long().unsqueeze(1), neg], dim=1)

    # --- the sample indices: stripped from the whole batch before Composer splits it into microbatches -----------
    def match(self, event: Event, state: State) -> bool:
        return super().match(event, state) or event in (Event.AFTER_DATALOADER, Event.BEFORE_TRAIN_BATCH)

    def apply(self, event: Event, state: State, logger: Logger) -> Optional[int]:
        if event == Event.AFTER_DATALOADER:
            state.batch, self._index = split_index(state.batch)
        elif event == Event.BEFORE_TRAIN_BATCH:
            self._cursor = 0  # again if Composer retries the batch with smaller microbatches
        elif event == Event.BEFORE_FORWARD:
            self._take_microbatch_index(state)
        return super().apply(event, state, logger)

    def _take_microbatch_index(self, state: State) -> None:
        if isinstance(state.batch, (tuple, list)) and len(state.batch) == 3 or \
                isinstance(state.batch, Mapping) and 'index' in state.batch:  # a loop without AFTER_DATALOADER
            state.batch, self._batch_index = split_index(state.batch)
            return
        if self._index is None:
            raise ValueError(MISSING_INDEX)
        n = _num_samples(state.batch)
        if self._cursor + n > len(self._index):
            raise RuntimeError(f'CRD: microbatches hold more samples than the batch had indices ({len(self._index)})')
        self._batch_index = self._index[self._cursor:self._cursor + n]
        self._cursor += n

    def compute(self, student: ModelIO, teacher: ModelIO, batch: Any) -> torch.Tensor:
        heads = self._heads
        v_s = heads.embed_s(student.feature(self.student_feature))
        v_t = heads.embed_t(teacher.feature(self.teacher_feature))
        idx = self._batch_index.to(v_s.device).long()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_data):
            raise ValueError(f'CRD: a sample index lies outside [0, num_data={self.num_data})')
        out_s, out_t = heads.memory(v_s, v_t, idx, self.sample(idx))
        return contrast_loss(out_s, self.num_data) + contrast_loss(out_t, self.num_data)

    # --- checkpointing: the banks are in the model; the negatives' generator is here ------------------------------
    def state_dict(self) -> dict[str, Any]:
        sampler = self._pending_sampler if self._pending_sampler is not None else self.generator.get_state()
        return {**super().state_dict(), 'sampler': sampler}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if 'sampler' in state:  # applied to the generator on the banks' device at the next draw
            self._pending_sampler = state['sampler']

    def __repr__(self) -> str:
        return (f'CRD({self.student_feature!r} -> {self.teacher_feature!r}, num_data={self.num_data}, '
                f'nce_k={self.nce_k}, nce_t={self.nce_t}, nce_m={self.nce_m}, weight={self.weight}, '
                f'negatives={"other_class" if self.labels is not None else "uniform"}, start={str(self.start)!r}, '
                f'end={str(self.end)!r}, pool={self.pool!r})')
