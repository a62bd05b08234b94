"""A cache of a teacher's outputs for exactly the views a student sees, and a teacher pool that reads it.

The folder's format (manifest, shards, storage kinds, row units, input digests) is :mod:`.cache_format`'s. A shard
is written under a temporary name and renamed into place (``os.replace``): a shard that exists is whole, and a
producer that stops resumes at the first missing one. Reads are memory-mapped (``numpy.memmap``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .cache_format import (FORMAT, MANIFEST, ROW_UNITS, STORES, ShardLayout, ShardWriter, batch_digest, batch_inputs,
                           bytes_per_example, bytes_per_row, encode_rows, encode_targets, input_digest, masked_counts,
                           masked_rows, shard_fields, shard_name, write_manifest)
from .model_io import ModelIO
from .sparse_targets import SparseTargets, topk_targets
from .teacher_pool import TeacherPool

__all__ = ['TeacherCache', 'CachedTeacher', 'CachedTeacherPool', 'TeacherCacheMismatch',
           # the format, re-exported (defined in .cache_format)
           'ShardWriter', 'STORES', 'ROW_UNITS', 'MANIFEST', 'FORMAT', 'bytes_per_example', 'bytes_per_row',
           'shard_fields', 'encode_rows', 'encode_targets', 'input_digest', 'batch_digest', 'batch_inputs',
           'masked_counts', 'masked_rows', 'write_manifest', 'shard_name']

log = logging.getLogger(__name__)


class TeacherCacheMismatch(RuntimeError):
    """The cache disagrees with the run: its rows do not fit the batch, or the live teacher (``verify_every``)."""


class TeacherCache:
    """A cache folder, opened for reading: its manifest and memory-mapped shards.

    ``wait_s``: read beside a producer still writing it: a missing shard of an epoch the manifest plans is waited for
    (up to ``wait_s`` seconds, polling), and the wait is logged and added to ``waited_s``.
    """

    def __init__(self, folder: Union[str, os.PathLike], wait_s: Optional[float] = None) -> None:
        self.folder = Path(folder)
        self.wait_s, self.waited_s = wait_s, 0.0
        file = self.folder / MANIFEST
        if not file.is_file():
            raise FileNotFoundError(f'{self.folder} is not a teacher cache: {MANIFEST} not found')
        try:
            manifest = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f'{file}: not a teacher cache manifest ({e})') from None
        if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
            raise ValueError(f'{file}: not a teacher cache manifest of format {FORMAT!r}')
        self.manifest = manifest
        try:
            self.store: str = manifest['store']
            self.k: Optional[int] = manifest.get('k')
            self.temperature = float(manifest['temperature'])
            self.num_classes = int(manifest['num_classes'])
            self.batch_size = int(manifest['batch_size'])
            self.rows_per_rank = int(manifest['rows_per_rank'])
            fields = manifest['fields']
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f'{file}: not a complete teacher cache manifest ({type(e).__name__}: {e})') from None
        self.rows: str = manifest.get('rows', 'examples')  # caches made before masked rows: one row per example
        if self.rows not in ROW_UNITS:
            raise ValueError(f'{file}: rows {self.rows!r} is not one of {", ".join(ROW_UNITS)}')
        if self.batch_size < 1 or self.rows_per_rank < 1:
            raise ValueError(f'{file}: batch_size and rows_per_rank must be positive')
        self.batches_per_epoch = -(-self.rows_per_rank // self.batch_size)
        try:
            expected = shard_fields(self.store, self.num_classes, self.k, self.rows)
        except ValueError as e:
            raise ValueError(f'{file}: {e}') from None
        if not isinstance(fields, list) or [list(f) for f in fields] != [list(f) for f in expected]:
            raise ValueError(f'{file}: fields {fields} do not fit store {self.store!r} with rows {self.rows!r}')
        self.fields = expected
        self._open: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    def __repr__(self) -> str:
        return f'TeacherCache({str(self.folder)!r}, store={self.store!r}, k={self.k})'

    def layout(self, epoch: int, rank: int = 0) -> Optional[ShardLayout]:
        """The layout of shard (epoch, rank) if it is present and whole, else None."""
        return ShardLayout.of_file(self.folder / shard_name(epoch, rank), self.fields, self.rows_per_rank, self.rows)

    def has_shard(self, epoch: int, rank: int = 0) -> bool:
        return self.layout(epoch, rank) is not None

    def epochs(self, rank: int = 0) -> list[int]:
        """The epochs whose shard for ``rank`` is present and whole."""
        found = []
        for path in self.folder.glob(f'epoch*-rank{rank}.bin'):
            match = re.fullmatch(rf'epoch(\d+)-rank{rank}\.bin', path.name)
            if match and self.has_shard(int(match.group(1)), rank):
                found.append(int(match.group(1)))
        return sorted(found)

    def arrays(self, epoch: int, rank: int = 0) -> dict[str, np.ndarray]:
        """The shard's fields as read-only memory maps ``[rows, width]`` (the last two epochs stay open)."""
        key = (epoch, rank)
        if key not in self._open:
            if not self.has_shard(epoch, rank) and self.wait_s and epoch in self.manifest.get('epochs', []):
                self._wait(epoch, rank)
            layout = self.layout(epoch, rank)
            if layout is None:
                raise TeacherCacheMismatch(f'{self.folder}: no shard for epoch {epoch}, rank {rank} '
                                           f'(epochs present: {self.epochs(rank)}); the run is longer than the cache')
            path = self.folder / shard_name(epoch, rank)
            self._open = {k: v for k, v in self._open.items() if k[0] >= epoch - 1}
            self._open[key] = {name: np.memmap(path, dtype=dtype, mode='r', offset=offset, shape=shape)
                               if math.prod(shape) else np.zeros(shape, dtype)
                               for name, (offset, dtype, shape) in layout.fields.items()}
        return self._open[key]

    def _wait(self, epoch: int, rank: int) -> None:
        started = time.monotonic()
        while not self.has_shard(epoch, rank) and time.monotonic() - started < float(self.wait_s or 0):
            time.sleep(0.1)
        waited = time.monotonic() - started
        self.waited_s += waited
        log.info('waited %.1f s for the shard of epoch %d (rank %d) of %s%s', waited, epoch, rank, self.folder,
                 '' if self.has_shard(epoch, rank) else ': not there yet, giving up')

    def read(self, epoch: int, rank: int, start: int, stop: int,
             device: Union[str, torch.device] = 'cpu') -> tuple[Union[torch.Tensor, SparseTargets], torch.Tensor]:
        """The targets of examples ``[start, stop)`` of shard (epoch, rank) (float32 logits ``[n, C]`` for
        ``dense``, :class:`SparseTargets` otherwise; with ``masked`` rows, one row per masked position of those
        examples) and the examples' input digests ``[stop - start]``, on ``device``."""
        fields = self.arrays(epoch, rank)
        first, last = start, stop
        if self.rows == 'masked':
            first, last = int(fields['offsets'][start, 0]), int(fields['offsets'][stop, 0])

        def get(name: str, lo: int, hi: int) -> torch.Tensor:
            return torch.from_numpy(np.array(fields[name][lo:hi])).to(device)

        digest = get('digest', start, stop).reshape(-1)
        if self.store == 'dense':
            return get('logits', first, last).float(), digest
        return SparseTargets(self.store, get('indices', first, last).long(), get('values', first, last).float(),
                             get('tail', first, last).reshape(-1), self.temperature), digest


