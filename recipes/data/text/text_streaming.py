"""Streamed masked-LM text: the datasets ``text_mds`` (MDS shards) and ``c4`` (Hugging Face ``datasets`` streaming).

    train_loader:                          # shards made by `python -m recipes.text_to_mds ... --out <path>/train`
      dataset: text_mds
      path: data/sotu_mds                  # <path>/<split>/index.json
      split: train
      tokenizer: data/tokenizers/sotu-wordpiece
      max_seq_len: 128                     # must equal the shards' block length

    train_loader:                          # C4 straight from the hub (internet), tokenised and packed on the fly
      dataset: c4
      split: train                         # train | validation
      tokenizer: bert-base-uncased
      hf_path: allenai/c4                  # or `json` with data_files: local JSON lines in C4's layout
      hf_name: en

Both yield blocks ``[CLS] t_1 ... t_{L-2} [SEP]`` of ``max_seq_len`` tokens packed the way
:func:`recipes.data.text.text_blocks.pack_blocks` packs them (:class:`BlockPacker` is its streamed twin). Both shard themselves
across ranks: ``text_mds`` through mosaicml-streaming's ``StreamingDataset`` (its shuffle seeded by the run's
``seed``; mid-epoch resumption from Composer checkpoints), ``c4`` through ``datasets.distributed.split_dataset_by_node``
(whole files per rank when the number of files divides the world size, as C4's 1,024 train and 8 validation files do;
in worker processes ``datasets`` splits a rank's files between the workers).

Batches are masked by BERT's 80/10/10 rule (:func:`recipes.data.text.mlm_masking.mask_tokens`, ``mlm_probability``) in the
loading process by :class:`MaskedBlocks`, from a generator seeded by ``(seed, epoch, rank)``: the ranks draw different
masks, worker processes change nothing, and an evaluation split (``shuffle: false``) gets the same masks at every
evaluation, so its MLM accuracy compares across evaluations and runs.

``subset`` caps a split at that many blocks in total across ranks: for an evaluation (``shuffle: false``) the first
``subset`` blocks every time, which a ``c4`` evaluation needs (a stream has no length); ``text_mds`` with ``shuffle``
draws ``subset`` blocks afresh each epoch. The ``c4`` stream shuffles documents in a buffer of ``shuffle_buffer``
documents, seeded by the run's seed and the epoch.

Resuming: ``text_mds`` restores its position from the checkpoint at once (mosaicml-streaming), the same blocks in the
same order, with other masks than the uninterrupted run would have drawn. A resumed ``c4`` run replays its stream up
to the checkpoint (Composer reads and drops the batches already seen: time in proportion to the steps done), and so
gets the same blocks and the same masks.

The datasets register when this module is imported.
"""
from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, Subset, get_worker_info

from recipes.core.errors import ConfigError
from recipes.core.schema import union
from recipes.data.registry import DatasetSpec, WorkerOptions, register_dataset
from recipes.data.text.mlm_masking import mask_tokens, special_positions
from recipes.data.text.text_data import MlmOptions, check_mlm_options, check_text_fits

__all__ = ['BlockPacker', 'MaskedBlocks', 'HFTextBlocks', 'StreamingOptions', 'C4Options',
           'shard_block_len', 'mask_generator']

log = logging.getLogger(__name__)
DOCS_PER_BATCH = 256  # documents tokenised per call of the fast tokenizer



@dataclass
class StreamingOptions(MlmOptions, WorkerOptions):
    """Options of both streamed datasets (``text_mds``; ``c4`` adds its own): the loader options with workers and the
    masked-LM ones."""


@dataclass
class C4Options(StreamingOptions):
    hf_path: str = 'allenai/c4'
    hf_name: Optional[str] = 'en'
    data_files: Any = union(str, list, dict, None)
    shuffle_buffer: int = 10_000


