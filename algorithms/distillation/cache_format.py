"""The on-disk format of a teacher cache: its manifest, the fields of a shard, their layout, and the input digests.

A cache folder (JSON and raw arrays only: nothing in it is unpickled, so a folder a user hands over cannot run code)::

    manifest.json             what made it (fingerprint), the storage kind, k, T, the row unit, the fields, the epochs
    epoch0003-rank0.bin       one shard per (epoch, rank): that rank's examples in the order they are drawn

A shard holds one row of teacher targets per **row unit** (the manifest's ``rows``):

* ``examples`` (an image classifier: one output per example): the target fields then the input digest, each
  ``[examples, width]``, one after another; (epoch, batch) is a contiguous row range.
* ``masked`` (a masked LM: one output per masked position, ``labels != -100``, in row-major order, as the sparse
  MLM head and KD's mask take them): a header ``offsets`` (int64 ``[examples + 1]``: example ``i``'s rows are
  ``offsets[i]:offsets[i + 1]``) and ``digest`` (float32 ``[examples]``), then the target fields ``[rows, width]``.
  The number of rows varies with the masks, and is read from the header.

Target fields by storage kind (:func:`shard_fields`; bytes: :func:`bytes_per_row`):

* ``dense``: every logit in fp16 (``2 C`` bytes);
* ``topk``: the ``k`` largest logits (fp16) at their class indices (int16, int32 past 32,767 classes) and the
  teacher's probability outside them at ``T`` (float32);
* ``sampled``: Random-Sampling KD's ``k`` draws: distinct class indices, fp16 importance weights and the teacher's
  entropy at ``T`` (see :mod:`.sparse_targets`).

Every example carries a float32 digest of its input (:func:`batch_digest`): for float inputs (images) a fixed
weighted sum, sensitive to the order, crop and flip, compared within a tolerance that a replay on another device keeps
to; for integer inputs (token ids, with a masked LM's labels, so the masks count) an exact hash modulo a prime below
``2^24`` (exact in float32), compared for equality. The reader checks each batch against it, so a cache that does not
fit the batches fails at once instead of teaching the wrong rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from .losses import IGNORE_INDEX
from .sparse_targets import sampled_targets, topk_targets

__all__ = ['FORMAT', 'MANIFEST', 'STORES', 'ROW_UNITS', 'shard_fields', 'bytes_per_row', 'bytes_per_example',
           'shard_name', 'batch_inputs', 'masked_rows', 'masked_counts', 'input_digest', 'batch_digest',
           'encode_targets', 'encode_rows', 'write_manifest', 'ShardLayout', 'ShardWriter']

FORMAT = 'teacher-cache/1'
MANIFEST = 'manifest.json'
STORES = ('dense', 'topk', 'sampled')
ROW_UNITS = ('examples', 'masked')
_PRIME = 16_777_213  # the largest prime below 2^24: every residue is exact in float32


def _index_dtype(num_classes: int) -> str:
    return 'int16' if num_classes <= np.iinfo(np.int16).max else 'int32'


def shard_fields(store: str, num_classes: int, k: Optional[int] = None,
                 rows: str = 'examples') -> list[tuple[str, str, int]]:
    """``(name, numpy dtype, values per row)`` of a shard's row fields, in file order (the ``examples`` unit ends
    with the digest; the ``masked`` unit keeps it in the header)."""
    if store not in STORES:
        raise ValueError(f'unknown store {store!r}; expected one of {", ".join(STORES)}')
    if rows not in ROW_UNITS:
        raise ValueError(f'unknown row unit {rows!r}; expected one of {", ".join(ROW_UNITS)}')
    if store == 'dense':
        fields = [('logits', 'float16', num_classes)]
    else:
        if store == 'topk' and (k is None or not 1 <= k <= num_classes):
            raise ValueError(f'store {store!r} needs k between 1 and the number of classes ({num_classes}), got {k}')
        if store == 'sampled' and (k is None or k < 1):  # draws with replacement: k may exceed the classes
            raise ValueError(f'store {store!r} needs k >= 1 samples per row, got {k}')
        fields = [('indices', _index_dtype(num_classes), k), ('values', 'float16', k), ('tail', 'float32', 1)]
    return fields + [('digest', 'float32', 1)] if rows == 'examples' else fields


def bytes_per_row(store: str, num_classes: int, k: Optional[int] = None, rows: str = 'examples') -> int:
    """Bytes of one row of targets (with the ``examples`` unit, the input digest's 4 included)."""
    return sum(np.dtype(dtype).itemsize * width for _, dtype, width in shard_fields(store, num_classes, k, rows))


def bytes_per_example(store: str, num_classes: int, k: Optional[int] = None, rows: str = 'examples',
                      rows_per_example: float = 1.0) -> float:
    """Bytes a cache stores per example per epoch: one row per example, or (``masked``) ``rows_per_example`` rows
    plus the header's 12 bytes (offset and digest)."""
    if rows == 'examples':
        return bytes_per_row(store, num_classes, k)
    return 12 + rows_per_example * bytes_per_row(store, num_classes, k, rows)


def shard_name(epoch: int, rank: int) -> str:
    return f'epoch{epoch:04d}-rank{rank}.bin'


def batch_inputs(batch: Any) -> torch.Tensor:
    """The model input of a batch: the tensor itself, ``batch[0]`` of a tuple, ``input_ids`` (or the first tensor)
    of a mapping."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, Mapping):
        if isinstance(batch.get('input_ids'), torch.Tensor):
            return batch['input_ids']
        for value in batch.values():
            if isinstance(value, torch.Tensor):
                return value
    raise TypeError(f'cannot find the inputs of a batch of type {type(batch).__name__}')


def _labels(batch: Any, inputs: torch.Tensor) -> Optional[torch.Tensor]:
    """A masked LM's labels: a mapping's ``labels`` of the inputs' shape ``[N, L]``, or None."""
    if isinstance(batch, Mapping) and inputs.dim() == 2:
        labels = batch.get('labels')
        if isinstance(labels, torch.Tensor) and labels.shape == inputs.shape:
            return labels
    return None


def masked_rows(logits: torch.Tensor, batch: Any) -> torch.Tensor:
    """A masked LM's outputs as the ``masked`` unit's rows ``[M, C]``: ``[N, L, C]`` logits (a head on every
    position) at the positions whose label is not -100, in row-major order; ``[M, C]`` logits (a head on the masked
    positions only) as they are."""
    if logits.dim() == 3:
        labels = _labels(batch, batch_inputs(batch))
        if labels is None or labels.shape != logits.shape[:2]:
            raise ValueError(f'[N, L, C] logits {tuple(logits.shape)} need a batch with labels [N, L]')
        return logits[labels != IGNORE_INDEX]
    return logits


def masked_counts(batch: Any) -> torch.Tensor:
    """Per example of a masked LM's batch, its number of masked positions (``labels != -100``), int64 ``[N]``."""
    labels = _labels(batch, batch_inputs(batch))
    if labels is None:
        raise ValueError('a masked-position cache needs batches {input_ids, labels} with labels of the inputs\' shape')
    return (labels != IGNORE_INDEX).sum(1).long()


_DIGEST_WEIGHTS: dict[tuple[int, str, bool], torch.Tensor] = {}


def _digest_weights(size: int, device: torch.device, integer: bool) -> torch.Tensor:
    key = (size, str(device), integer)
    if key not in _DIGEST_WEIGHTS:  # fixed, position-dependent (a mirror image or a shifted crop sums differently)
        positions = torch.arange(size, dtype=torch.float64)
        golden = (positions * 0.6180339887498949) % 1.0
        weights = (golden * (_PRIME - 2)).long() + 1 if integer else (golden + 0.5).float()
        _DIGEST_WEIGHTS[key] = weights.to(device)
    return _DIGEST_WEIGHTS[key]


def input_digest(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``inputs`` ``[N, ...]``: a float32 digest and the tolerance a replay keeps to. Float inputs: a
    weighted sum of the values, tolerance ``1e-4`` of the weighted sum of absolute values. Integer inputs: a hash
    ``sum_i (x_i mod p) w_i mod p`` (``p`` a prime below ``2^24``, weights in ``[1, p)``), exact: tolerance 0;
    one changed value always changes it."""
    flat = inputs.detach().reshape(len(inputs), -1)
    if not (flat.dtype.is_floating_point or flat.dtype.is_complex):
        w = _digest_weights(flat.shape[1], flat.device, integer=True)
        digest = ((flat.long().remainder(_PRIME) * w).remainder(_PRIME).sum(1)).remainder(_PRIME)
        return digest.float(), torch.zeros(len(flat), device=flat.device)
    flat = flat.float()
    w = _digest_weights(flat.shape[1], flat.device, integer=False)
    return flat @ w, 1e-4 * (flat.abs() @ w) + 1e-4


def batch_digest(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`input_digest` of a batch's inputs, and for a masked LM of its inputs and labels side by side (which
    positions are masked, including those the 80/10/10 rule leaves unchanged)."""
    inputs = batch_inputs(batch)
    labels = _labels(batch, inputs)
    if labels is not None and not inputs.dtype.is_floating_point:
        inputs = torch.cat([inputs, labels.to(inputs.dtype)], dim=1)
    return input_digest(inputs)


def encode_targets(logits: torch.Tensor, store: str, k: Optional[int], temperature: float,
                   generator: Optional[torch.Generator] = None, power: float = 1.0) -> dict[str, np.ndarray]:
    """The target fields of rows of (mean) teacher logits ``[M, C]`` stored as ``store``. ``generator`` (a CPU
    generator) draws the ``sampled`` kind's classes."""
    logits = logits.detach().float().cpu()
    if logits.dim() != 2:
        raise ValueError(f'a cache stores [N, C] logits (one row per example or masked position); got '
                         f'{tuple(logits.shape)}')
    if store == 'dense':
        return {'logits': logits.numpy().astype(np.float16)}
    targets = topk_targets(logits, k, temperature) if store == 'topk' else \
        sampled_targets(logits, k, temperature, generator=generator, power=power)
    return {'indices': targets.indices.numpy().astype(_index_dtype(logits.shape[1])),
            'values': targets.values.numpy().astype(np.float16),
            'tail': targets.tail.numpy().astype(np.float32).reshape(-1, 1)}


def encode_rows(logits: torch.Tensor, inputs: Any, store: str, k: Optional[int], temperature: float,
                generator: Optional[torch.Generator] = None, power: float = 1.0) -> dict[str, np.ndarray]:
    """The fields of a batch: its target fields (:func:`encode_targets`) and the digests of ``inputs`` (a batch, or
    its input tensor)."""
    out = encode_targets(logits, store, k, temperature, generator, power)
    out['digest'] = batch_digest(inputs)[0].cpu().numpy().reshape(-1, 1)
    return out


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_text(text)
    os.replace(tmp, path)


def write_manifest(folder: Union[str, os.PathLike], manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` atomically (JSON only)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))


class ShardLayout:
    """Where each field of a shard lies: ``name -> (byte offset, dtype, shape)``, and the shard's ``size`` in bytes.

    Args:
        fields: the manifest's row fields (:func:`shard_fields`).
        examples: the examples of the shard (the manifest's ``rows_per_rank``).
        rows: the row unit; ``masked`` needs ``num_rows``, the number of masked positions of the shard.
    """

    def __init__(self, fields: Sequence[Sequence[Any]], examples: int, rows: str = 'examples',
                 num_rows: Optional[int] = None) -> None:
        self.unit, self.examples = rows, int(examples)
        header: list[tuple[str, str, int, int]] = []
        if rows == 'masked':
            if num_rows is None:
                raise ValueError('a masked-position shard needs its number of rows')
            header = [('offsets', 'int64', self.examples + 1, 1), ('digest', 'float32', self.examples, 1)]
        self.num_rows = int(num_rows) if rows == 'masked' else self.examples
        self.fields: dict[str, tuple[int, np.dtype, tuple[int, int]]] = {}
        offset = 0
        for name, dtype, length, width in [*header, *((n, d, self.num_rows, int(w)) for n, d, w in fields)]:
            dtype = np.dtype(dtype)
            self.fields[name] = (offset, dtype, (int(length), int(width)))
            offset += dtype.itemsize * int(length) * int(width)
        self.size = offset

    @classmethod
    def of_file(cls, path: Path, fields: Sequence[Sequence[Any]], examples: int,
                rows: str = 'examples') -> Optional['ShardLayout']:
        """The layout of the shard at ``path`` if it is whole (its size fits its header), else None."""
        if not path.is_file():
            return None
        size = path.stat().st_size
        num_rows = None
        if rows == 'masked':
            if size < 8 * (examples + 1):
                return None
            num_rows = int(np.fromfile(path, dtype=np.int64, count=1, offset=8 * examples)[0])
            if num_rows < 0:
                return None
        layout = cls(fields, examples, rows, num_rows)
        return layout if layout.size == size else None


class ShardWriter:
    """Fill one shard batch by batch in a temporary memory-mapped file, then :meth:`commit` it (flush and
    ``os.replace`` into its final name).

    ``counts``: for a ``masked`` cache, every example's number of rows (masked positions), known before the teacher
    runs (the masks are replayed), which sizes the file and fills its ``offsets``."""

    def __init__(self, folder: Union[str, os.PathLike], manifest: Mapping[str, Any], epoch: int, rank: int,
                 counts: Optional[np.ndarray] = None) -> None:
        self.path = Path(folder) / shard_name(epoch, rank)
        self.tmp = self.path.with_name(f'.{self.path.name}.{os.getpid()}.tmp')
        examples, unit = int(manifest['rows_per_rank']), manifest.get('rows', 'examples')
        self.offsets = None
        if unit == 'masked':
            if counts is None or len(counts) != examples:
                raise ValueError(f'a masked-position shard needs the row count of each of its {examples} examples')
            self.offsets = np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))])
        self.layout = ShardLayout(manifest['fields'], examples, unit,
                                  None if self.offsets is None else int(self.offsets[-1]))
        self.data = np.memmap(self.tmp, dtype=np.uint8, mode='w+', shape=(max(self.layout.size, 1),))
        if self.offsets is not None:
            self._view('offsets')[:, 0] = self.offsets

    def _view(self, name: str) -> np.ndarray:
        offset, dtype, shape = self.layout.fields[name]
        return np.ndarray(shape, dtype=dtype, buffer=self.data, offset=offset)

    def write(self, start: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write the fields of the examples from ``start`` on (``arrays`` as :func:`encode_rows` makes them: the
        digest per example, the targets per row)."""
        n = len(arrays['digest'])
        first, last = (start, start + n) if self.offsets is None else \
            (int(self.offsets[start]), int(self.offsets[start + n]))
        for name in self.layout.fields:
            if name == 'offsets':
                continue
            value = arrays[name]
            lo, hi = (start, start + n) if name == 'digest' else (first, last)
            if len(value) != hi - lo:
                raise ValueError(f'{len(value)} rows of {name} for examples {start}-{start + n - 1}, which hold '
                                 f'{hi - lo}')
            view = self._view(name)
            view[lo:hi] = value.reshape(hi - lo, view.shape[1])

    def commit(self) -> Path:
        self.data.flush()
        del self.data
        if self.layout.size == 0:  # np.memmap cannot map 0 bytes; an empty shard is an empty file
            os.truncate(self.tmp, 0)
        os.replace(self.tmp, self.path)
        return self.path
