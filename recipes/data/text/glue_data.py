"""The ``glue`` dataset: a GLUE task, tokenised once and held in memory, padded per batch.

    train_loader:
      dataset: glue
      task: sst2                 # mnli qqp qnli sst2 cola stsb mrpc rte (recipes/data/text/glue_tasks.py)
      source: local              # hub: datasets.load_dataset('nyu-mll/glue', task); local: <path>/<task>/<split>.jsonl
      path: data/glue_local      # for source: local
      split: train               # train | validation (MNLI: validation_matched, validation_mismatched) | test...
      tokenizer: data/tokenizers/sotu-wordpiece   # a name or path (recipes/data/text/tokenizer.py)
      max_seq_len: 128

``source: local`` reads JSON lines with GLUE's column names (``sentence``/``label`` for SST-2, ``premise``/
``hypothesis``/``label`` for MNLI, ...), which is what ``python -m recipes.prepare_data rotten_tomatoes --out data``
writes for the SST-2-style task (``data/glue_local/sst2/{train,validation}.jsonl``). ``source: hub`` reads the same
columns through Hugging Face ``datasets`` (``hf_path``, default ``nyu-mll/glue``; network or a filled cache).

Every example is tokenised once, up front (``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``, truncated to
``max_seq_len``; no padding), and kept per process (a second loader of the same file, tokenizer and length, e.g. the
next fine-tuning run of a study, reuses it). :class:`GlueCollator` pads each batch to its longest example and yields
``{'input_ids', 'token_type_ids', 'attention_mask', 'labels'}`` (labels ``long``, or ``float`` for STS-B), the
keyword arguments of ``BertForSequenceClassification``. Every mistake (unknown task or split, missing file or
column, a label out of range, a tokenizer that cannot be loaded or adds no ``[CLS]``/``[SEP]``, a ``max_seq_len``
beyond the model's positions) is one :class:`ConfigError` line naming the key, raised while the recipe is checked
(:func:`check_glue_loader`, ``DatasetSpec.check`` and ``fits``), except bad rows, found when the split is read.

The dataset registers itself when this module is imported (``register_dataset('glue', ...)``).
"""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING
from torch.utils.data import Dataset

from recipes.data.registry import CommonOptions, DatasetSpec, register_dataset, resolve_options
from recipes.core.errors import ConfigError
from recipes.data.text.glue_tasks import HUB_PATH, TASKS, GlueTask, get_task
from recipes.data.text.text_data import check_text_fits
from recipes.data.text.tokenizer import load_tokenizer

__all__ = ['GlueOptions', 'GlueExamples', 'GlueCollator', 'check_glue_loader', 'check_loader_config', 'glue_examples',
           'local_file', 'read_local', 'tokenize', 'MIN_SEQ_LEN']

log = logging.getLogger(__name__)

SOURCES = ('hub', 'local')
MIN_SEQ_LEN = 8


@dataclass
class GlueOptions(CommonOptions):
    task: str = MISSING
    source: str = 'hub'
    tokenizer: str = MISSING
    max_seq_len: int = 128
    hf_path: str = HUB_PATH


_ALL_SPLITS = tuple(dict.fromkeys(s for t in TASKS.values() for s in t.splits))
_PREPARE = {'sst2': ' (the SST-2-style task: `python -m recipes.prepare_data rotten_tomatoes --out data`)'}


def local_file(path: str | Path, task: str, split: str) -> Path:
    """Where ``source: local`` reads ``split`` of ``task``: ``<path>/<task>/<split>.jsonl``."""
    return Path(path) / task / f'{split}.jsonl'


def check_glue_loader(opts: Mapping[str, Any], key: str = 'loader') -> GlueTask:
    """Validate resolved ``glue`` loader options without tokenising (a ConfigError naming the key); returns the task.

    Checks the task, the split for that task, the source and its file (for ``local``), ``max_seq_len`` and the
    tokenizer (loaded: cached per process; it must add ``[CLS]`` and ``[SEP]`` around a sentence)."""
    try:
        task = get_task(opts['task'], f'{key}.task')
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if opts['split'] not in task.splits:
        raise ConfigError(f'{key}.split: {task.name} has no split {opts["split"]!r}; allowed: {", ".join(task.splits)}')
    if opts['source'] not in SOURCES:
        raise ConfigError(f'{key}.source: expected one of {", ".join(SOURCES)}, got {opts["source"]!r}')
    if opts['source'] == 'local':
        file = local_file(opts['path'], task.name, opts['split'])
        if not file.is_file():
            raise ConfigError(f'{key}.path: {opts["path"]!r} lacks GLUE {task.name} data: expected {file}'
                              f'{_PREPARE.get(task.name, "")}')
    if opts['max_seq_len'] < MIN_SEQ_LEN:
        raise ConfigError(f'{key}.max_seq_len: expected an integer >= {MIN_SEQ_LEN}, got {opts["max_seq_len"]}')
    tokenizer = load_tokenizer(opts['tokenizer'], f'{key}.tokenizer')
    ids = tokenizer('a')['input_ids']
    if not ids or ids[0] != tokenizer.cls_token_id or ids[-1] != tokenizer.sep_token_id:
        raise ConfigError(f'{key}.tokenizer: {opts["tokenizer"]!r} does not add [CLS] ... [SEP] around a sentence '
                          '(save a tokenizer with a BERT post-processor, e.g. BertWordPieceTokenizer)')
    return task


