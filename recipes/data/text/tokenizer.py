"""Tokenizers by name or path, for the text datasets (``tokenizer:`` in a loader config).

``load_tokenizer`` accepts a folder written by ``save_pretrained`` (what ``python -m recipes.prepare_data tokenizer``
makes), a ``tokenizer.json`` file or a folder holding one, or a Hugging Face hub name (``bert-base-uncased``: read
from the local cache, or downloaded where the hub is reachable). Every failure is one :class:`ConfigError` line naming
the key, raised while the config is checked, before anything trains. Loaded tokenizers are cached per process.
"""
from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from recipes.core.errors import ConfigError

__all__ = ['load_tokenizer', 'SPECIAL_TOKENS']

log = logging.getLogger(__name__)
SPECIAL_TOKENS = {'pad_token': '[PAD]', 'unk_token': '[UNK]', 'cls_token': '[CLS]', 'sep_token': '[SEP]',
                  'mask_token': '[MASK]'}


def _looks_like_path(name: str) -> bool:
    return os.sep in name or name.startswith('.') or name.endswith('.json') or os.path.exists(name)


@functools.lru_cache(maxsize=8)
def _load(name: str) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(name)
    if path.is_file():
        return PreTrainedTokenizerFast(tokenizer_file=str(path), **SPECIAL_TOKENS)
    if path.is_dir() and not (path / 'tokenizer_config.json').exists() and (path / 'tokenizer.json').exists():
        return PreTrainedTokenizerFast(tokenizer_file=str(path / 'tokenizer.json'), **SPECIAL_TOKENS)
    return AutoTokenizer.from_pretrained(name, use_fast=True)


def load_tokenizer(name_or_path: Any, key: str = 'tokenizer') -> Any:
    """The fast tokenizer ``name_or_path`` names; a one-line ConfigError naming ``key`` if it cannot be loaded or
    lacks what masked-LM data needs (``[CLS]``, ``[SEP]``, ``[PAD]`` and ``[MASK]`` tokens)."""
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ConfigError(f'{key}: expected a tokenizer name or path, got {name_or_path!r}')
    if _looks_like_path(name_or_path) and not os.path.exists(name_or_path):
        raise ConfigError(f'{key}: tokenizer path not found: {name_or_path} (make one with '
                          '`python -m recipes.prepare_data tokenizer`, or name a Hugging Face tokenizer)')
    try:
        tokenizer = _load(name_or_path)
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, hub errors: one line whatever the cause
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ConfigError(f'{key}: cannot load tokenizer {name_or_path!r} ({first})') from None
    missing = [t for t in ('cls_token_id', 'sep_token_id', 'pad_token_id', 'mask_token_id')
               if getattr(tokenizer, t, None) is None]
    if missing:
        raise ConfigError(f'{key}: tokenizer {name_or_path!r} lacks {", ".join(m[:-3] for m in missing)} '
                          '(a BERT-style WordPiece tokenizer has [CLS], [SEP], [PAD], [MASK])')
    return tokenizer