class BlockPacker:
    """:func:`recipes.data.text.text_blocks.pack_blocks` one batch of documents at a time: feeding documents in any number of
    calls yields the same blocks as packing them all at once (``pending`` tokens wait for the next block; those left at
    the end are the tail that ``pack_blocks`` drops).

    Args:
        block_len: tokens per block, ``[CLS]`` and ``[SEP]`` included (>= 3).
        cls_id, sep_id: the ids of ``[CLS]`` and ``[SEP]``.
        dtype: the numpy dtype of the blocks.
    """

    def __init__(self, block_len: int, cls_id: int, sep_id: int, dtype: Any = np.int64) -> None:
        if block_len < 3:
            raise ValueError(f'block_len must be >= 3, got {block_len}')
        self.block_len, self.cls_id, self.sep_id, self.dtype = block_len, cls_id, sep_id, np.dtype(dtype)
        self._buffer: list[int] = []
        self._started = False  # whether any token was seen: documents after it are preceded by [SEP]

    @property
    def pending(self) -> int:
        """Tokens (separators included) waiting for the next block."""
        return len(self._buffer)

    def feed(self, token_lists: Iterable[Sequence[int]]) -> Iterator[np.ndarray]:
        """The blocks completed by the documents ``token_lists`` (token ids without special tokens)."""
        body = self.block_len - 2
        for tokens in token_lists:
            if self._started:
                self._buffer.append(self.sep_id)
            self._buffer.extend(tokens)
            self._started = self._started or bool(self._buffer)
            full = len(self._buffer) // body * body
            for i in range(0, full, body):
                block = np.empty(self.block_len, dtype=self.dtype)
                block[0], block[1:-1], block[-1] = self.cls_id, self._buffer[i:i + body], self.sep_id
                yield block
            if full:
                del self._buffer[:full]


def _rank_world() -> tuple[int, int]:
    from composer.utils import dist

    return dist.get_global_rank(), dist.get_world_size()


def mask_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """A CPU generator seeded by ``(seed, epoch, rank)`` through NumPy's ``SeedSequence`` (independent streams)."""
    state = np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)
    return torch.Generator().manual_seed(int(state))


def _stack(examples: Sequence[Mapping[str, Any]]) -> torch.Tensor:
    return torch.stack([torch.as_tensor(e['input_ids'], dtype=torch.long) for e in examples])


class MaskedBlocks(DataLoader):
    """A ``DataLoader`` of token blocks whose batches it masks itself, in the loading process (workers, if any, only
    read and stack blocks): ``{'input_ids', 'attention_mask', 'labels'}``.

    Each ``__iter__`` is an epoch; its masks come from :func:`mask_generator` ``(seed, epoch, rank)``, the epoch taken
    as 0 when not shuffling (an evaluation split is masked the same way every time). A dataset with ``set_epoch``
    (:class:`HFTextBlocks`) is told the epoch before its workers start (``persistent_workers`` keep the first epoch's).
    """

    def __init__(self, dataset: Any, batch_size: int, *, tokenizer: Any, probability: float, seed: int, rank: int,
                 shuffle: bool, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=batch_size, collate_fn=_stack, **kwargs)
        self.mask_token_id, self.pad_token_id = tokenizer.mask_token_id, tokenizer.pad_token_id
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        self.vocab_size, self.probability = len(tokenizer), probability
        self.seed, self.rank, self.shuffle, self.epoch = seed, rank, shuffle, 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:  # type: ignore[override]
        epoch = self.epoch if self.shuffle else 0
        self.epoch += 1
        if hasattr(self.dataset, 'set_epoch'):
            self.dataset.set_epoch(epoch)
        generator = mask_generator(self.seed, epoch, self.rank)
        for ids in super().__iter__():
            masked, labels = mask_tokens(ids, mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
                                         special_mask=special_positions(ids, self.special_ids),
                                         probability=self.probability, generator=generator)
            yield {'input_ids': masked, 'attention_mask': (ids != self.pad_token_id).long(), 'labels': labels}


