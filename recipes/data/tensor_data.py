"""Small image datasets held in memory as one tensor and served in whole batches (``in_memory: true``, the default for
Fashion-MNIST and CIFAR).

The images are read once into a ``uint8`` tensor ``(N, C, H, W)`` on the training device; each batch is gathered,
augmented as a whole (random crop after zero padding, random horizontal flip), normalised and laid out
``channels_last`` there, with no worker processes: on a 2-core CPU the per-image torchvision path spent half of the
machine around the compute (see ``benchmarks/measurements/loader_throughput.py``). ImageNet keeps the per-image path.

Randomness: :class:`EpochBatches` draws an epoch's order and every image's crop offset and flip from its own
generator seeded by ``(seed, epoch)``; Composer calls ``set_epoch`` on it (it is a ``DistributedSampler``) before each
epoch and when it resumes, so an epoch's batches are the same whatever ran before it: evaluating more or less often,
or stopping and resuming, does not change training. No global random state is read.

Padding is with zeros before normalisation (black, as torchvision's ``RandomCrop(padding=p)``).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = ['InMemoryImages', 'EpochBatches', 'BatchLoader', 'epoch_generator', 'crop_batch']


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded by ``(seed, epoch)`` through NumPy's ``SeedSequence`` (independent streams per epoch);
    the draws are moved to the data's device with the batch."""
    state = int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return torch.Generator().manual_seed(state)


def crop_batch(x: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) cropped at offsets ``(dy, dx)`` (in ``[0, 2 * pad]``) of its padding by
    ``pad`` pixels of ``fill``: one gather for the whole batch."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, [pad] * 4, value=fill)
    rows = (dy.view(n, 1, 1) + torch.arange(h, device=x.device).view(1, h, 1))
    cols = (dx.view(n, 1, 1) + torch.arange(w, device=x.device).view(1, 1, w))
    return padded[torch.arange(n, device=x.device).view(n, 1, 1), :, rows, cols].permute(0, 3, 1, 2)


