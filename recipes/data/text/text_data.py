"""Masked-LM text held in memory: the ``text_json`` dataset (C4-style JSON lines on disk, e.g. the offline corpus).

    train_loader:
      dataset: text_json
      path: data/sotu                          # <path>/<split>.jsonl, one {"text": ...} per line
      split: train                             # train | validation | test
      tokenizer: data/tokenizers/sotu-wordpiece  # a folder, a tokenizer.json, or a Hugging Face name
      max_seq_len: 128                         # tokens per block, [CLS] and [SEP] included
      mlm_probability: 0.15

The split is read, tokenised and packed into blocks once per process (:mod:`recipes.data.text.text_blocks`), held as one
``int64`` tensor on the training device, and served in whole batches like the in-memory images
(:mod:`recipes.data.tensor_data`): an epoch's order and every batch's masks (:func:`recipes.data.text.mlm_masking.mask_tokens`,
BERT's 80/10/10 rule) come from a generator seeded by ``(seed, epoch)``, so evaluating more often or resuming does
not change training. An evaluation split is masked the same way every time (the epoch is ignored when ``shuffle`` is
false), so its MLM accuracy is comparable from one evaluation, and one run, to the next.

The streaming datasets for corpora that do not fit in memory (``c4`` through Hugging Face ``datasets``, ``text_mds``
from MDS shards) are in :mod:`recipes.data.text.text_streaming`; GLUE tasks in :mod:`recipes.data.text.glue_data`.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import MISSING
from torch.utils.data import Dataset

from recipes.core.errors import ConfigError
from recipes.data.registry import DatasetSpec, LoaderOptions, register_dataset
from recipes.data.text.mlm_masking import mask_tokens, special_positions
from recipes.data.tensor_data import EpochBatches, epoch_generator

__all__ = ['TextJsonOptions', 'MlmOptions', 'InMemoryTokens', 'TokenBatches', 'check_mlm_options', 'check_text_json',
           'first_row_has_column', 'check_text_fits',
           'text_json_loader']

log = logging.getLogger(__name__)


@dataclass
class MlmOptions(LoaderOptions):
    """Options of every masked-LM dataset (also the streaming ones, :mod:`recipes.data.text.text_streaming`)."""

    tokenizer: str = MISSING
    max_seq_len: int = 128
    mlm_probability: float = 0.15
    text_column: str = 'text'


@dataclass
class TextJsonOptions(MlmOptions):
    path: str = 'data/sotu'


def check_mlm_options(opts: Mapping[str, Any], key: str) -> Any:
    """Check the masked-LM options (sequence length, probability, the tokenizer: loaded here) and return the
    tokenizer; a one-line ConfigError naming the key otherwise."""
    from recipes.data.text.tokenizer import load_tokenizer

    if opts['max_seq_len'] < 3:
        raise ConfigError(f'{key}.max_seq_len: expected an integer >= 3 ([CLS] token [SEP]), got {opts["max_seq_len"]}')
    if not 0.0 < opts['mlm_probability'] < 1.0:
        raise ConfigError(f'{key}.mlm_probability: expected a probability in (0, 1), got {opts["mlm_probability"]}')
    return load_tokenizer(opts['tokenizer'], f'{key}.tokenizer')


def first_row_has_column(path: Path, column: str, key: str) -> None:
    """A ConfigError naming ``<key>.text_column`` if the first row of the JSON-lines file ``path`` lacks ``column``
    (read before anything trains; every row is checked again when the split is loaded)."""
    from recipes.data.text.text_blocks import iter_json_texts

    first = next(iter_json_texts([path], column, f'{key}.path', f'{key}.text_column'), None)
    if first is None:
        raise ConfigError(f'{key}.path: {path} is empty')


def check_text_json(opts: Mapping[str, Any], key: str) -> Any:
    """:func:`check_mlm_options`, and the split's file has the text column; returns the tokenizer."""
    tokenizer = check_mlm_options(opts, key)
    path = Path(opts['path']) / f'{opts["split"]}.jsonl'
    if path.is_file():  # a missing file is reported by check_data with the preparation hint
        first_row_has_column(path, opts['text_column'], key)
    return tokenizer


def check_text_fits(model: Any, opts: Mapping[str, Any], key: str) -> None:
    """A ConfigError if the loader's ``max_seq_len`` exceeds the model's ``max_position_embeddings`` or its tokenizer
    has more tokens than the model's ``vocab_size`` (models without a Hugging Face config are not checked)."""
    config = getattr(getattr(model, 'model', model), 'config', None)
    limit = getattr(config, 'max_position_embeddings', None)
    if limit is not None and opts['max_seq_len'] > limit:
        raise ConfigError(f'{key}.max_seq_len: {opts["max_seq_len"]} is beyond the model\'s limit of {limit} '
                          f'positions (model.max_position_embeddings); use at most {limit}')
    vocab = getattr(config, 'vocab_size', None)
    if vocab is not None:
        from recipes.data.text.tokenizer import load_tokenizer

        n = len(load_tokenizer(opts['tokenizer'], f'{key}.tokenizer'))
        if n > vocab:
            raise ConfigError(f'{key}.tokenizer: {n} tokens, more than the model\'s vocab_size {vocab}; set '
                              f'model.vocab_size: {n} or model.tokenizer: {opts["tokenizer"]}')