def _loader(build: Any) -> Any:
    """The ``loader`` hook of a streamed dataset: ``build(opts, batch size, key, seed)`` in a :class:`MaskedBlocks`."""

    def loader(opts: Mapping[str, Any], batch_size: int, key: str, seed: int, device: Any = None) -> MaskedBlocks:
        tokenizer = check_mlm_options(opts, key)
        rank, _ = _rank_world()
        dataset = build(opts, batch_size, key, seed)
        workers = opts['num_workers']
        try:
            size: Any = len(dataset)
        except TypeError:
            size = 'streamed'
        log.info('%s: %s/%s, %s blocks of %d tokens, batch %d per rank', key, opts['dataset'], opts['split'], size,
                 opts['max_seq_len'], batch_size)
        return MaskedBlocks(dataset, batch_size, tokenizer=tokenizer, probability=opts['mlm_probability'], seed=seed,
                            rank=rank, shuffle=opts['shuffle'], drop_last=opts['drop_last'], num_workers=workers,
                            pin_memory=bool(opts['pin_memory']) and torch.cuda.is_available(),
                            persistent_workers=opts['persistent_workers'] and workers > 0)

    return loader


# ----------------------------------------------------------------------------------------------------- text_mds
def shard_block_len(folder: str | os.PathLike) -> tuple[int, str]:
    """``(block length, dtype)`` of the ``input_ids`` column of the MDS shards in ``folder`` (from ``index.json``)."""
    index = json.loads((Path(folder) / 'index.json').read_text())
    for shard in index['shards']:
        names, encodings = shard.get('column_names', []), shard.get('column_encodings', [])
        if 'input_ids' not in names:
            raise ValueError(f'the shards have no input_ids column (they have: {", ".join(names)})')
        parts = encodings[names.index('input_ids')].split(':')
        if len(parts) == 3 and parts[0] == 'ndarray':
            return int(parts[2]), parts[1]
        raise ValueError(f'column input_ids is {encodings[names.index("input_ids")]!r}, not a fixed-length ndarray '
                         '(write the shards with python -m recipes.text_to_mds)')
    raise ValueError('index.json lists no shards')


def check_text_mds(opts: Mapping[str, Any], key: str) -> None:
    """The ``check`` hook of ``text_mds``: the masked-LM options, and the shards (when present; their absence is
    reported by the files check) against ``max_seq_len`` and the ``tokenizer``'s vocabulary size (recorded by
    ``text_to_mds`` in ``conversion.json``)."""
    tok = check_mlm_options(opts, key)
    folder = Path(opts['path']) / opts['split']
    if not (folder / 'index.json').is_file():
        return
    try:
        block_len, _ = shard_block_len(folder)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f'{key}.path: cannot read MDS shards in {folder}: {e}') from None
    if block_len != opts['max_seq_len']:
        raise ConfigError(f'{key}.max_seq_len: {opts["max_seq_len"]} does not fit the shards in {folder}, whose blocks '
                          f'have {block_len} tokens; set {key}.max_seq_len: {block_len} or convert again')
    record = folder / 'conversion.json'
    if record.is_file():
        made = json.loads(record.read_text())
        if made.get('vocab_size') not in (None, len(tok)):
            raise ConfigError(f'{key}.tokenizer: {opts["tokenizer"]!r} has {len(tok)} tokens, but the shards in '
                              f'{folder} were made with {made.get("tokenizer")!r} ({made["vocab_size"]} tokens)')


def _token_blocks_class() -> type:
    """``StreamingTokenBlocks``: a ``StreamingDataset`` over MDS shards with an ``input_ids`` column, yielding
    ``{'input_ids': int64 array}``. Defined on first use (mosaicml-streaming stays optional); reachable as
    ``recipes.data.text.text_streaming.StreamingTokenBlocks`` so that ``spawn`` workers can unpickle it."""
    try:
        from streaming import StreamingDataset
    except ImportError as e:
        raise ImportError('dataset text_mds needs mosaicml-streaming: pip install mosaicml-streaming') from e

    class StreamingTokenBlocks(StreamingDataset):
        def __getitem__(self, index: int) -> dict[str, np.ndarray]:  # type: ignore[override]
            return {'input_ids': super().__getitem__(index)['input_ids'].astype(np.int64)}

    StreamingTokenBlocks.__module__, StreamingTokenBlocks.__qualname__ = __name__, 'StreamingTokenBlocks'
    globals()['StreamingTokenBlocks'] = StreamingTokenBlocks
    return StreamingTokenBlocks