def _label(task: GlueTask, value: Any, split: str) -> float | int | None:
    """The label as the model takes it, or None if it is not valid for ``task`` (-1 marks GLUE's unlabelled tests)."""
    if task.is_regression:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    ok = 0 <= value < task.num_labels or (value == -1 and split.startswith('test'))
    return value if ok else None


def _rows_to_columns(task: GlueTask, rows: Sequence[Mapping[str, Any]], split: str, where: str,
                     key: str) -> tuple[list[list[str]], list[Any]]:
    """Text columns and labels of ``rows``; a ConfigError naming ``where`` for a missing column or a bad label."""
    texts: list[list[str]] = [[] for _ in task.text_columns]
    labels: list[Any] = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise ConfigError(f'{key}.path: {where} row {number} is not a JSON object')
        for column, values in zip(task.text_columns, texts):
            value = row.get(column)
            if not isinstance(value, str):
                wanted = ', '.join((*task.text_columns, 'label'))
                raise ConfigError(f'{key}.task: {where} row {number} has no text column {column!r} (GLUE {task.name} '
                                  f'reads {wanted}; the row has {", ".join(row) or "nothing"})')
            values.append(value)
        if 'label' not in row:
            raise ConfigError(f'{key}.task: {where} row {number} has no column \'label\' (GLUE {task.name})')
        label = _label(task, row['label'], split)
        if label is None:
            expected = 'a number' if task.is_regression else f'an integer in [0, {task.num_labels})'
            raise ConfigError(f'{key}.task: {where} row {number} has label {row["label"]!r}; {task.name} expects '
                              f'{expected}')
        labels.append(label)
    return texts, labels


def read_local(file: str | Path, task: GlueTask, split: str, key: str = 'loader') -> tuple[list[list[str]], list[Any]]:
    """The text columns and labels of a local JSON-lines file (one object per line, GLUE's column names)."""
    rows = []
    with open(file, encoding='utf-8') as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ConfigError(f'{key}.path: {file} line {number} is not JSON ({e.msg})') from None
    return _rows_to_columns(task, rows, split, str(file), key)


def _read_hub(hf_path: str, task: GlueTask, split: str, key: str) -> tuple[list[list[str]], list[Any]]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(f'{key}.source: hub needs Hugging Face datasets: pip install datasets') from None
    try:
        data = datasets.load_dataset(hf_path, task.name, split=split)
    except Exception as e:  # noqa: BLE001 - network, cache and hub errors: one line whatever the cause
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ConfigError(f'{key}.source: cannot load {hf_path} {task.name} split {split} ({first}); '
                          'use source: local for files on disk') from None
    missing = [c for c in (*task.text_columns, 'label') if c not in data.column_names]
    if missing:
        raise ConfigError(f'{key}.task: {hf_path} {task.name} has no column {missing[0]!r} '
                          f'(it has {", ".join(data.column_names)})')
    return _rows_to_columns(task, data.select_columns([*task.text_columns, 'label']).to_list(), split,
                            f'{hf_path} {task.name}/{split}', key)


class GlueExamples(Dataset):
    """Tokenised examples of one GLUE split: item ``i`` is ``{'input_ids', 'token_type_ids', 'labels'}`` (lists of
    ints of the example's own length, and its label)."""

    def __init__(self, input_ids: list[list[int]], token_type_ids: list[list[int]], labels: list[Any],
                 task: GlueTask) -> None:
        self.input_ids, self.token_type_ids, self.labels, self.task = input_ids, token_type_ids, labels, task

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {'input_ids': self.input_ids[index], 'token_type_ids': self.token_type_ids[index],
                'labels': self.labels[index]}