class InMemoryImages(Dataset):
    """``uint8`` images ``x`` (N, C, H, W) and labels ``y`` (N,), indexed by a whole batch at once.

    ``self[(indices, dy, dx, flip)]`` returns the normalised float batch (``channels_last``) and its labels, cropped
    at offsets ``dy, dx`` from a zero padding of ``pad`` pixels and flipped where ``flip``; ``dy``/``dx``/``flip``
    may be None (no augmentation). With ``with_index`` the batch also carries ``indices`` (CRD's memory banks).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: Sequence[float], std: Sequence[float], pad: int = 0,
                 with_index: bool = False, device: torch.device | str = 'cpu') -> None:
        if x.dtype != torch.uint8 or x.dim() != 4 or len(x) != len(y):
            raise ValueError(f'expected uint8 images (N, C, H, W) and N labels, got {tuple(x.shape)} {x.dtype} '
                             f'and {tuple(y.shape)}')
        self.x, self.y = x.to(device), y.to(device=device, dtype=torch.long)
        c = x.shape[1]
        self.scale = (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))).view(1, c, 1, 1).to(device)
        self.shift = (torch.tensor(mean, dtype=torch.float32) / torch.tensor(std)).view(1, c, 1, 1).to(device)
        self.pad, self.with_index = pad, with_index
        self.targets = self.y.cpu().numpy()  # what down-sampling and per-class reports read

    def __len__(self) -> int:
        return len(self.y)

    def crop(self, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        return crop_batch(x, self.pad, dy, dx)

    def __getitem__(self, key: tuple[torch.Tensor, Any, Any, Any]) -> tuple[torch.Tensor, ...]:
        indices, dy, dx, flip = (k.to(self.x.device) if isinstance(k, torch.Tensor) else k for k in key)
        x = self.x[indices]
        if dy is not None and self.pad:
            x = self.crop(x, dy, dx)
        if flip is not None:
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        x = torch.addcmul(-self.shift, x.float(), self.scale).contiguous(memory_format=torch.channels_last)
        y = self.y[indices]
        return (x, y, indices) if self.with_index else (x, y)


class EpochBatches(DistributedSampler):
    """Keys of :class:`InMemoryImages` batches for one rank: ``(indices, dy, dx, flip)``.

    The order (a permutation drawn from ``epoch_generator(seed, epoch)`` with ``shuffle``, else the examples' order)
    is cut into global batches of ``batch_size * world``, and rank ``r`` takes every ``world``-th example of each;
    ``drop_last`` drops the incomplete last global batch. Without it, the order is padded as ``DistributedSampler``
    pads (the first examples repeated up to a multiple of ``world``, so every rank runs as many batches), and the
    padding lands last on the last ranks, where Composer's evaluation drops it (``total_size - len(dataset)``). With ``augment`` the same generator draws each image's
    crop offsets in ``[0, 2 * pad]`` and flip. A ``DistributedSampler`` only so that Composer calls
    :meth:`set_epoch`; it needs no process group.
    """

    def __init__(self, dataset: InMemoryImages, batch_size: int, *, shuffle: bool, augment: bool, drop_last: bool,
                 seed: int = 0, world: int = 1, rank: int = 0, flip: bool = True) -> None:
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.n, self.batch_size, self.augment, self.flip = len(dataset), batch_size, augment, flip
        self.pad = dataset.pad
        if self.n == 0:  # an epoch without a batch: a run would step through empty epochs forever
            raise ValueError('no example to serve (0 examples)')
        if drop_last and self.n < batch_size * world:  # no whole global batch
            raise ValueError(f'{self.n} examples make no batch of {batch_size} per rank x {world} ranks with '
                             'drop_last: lower the batch size or set drop_last: false')

    def _indices(self, g: torch.Generator | None) -> torch.Tensor:
        order = torch.randperm(self.n, generator=g) if g is not None else torch.arange(self.n)
        step = self.batch_size * self.num_replicas
        if self.drop_last:
            order = order[:self.n // step * step]
        elif self.num_replicas > 1:  # as DistributedSampler: repeat the first examples up to a multiple of world
            padding = (self.num_replicas - self.n % self.num_replicas) % self.num_replicas
            order = torch.cat([order, order[:padding]])
        if self.num_replicas == 1:
            return order
        return torch.cat([order[i:i + step][self.rank::self.num_replicas] for i in range(0, len(order), step)])

    def __len__(self) -> int:
        return -(-len(self._indices(None)) // self.batch_size)  # drop_last: already a multiple of batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, Any, Any, Any]]:  # type: ignore[override]
        g = epoch_generator(self.seed, self.epoch) if (self.shuffle or self.augment) else None
        order = self._indices(g if self.shuffle else None)  # no shuffle: augmentation draws only
        dy = dx = flip = None
        if self.augment:
            n = len(order)
            dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=g)
            dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=g)
            flip = torch.rand(n, generator=g) < 0.5 if self.flip else None
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            part = slice(i, i + self.batch_size)
            yield (idx, None if dy is None else dy[part], None if dx is None else dx[part],
                   None if flip is None else flip[part])


def _as_is(batch: Any) -> Any:
    return batch


class BatchLoader(DataLoader):
    """A ``DataLoader`` over whole batches (:class:`EpochBatches` keys, no worker processes) that still reports its
    per-rank ``batch_size``: Composer reads it to size microbatches. Torch is given ``batch_size=None`` (the sampler
    batches), and iteration never reads the attribute."""

    def __init__(self, dataset: InMemoryImages, sampler: EpochBatches, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=None, sampler=sampler, num_workers=0, collate_fn=_as_is, **kwargs)
        object.__setattr__(self, 'batch_size', sampler.batch_size)  # DataLoader refuses it after __init__