def __getattr__(name: str) -> Any:
    if name == 'StreamingTokenBlocks':
        return _token_blocks_class()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def _text_mds_dataset(opts: Mapping[str, Any], batch_size: int | None, key: str = 'loader', seed: int = 17) -> Any:
    """The ``StreamingDataset`` of ``<path>/<split>``, shuffled (when ``shuffle``) by ``seed``.

    ``subset`` with ``shuffle``: ``subset`` blocks an epoch, drawn afresh each epoch (streaming's ``epoch_size``).
    ``subset`` without ``shuffle`` (an evaluation): the first ``subset`` blocks, every time, dealt to the ranks in turn.
    """
    cls = _token_blocks_class()
    fixed = opts['subset'] is not None and not opts['shuffle']
    dataset = cls(local=os.path.join(opts['path'], opts['split']), shuffle=opts['shuffle'], batch_size=batch_size,
                  epoch_size=None if fixed else opts['subset'], shuffle_seed=seed)
    if fixed:
        rank, world = _rank_world()
        return Subset(dataset, range(rank, min(opts['subset'], dataset.size), world))
    return dataset


# ----------------------------------------------------------------------------------------------------------- c4
def _data_files(data_files: Any, split: str) -> Any:
    """``data_files`` for ``load_dataset``: a dict as given; a path/glob or a list of them as the files of ``split``
    (``{split}`` in a path is replaced by the split's name)."""
    if data_files is None or isinstance(data_files, Mapping):
        return data_files
    files = [data_files] if isinstance(data_files, str) else list(data_files)
    return {split: [str(f).replace('{split}', split) for f in files]}


def check_c4(opts: Mapping[str, Any], key: str) -> None:
    """The ``check`` hook of ``c4``: the masked-LM options, ``shuffle_buffer``, and local ``data_files`` (a split
    without files, or a local path/glob that matches nothing, which ``datasets`` would stream as nothing, silently;
    URLs (``://``) are left to ``datasets``)."""
    check_mlm_options(opts, key)
    if key == 'eval_loader' and opts['subset'] is None:
        raise ConfigError(f'{key}.subset: a streamed evaluation needs a size (Composer would not know when it ends); '
                          f'set {key}.subset to a number of blocks, e.g. 65536')
    if opts['shuffle_buffer'] < 1:
        raise ConfigError(f'{key}.shuffle_buffer: expected an integer >= 1, got {opts["shuffle_buffer"]}')
    data_files = _data_files(opts['data_files'], opts['split'])
    if data_files is None:
        return
    if opts['split'] not in data_files:
        raise ConfigError(f'{key}.data_files: no files for split {opts["split"]!r} (it has: {", ".join(data_files)})')
    files = data_files[opts['split']]
    for pattern in [files] if isinstance(files, str) else files:
        if '://' not in str(pattern) and not glob.glob(str(pattern)):
            raise ConfigError(f'{key}.data_files: no file matches {str(pattern)!r} (split {opts["split"]!r})')


def _per_worker(limit: int | None, num_shards: int | None) -> int | None:
    """This worker's share of ``limit`` blocks: ``datasets`` gives the rank's ``num_shards`` files to the first
    ``min(workers, num_shards)`` workers (the others get nothing), which split ``limit``, the first ones taking the
    remainder."""
    info = get_worker_info()
    if limit is None or info is None:
        return limit
    active = min(info.num_workers, num_shards or info.num_workers)
    if info.id >= active:
        return 0
    return limit // active + (info.id < limit % active)


