"""Text in, fixed-length token blocks out: what every masked-LM dataset of the project feeds a BERT.

Documents come as JSON lines with a text field (C4's layout: one ``{"text": ...}`` object per line). They are
tokenised without special tokens, concatenated with ``[SEP]`` between documents, and cut into blocks of
``block_len`` tokens, each ``[CLS] t_1 ... t_{block_len-2} [SEP]`` (the packing of Hugging Face's ``run_mlm.py`` with
BERT's special tokens): no padding, every position carries text. The tail that does not fill a block is dropped.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import torch

from recipes.core.errors import ConfigError

__all__ = ['open_text', 'iter_json_texts', 'read_json_lines', 'tokenize_documents', 'pack_blocks', 'text_blocks']


def open_text(path: str | Path) -> IO[str]:
    """A JSON-lines file opened as text (``.gz``: through gzip, as C4's files are published)."""
    path = Path(path)
    return gzip.open(path, 'rt', encoding='utf-8') if path.suffix == '.gz' else open(path, encoding='utf-8')


def iter_json_texts(paths: Iterable[str | Path], column: str, json_key: str, column_key: str) -> Iterator[str]:
    """The ``column`` field of every non-blank line of the JSON-lines files ``paths``, in order, read lazily.

    Raises ConfigError for a line that is not JSON (naming ``json_key``) or not an object with a text ``column``
    (naming ``column_key``; the message names the file, the line and the fields it has).
    """
    for path in paths:
        with open_text(path) as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(f'{json_key}: {path} line {number} is not JSON ({e.msg})') from None
                if not isinstance(row, dict) or not isinstance(row.get(column), str):
                    fields = ', '.join(row) if isinstance(row, dict) else type(row).__name__
                    raise ConfigError(f'{column_key}: {path} line {number} has no text column {column!r} '
                                      f'(it has: {fields})')
                yield row[column]


def read_json_lines(paths: Sequence[str | Path], column: str = 'text', key: str = 'loader') -> list[str]:
    """The ``column`` field of every line of the JSON-lines files ``paths``, in order.

    Raises ConfigError (naming ``key``) for a missing file, a line that is not a JSON object, or a missing or non-text
    ``column`` (the message names the file, the line and the fields it has).
    """
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f'{key}.path: file not found: {path}')
    return list(iter_json_texts(paths, column, f'{key}.path', f'{key}.text_column'))


def tokenize_documents(tokenizer: Any, texts: Iterable[str], batch: int = 256) -> list[list[int]]:
    """Token ids of each text, without special tokens (fast tokenizers encode a batch at a time)."""
    texts = list(texts)
    out: list[list[int]] = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i:i + batch], add_special_tokens=False, return_attention_mask=False,
                        return_token_type_ids=False, verbose=False)
        out.extend(enc['input_ids'])
    return out


def pack_blocks(token_lists: Iterable[Sequence[int]], block_len: int, cls_id: int, sep_id: int) -> torch.Tensor:
    """``[N, block_len]`` int64 blocks ``[CLS] ... [SEP]`` from documents joined by ``[SEP]`` (tail dropped)."""
    if block_len < 3:
        raise ValueError(f'block_len must be >= 3, got {block_len}')
    stream: list[int] = []
    for tokens in token_lists:
        if stream:
            stream.append(sep_id)
        stream.extend(tokens)
    body = block_len - 2
    n = len(stream) // body
    if n == 0:
        return torch.empty((0, block_len), dtype=torch.long)
    middle = torch.as_tensor(stream[:n * body], dtype=torch.long).view(n, body)
    return torch.cat([torch.full((n, 1), cls_id), middle, torch.full((n, 1), sep_id)], dim=1)


def text_blocks(tokenizer: Any, paths: Sequence[str | Path], block_len: int, column: str = 'text',
                key: str = 'loader') -> torch.Tensor:
    """The blocks of the JSON-lines files ``paths``: read, tokenised, packed."""
    docs = tokenize_documents(tokenizer, read_json_lines(paths, column, key))
    return pack_blocks(docs, block_len, tokenizer.cls_token_id, tokenizer.sep_token_id)