class InMemoryTokens(Dataset):
    """Token blocks ``[N, L]`` indexed by a whole batch: ``self[(indices, seed)]`` is the masked batch
    ``{'input_ids', 'attention_mask', 'labels'}``, its masks drawn from a generator seeded by ``seed``."""

    def __init__(self, blocks: torch.Tensor, tokenizer: Any, probability: float = 0.15,
                 device: torch.device | str = 'cpu') -> None:
        self.blocks = blocks.to(device)
        self.mask_token_id, self.pad_token_id = tokenizer.mask_token_id, tokenizer.pad_token_id
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        self.vocab_size, self.probability = len(tokenizer), probability
        self.pad = 0  # what EpochBatches reads: no crops here

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, key: tuple[torch.Tensor, int]) -> dict[str, torch.Tensor]:
        indices, seed = key
        ids = self.blocks[indices.to(self.blocks.device)]
        masked, labels = mask_tokens(ids, mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
                                     special_mask=special_positions(ids, self.special_ids),
                                     probability=self.probability, generator=torch.Generator().manual_seed(seed))
        return {'input_ids': masked, 'attention_mask': (ids != self.pad_token_id).long(), 'labels': labels}


class TokenBatches(EpochBatches):
    """Keys ``(indices, mask seed)`` of :class:`InMemoryTokens` batches for one rank: the order as
    :class:`~recipes.data.tensor_data.EpochBatches` cuts it, one mask seed per example's batch drawn from the same
    ``(seed, epoch)`` generator (``epoch`` taken as 0 when not shuffling: an evaluation split's masks never change)."""

    def __init__(self, dataset: InMemoryTokens, batch_size: int, *, shuffle: bool, drop_last: bool, seed: int = 0,
                 world: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, batch_size, shuffle=shuffle, augment=False, drop_last=drop_last, seed=seed,
                         world=world, rank=rank)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:  # type: ignore[override]
        g = epoch_generator(self.seed, self.epoch if self.shuffle else 0)
        order = self._indices(g if self.shuffle else None)
        # one seed per global batch position, drawn for every rank alike, then this rank's batches
        seeds = torch.randint(0, 2 ** 62, (-(-len(order) // self.batch_size),), generator=g)
        for b, i in enumerate(range(0, len(order), self.batch_size)):
            yield order[i:i + self.batch_size], int(seeds[b]) + self.rank


def text_json_files(path: Path, split: str) -> list[Path]:
    return [path / f'{split}.jsonl']


@functools.lru_cache(maxsize=4)
def _split_blocks(tokenizer: str, file: str, stamp: tuple[int, int], block_len: int, column: str,
                  key: str) -> torch.Tensor:
    """The blocks of one split, kept per process (a study's next run in the same process reuses them; ``stamp``,
    the file's modification time and size, reads a rewritten file again). Callers never modify the tensor."""
    from recipes.data.text.text_blocks import text_blocks
    from recipes.data.text.tokenizer import load_tokenizer

    return text_blocks(load_tokenizer(tokenizer, f'{key}.tokenizer'), [file], block_len, column=column, key=key)


def text_json_loader(opts: Mapping[str, Any], batch_size: int, key: str, seed: int,
                     device: torch.device | str | None) -> Any:
    """The ``DataLoader`` of a ``text_json`` split (see the module docstring)."""
    from composer.utils import dist

    from recipes.data.tensor_data import BatchLoader

    tokenizer = check_mlm_options(opts, key)
    file = text_json_files(Path(opts['path']), opts['split'])[0]
    stat = file.stat()
    blocks = _split_blocks(opts['tokenizer'], str(file), (stat.st_mtime_ns, stat.st_size), opts['max_seq_len'],
                           opts['text_column'], key)
    if opts['subset'] is not None:
        blocks = blocks[:opts['subset']]
    if len(blocks) == 0:
        raise ConfigError(f'{key}.path: {opts["path"]}/{opts["split"]}.jsonl holds fewer than {opts["max_seq_len"]} '
                          'tokens: not one block')
    device = torch.device(device or 'cpu')
    dataset = InMemoryTokens(blocks, tokenizer, opts['mlm_probability'], device=device)
    sampler = TokenBatches(dataset, batch_size, shuffle=opts['shuffle'], drop_last=opts['drop_last'], seed=seed,
                           world=dist.get_world_size(), rank=dist.get_global_rank())
    log.info('%s: text_json %s/%s, %d blocks of %d tokens in memory on %s, batch %d per rank', key, opts['path'],
             opts['split'], len(blocks), opts['max_seq_len'], device, batch_size)
    return BatchLoader(dataset, sampler, pin_memory=bool(opts['pin_memory']) and device.type == 'cpu'
                       and torch.cuda.is_available())


def _served_by_loader(opts: Mapping[str, Any], batch_size: int | None) -> Dataset:
    raise ConfigError(f'dataset {opts["dataset"]!r} is served as whole batches by its own loader, not as a '
                      'per-example dataset')


register_dataset('text_json', DatasetSpec(
    TextJsonOptions, build=_served_by_loader, files=text_json_files, splits=('train', 'validation', 'test'),
    check=check_text_json, fits=check_text_fits, loader=text_json_loader,
    hint=' (run `python -m recipes.prepare_data sotu` for the offline corpus)'))