def tokenize(tokenizer: Any, texts: Sequence[Sequence[str]],
             max_seq_len: int) -> tuple[list[list[int]], list[list[int]]]:
    """``(input_ids, token_type_ids)`` of every example (one text column or a pair), truncated to ``max_seq_len``
    (the longer text of a pair first), with the tokenizer's special tokens, unpadded."""
    encoded = tokenizer(*texts, truncation=True, max_length=max_seq_len, padding=False,
                        return_attention_mask=False, return_token_type_ids=True)
    return encoded['input_ids'], encoded['token_type_ids']


@functools.lru_cache(maxsize=16)
def _cached(source: str, where: str, stamp: tuple[int, int] | None, task: str, split: str, tokenizer: str,
            max_seq_len: int, key: str) -> GlueExamples:
    glue_task = TASKS[task]
    if source == 'local':
        texts, labels = read_local(where, glue_task, split, key)
    else:
        texts, labels = _read_hub(where, glue_task, split, key)
    ids, types = tokenize(load_tokenizer(tokenizer, f'{key}.tokenizer'), texts, max_seq_len)
    truncated = sum(len(x) == max_seq_len for x in ids)
    log.info('glue %s/%s: %d examples tokenised (%d at max_seq_len %d)', task, split, len(labels), truncated,
             max_seq_len)
    return GlueExamples(ids, types, labels, glue_task)


def glue_examples(opts: Mapping[str, Any], key: str = 'loader') -> GlueExamples:
    """The tokenised split of resolved ``glue`` loader options (checked first), cached per process: a local file is
    read again only when its modification time or size changed."""
    task = check_glue_loader(opts, key)
    if opts['source'] == 'local':
        file = local_file(opts['path'], task.name, opts['split'])
        stat = file.stat()
        where, stamp = str(file.resolve()), (stat.st_mtime_ns, stat.st_size)
    else:
        where, stamp = opts['hf_path'], None
    return _cached(opts['source'], where, stamp, task.name, opts['split'], opts['tokenizer'], opts['max_seq_len'],
                   key)


class GlueCollator:
    """A ``collate_fn``: pads a list of :class:`GlueExamples` items to the longest and stacks them.

    Returns ``{'input_ids', 'token_type_ids', 'attention_mask', 'labels'}``: ids padded with ``pad_id``, token types
    and attention mask with 0; labels ``float32`` when ``regression`` (STS-B) and ``int64`` otherwise.
    """

    def __init__(self, pad_id: int, regression: bool = False) -> None:
        self.pad_id, self.regression = pad_id, regression

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(e['input_ids']) for e in examples)
        ids = torch.full((len(examples), length), self.pad_id, dtype=torch.long)
        types = torch.zeros((len(examples), length), dtype=torch.long)
        mask = torch.zeros((len(examples), length), dtype=torch.long)
        for i, e in enumerate(examples):
            n = len(e['input_ids'])
            ids[i, :n] = torch.as_tensor(e['input_ids'], dtype=torch.long)
            types[i, :n] = torch.as_tensor(e['token_type_ids'], dtype=torch.long)
            mask[i, :n] = 1
        labels = torch.tensor([e['labels'] for e in examples],
                              dtype=torch.float32 if self.regression else torch.long)
        return {'input_ids': ids, 'token_type_ids': types, 'attention_mask': mask, 'labels': labels}


def _build(opts: Mapping[str, Any], batch_size: int | None) -> GlueExamples:
    return glue_examples(opts, 'loader')


def _collate(opts: Mapping[str, Any]) -> GlueCollator:
    tokenizer = load_tokenizer(opts['tokenizer'], 'loader.tokenizer')
    return GlueCollator(tokenizer.pad_token_id, regression=get_task(opts['task']).is_regression)


def check_loader_config(cfg: Mapping[str, Any], key: str) -> GlueTask:
    """:func:`check_glue_loader` of a raw loader config (options resolved first)."""
    return check_glue_loader(resolve_options(cfg, key), key)


def _check(opts: Mapping[str, Any], key: str) -> None:
    check_glue_loader(opts, key)


# The files depend on the task: ``check`` looks for them. ``fits``: max_seq_len within the model's positions, the
# tokenizer within its vocabulary (the masked-LM datasets' check).
GLUE_SPEC = DatasetSpec(GlueOptions, _build, lambda path, split: [], splits=_ALL_SPLITS, collate=_collate,
                        check=_check, fits=check_text_fits)
register_dataset('glue', GLUE_SPEC)