class CachedTeacher(nn.Module):
    """A cache in a teacher's place in a :class:`TeacherPool` (which holds modules); it is read, never called."""

    def __init__(self, cache: TeacherCache, live: Optional[TeacherPool] = None) -> None:
        super().__init__()
        self.cache = cache
        self.live = live  # the teachers that made it (all of them, averaged), for verify_every; not a submodule

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f'{self.cache!r} is read by CachedTeacherPool.forward, not called')

    def extra_repr(self) -> str:
        return repr(self.cache)


class CachedTeacherPool(TeacherPool):
    """A :class:`TeacherPool` whose teachers are caches: ``forward(batch, indices, step)`` reads the rows of the
    current batch instead of running a model, so ``DistillationTerm``/``KnowledgeDistillation`` use it unchanged.

    Optimizer step ``step`` (Composer's ``state.timestamp.batch``, which a resumed run restores) is batch
    ``step % batches_per_epoch`` of epoch ``step // batches_per_epoch``; the microbatches of a step take its rows
    in order. Each batch's inputs are checked against the cached digests. A ``masked`` cache (a masked LM) gives
    the rows of the batch's masked positions, as the sparse MLM head and KD's mask take them. The selection rule
    (``pool_mode``, ``k``, ``scores``, ``seed``) is the pool's: ``random_1`` draws a cache per step. Dense caches
    selected together are averaged; sparse ones are read one per step.

    Args:
        caches: the caches (same batch size, rows and epochs' length).
        rank: this process's rank (which shard to read).
        verify_every: every N-th step, run the live teachers of the selected cache (``CachedTeacher.live``) and
            raise :class:`TeacherCacheMismatch` if the cache disagrees beyond its storage precision.
    """

    def __init__(self, caches: Sequence[Union[TeacherCache, CachedTeacher]], mode: str = 'all',
                 k: Optional[int] = None, scores: Optional[Sequence[float]] = None, seed: int = 0, rank: int = 0,
                 verify_every: Optional[int] = None) -> None:
        teachers = [c if isinstance(c, CachedTeacher) else CachedTeacher(c) for c in caches]
        super().__init__(teachers, mode=mode, k=k, scores=scores, seed=seed)
        first = teachers[0].cache
        for t in teachers[1:]:
            if (t.cache.batch_size, t.cache.rows_per_rank) != (first.batch_size, first.rows_per_rank):
                raise ValueError(f'{t.cache!r} and {first!r} cut epochs into different batches')
            if t.cache.rows != first.rows:
                raise ValueError(f'{t.cache!r} stores {t.cache.rows} rows, {first!r} {first.rows} rows')
        if self.k > 1 and any(t.cache.store != 'dense' for t in teachers):
            raise ValueError('sparse caches cannot be averaged: read them one per step (pool_mode random_1)')
        if verify_every is not None and (verify_every < 1 or any(t.live is None for t in teachers)):
            raise ValueError('verify_every needs an integer >= 1 and the live teachers of every cache')
        self.rank, self.verify_every = int(rank), verify_every
        self.batches_per_epoch, self.batch_size = first.batches_per_epoch, first.batch_size
        self.reads = 0  # batches read from a cache
        self.verified = 0  # batches checked against the live teachers
        self._position: Optional[tuple[int, int]] = None  # (step, next row offset) for the step's microbatches
        self._cached_batch: Any = None

    def __repr__(self) -> str:
        return (f'CachedTeacherPool(caches={[str(t.cache.folder) for t in self.teachers]}, mode={self.mode!r}, '
                f'k={self.k}, seed={self.seed})')

    @property
    def caches(self) -> list[TeacherCache]:
        return [t.cache for t in self.teachers]

    def request_features(self, names: Sequence[str]) -> None:
        if list(names):
            raise ValueError(f'a teacher cache holds logits only, not features {list(names)}')

    def forwards_for(self, indices: Sequence[int]) -> int:
        """No teacher runs: the selected caches are read (``verify_every``'s check runs the live teachers, counted
        apart in :attr:`verified`)."""
        return 0

    def reads_for(self, indices: Sequence[int]) -> int:
        """One cache read per selected cache."""
        return len(indices)

    def rows(self, step: int, n: int) -> tuple[int, int, int]:
        """``(epoch, start row, stop row)`` of the next ``n`` rows of optimizer step ``step``."""
        offset = self._position[1] if self._position is not None and self._position[0] == step else 0
        epoch, batch = divmod(int(step), self.batches_per_epoch)
        start = batch * self.batch_size + offset
        end_of_batch = min((batch + 1) * self.batch_size, self.teachers[0].cache.rows_per_rank)
        if start + n > end_of_batch:
            raise TeacherCacheMismatch(f'{self.teachers[0].cache.folder}: a batch of {n} rows at offset {offset} '
                                       f'does not fit batch {batch} of epoch {epoch} '
                                       f'({end_of_batch - batch * self.batch_size} rows)')
        self._position = (step, offset + n)
        return epoch, start, start + n

    def forward(self, batch: Any, indices: Optional[Sequence[int]] = None, step: Optional[int] = None) -> ModelIO:
        if step is None:
            raise ValueError('a cached pool reads the rows of an optimizer step: pass step')
        if indices is None:
            indices = self.selection(step)
        indices = tuple(int(i) for i in indices)
        key = (step, id(batch), indices)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        inputs = batch_inputs(batch)
        epoch, start, stop = self.rows(step, len(inputs))
        digest, tolerance = batch_digest(batch)
        outputs = []
        for i in indices:
            teacher = self.teachers[i]
            targets, cached_digest = teacher.cache.read(epoch, self.rank, start, stop, device=inputs.device)
            bad = (digest - cached_digest).abs() > tolerance
            if bool(bad.any()):
                raise TeacherCacheMismatch(
                    f'{teacher.cache.folder}: the inputs of epoch {epoch}, batch {start // self.batch_size} (row '
                    f'{start + int(bad.nonzero()[0])}) are not those the cache was made for: another data order, '
                    'crop, flip, mask or dataset; the fingerprint check should have refused it, or the cache was '
                    'altered')
            if teacher.cache.rows == 'masked' and len(targets) != int(masked_counts(batch).sum()):
                raise TeacherCacheMismatch(
                    f'{teacher.cache.folder}: epoch {epoch}, examples {start}-{stop - 1} hold {len(targets)} masked '
                    f'positions in the cache, {int(masked_counts(batch).sum())} in the batch')
            if self.verify_every is not None and step % self.verify_every == 0:
                self._verify(teacher, batch, targets, f'epoch {epoch}, rows {start}-{stop - 1}')
            outputs.append(targets)
            self.reads += 1
        if isinstance(outputs[0], SparseTargets):
            result: Any = outputs[0]
        else:
            result = outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(0)
        io = ModelIO(outputs=result)
        self._cache, self._cached_batch = (key, io), batch  # holding the batch: its id() is not reused meanwhile
        return io

    def _verify(self, teacher: CachedTeacher, batch: Any, targets: Any, where: str) -> None:
        assert teacher.live is not None
        cache = teacher.cache
        live = teacher.live.forward(batch).outputs.float()
        if cache.rows == 'masked':
            live = masked_rows(live, batch)
        # fp16 storage rounds to 2^-11 of a value; a bf16 producer computed to about 2^-8 of the row's largest logit.
        eps = 2.0**-9 if cache.manifest.get('compute', 'fp32') == 'fp32' else 2.0**-6
        scale = live.abs().amax(-1, keepdim=True).clamp_min(1.0)
        if isinstance(targets, torch.Tensor):
            diff = ((targets - live).abs() / scale).amax()
            ok = bool(diff <= eps)
        elif targets.kind == 'topk':
            diff = ((targets.values - live.gather(-1, targets.indices)).abs() / scale).amax()
            live_tail = topk_targets(live, cache.k, cache.temperature).tail
            diff = torch.maximum(diff, (targets.tail - live_tail).abs().amax())
            ok = bool(diff <= eps)
        else:  # sampled: the teacher's entropy at T, which every row stores
            log_p = torch.log_softmax(live / cache.temperature, dim=-1)
            entropy = -(log_p.exp() * log_p).sum(-1)
            diff = ((targets.tail - entropy).abs() / (1 + entropy)).amax()
            ok = bool(diff <= eps)
        self.verified += 1
        if not ok:
            raise TeacherCacheMismatch(f'{cache.folder}: the cache disagrees with the live teacher at {where}: '
                                       f'largest relative difference {float(diff):.3g} > {eps:.3g} (storage '
                                       f'{cache.store}, compute {cache.manifest.get("compute", "fp32")}); the '
                                       'cache is corrupt or was made by another teacher')

    def prepare(self, device: Any, channels_last: bool = False) -> None:
        """Move the live teachers (``verify_every``) to the training device."""
        for teacher in self.teachers:
            if teacher.live is not None:
                teacher.live.prepare(device, channels_last=channels_last)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._position = None