class HFTextBlocks(IterableDataset):
    """Packed token blocks ``{'input_ids': int64 array}`` from a Hugging Face ``IterableDataset`` of documents.

    ``source`` is this rank's part of the stream (already split by node). Documents are tokenised in batches without
    special tokens and packed by :class:`BlockPacker`. :meth:`set_epoch` passes the epoch on to ``source`` (a shuffled
    stream reshuffles). In dataloader workers ``datasets`` gives each worker its own files, and ``limit`` (this rank's
    blocks) is split between the workers.
    """

    def __init__(self, source: Any, tokenizer: str, block_len: int, column: str = 'text', limit: int | None = None,
                 key: str = 'loader') -> None:
        self.source, self.tokenizer, self.block_len, self.column = source, tokenizer, block_len, column
        self.limit, self.key = limit, key

    def __len__(self) -> int:
        """This rank's cap (``subset`` / world size); an uncapped stream has no length (a TypeError, as for any
        ``IterableDataset``; Composer then trains by ``max_duration`` in batches or samples)."""
        if self.limit is None:
            raise TypeError('a streamed dataset without subset has no length')
        return self.limit

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.source, 'set_epoch'):
            self.source.set_epoch(epoch)

    def _texts(self) -> Iterator[str]:
        for number, row in enumerate(self.source, start=1):
            text = row.get(self.column) if isinstance(row, Mapping) else None
            if not isinstance(text, str):
                fields = ', '.join(row) if isinstance(row, Mapping) else type(row).__name__
                raise ConfigError(f'{self.key}.text_column: document {number} of the stream has no text column '
                                  f'{self.column!r} (it has: {fields})')
            yield text

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        from recipes.data.text.tokenizer import load_tokenizer

        tok = load_tokenizer(self.tokenizer, f'{self.key}.tokenizer')
        limit = _per_worker(self.limit, getattr(self.source, 'num_shards', None))
        if limit == 0:
            return
        packer, count, texts = BlockPacker(self.block_len, tok.cls_token_id, tok.sep_token_id), 0, self._texts()
        while True:
            batch = [text for _, text in zip(range(DOCS_PER_BATCH), texts)]
            if not batch:
                return
            encoded = tok(batch, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False,
                          verbose=False)['input_ids']
            for block in packer.feed(encoded):
                yield {'input_ids': block}
                count += 1
                if limit is not None and count >= limit:
                    return


def _c4_dataset(opts: Mapping[str, Any], batch_size: int | None, key: str = 'loader', seed: int = 17) -> HFTextBlocks:
    """This rank's part of the ``datasets`` stream of ``opts``, shuffled (when ``shuffle``) by ``seed``."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    rank, world = _rank_world()
    try:
        stream = datasets.load_dataset(opts['hf_path'], opts['hf_name'], split=opts['split'], streaming=True,
                                       data_files=_data_files(opts['data_files'], opts['split']))
    except Exception as e:  # noqa: BLE001 - hub, file and builder errors: one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ConfigError(f'{key}.hf_path: cannot stream {opts["hf_path"]!r} ({opts["hf_name"]}, split '
                          f'{opts["split"]!r}): {first}') from None
    features = getattr(stream, 'features', None)
    if features is not None and opts['text_column'] not in features:
        raise ConfigError(f'{key}.text_column: {opts["hf_path"]!r} has no text column {opts["text_column"]!r} '
                          f'(it has: {", ".join(features)})')
    if opts['shuffle']:
        stream = stream.shuffle(seed=seed, buffer_size=opts['shuffle_buffer'])
    stream = split_dataset_by_node(stream, rank=rank, world_size=world)
    limit = None if opts['subset'] is None else max(1, opts['subset'] // world)
    log.info('%s: %s (%s) split %s, rank %d of %d, %s files', key, opts['hf_path'], opts['hf_name'], opts['split'],
             rank, world, getattr(stream, 'num_shards', '?'))
    return HFTextBlocks(stream, opts['tokenizer'], opts['max_seq_len'], opts['text_column'], limit, key)


register_dataset('text_mds', DatasetSpec(
    StreamingOptions, _text_mds_dataset, lambda path, split: [path / split / 'index.json'],
    splits=('train', 'validation', 'test', 'val'), shards_itself=True, needs=(('streaming', 'mosaicml-streaming'),),
    check=check_text_mds, fits=check_text_fits, loader=_loader(_text_mds_dataset),
    hint=' (convert JSON lines with `python -m recipes.text_to_mds --input ... --out <path>/<split> --tokenizer ...`)'))
register_dataset('c4', DatasetSpec(
    C4Options, _c4_dataset, lambda path, split: [], splits=('train', 'validation'), shards_itself=True,
    needs=(('datasets', 'datasets'),), check=check_c4, fits=check_text_fits, loader=_loader(_c4_dataset)))
