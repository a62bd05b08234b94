"""JSON lines in, tokenised MDS shards out: the ``text_mds`` dataset's input.

    python -m recipes.text_to_mds --input data/sotu/train.jsonl --out data/sotu_mds/train \\
        --tokenizer data/tokenizers/sotu-wordpiece [--max-seq-len 128] [--text-column text] [--compression zstd]
    python -m recipes.text_to_mds --input '/data/c4/en/c4-train.*.json.gz' --out /data/c4-mds/train \\
        --tokenizer bert-base-uncased --compression zstd

Each ``--input`` is a file or a glob (quoted, so that the shell leaves it alone) of JSON-lines files, plain or
``.gz`` (C4's ``c4-<split>.*-of-*.json.gz`` as published); their lines are read in order (globs sorted), the
``--text-column`` field of each is tokenised without special tokens, and the documents are packed into blocks of
``--max-seq-len`` tokens exactly as :func:`recipes.data.text.text_blocks.pack_blocks` packs them (``[CLS] ... [SEP]``, documents
joined by ``[SEP]``, the last partial block dropped), streamed, so inputs of any size fit in memory. The blocks are
written with mosaicml-streaming's ``MDSWriter`` to ``--out`` (one split's folder: ``<path>/<split>`` of a ``text_mds``
loader) as one column ``input_ids``, a fixed-shape ``ndarray`` of ``uint16`` (vocabularies up to 65,536 tokens) or
``int32``. Beside the shards, ``conversion.json`` records the inputs, the tokenizer, its vocabulary size and the block
length (the dataset checks them against the loader's settings) and the counts.

Idempotent: shards are written to ``<out>.partial`` and moved to ``<out>`` when complete; running the same command
again finds ``<out>`` with the same settings and does nothing. A different conversion into an existing ``<out>`` is
refused unless ``--overwrite`` is given. Bad input (no file matching, a line without the text column, a tokenizer that
cannot be loaded, an existing output) is one ``error: ...`` line and exit status 2.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recipes.core.errors import ConfigError
from recipes.data.text.text_blocks import iter_json_texts

__all__ = ['CONVERSION_FILE', 'expand_inputs', 'iter_texts', 'block_dtype', 'convert', 'main']

log = logging.getLogger('recipes.text_to_mds')  # the same name under python -m

CONVERSION_FILE = 'conversion.json'
DOCS_PER_BATCH = 512  # documents tokenised per call of the (batched, multi-threaded) fast tokenizer
_SETTINGS = ('inputs', 'tokenizer', 'vocab_size', 'max_seq_len', 'text_column', 'compression')


def expand_inputs(patterns: Sequence[str], key: str = '--input') -> list[Path]:
    """The files ``patterns`` name (each a path or a glob; a glob's matches sorted), in order, without repeats."""
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise ConfigError(f'{key}: no file matches {pattern!r}')
        files.extend(Path(m) for m in matches if Path(m) not in files)
    return files


def iter_texts(paths: Sequence[Path], column: str = 'text', key: str = '--text-column') -> Iterator[str]:
    """The ``column`` field of every non-blank line of the JSON-lines files ``paths`` (``.gz`` read as gzip), in order
    (:func:`recipes.data.text.text_blocks.iter_json_texts`; errors name ``--input`` or ``key``)."""
    return iter_json_texts(paths, column, '--input', key)


def block_dtype(vocab_size: int) -> str:
    """The narrowest MDS integer type that holds every token id: ``uint16`` up to 65,536 tokens, else ``int32``."""
    return 'uint16' if vocab_size <= 1 << 16 else 'int32'


def _batches(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _settings(files: Sequence[Path], tokenizer: str, vocab_size: int, max_seq_len: int, text_column: str,
              compression: str | None) -> dict[str, Any]:
    return {'inputs': [str(f.resolve()) for f in files], 'tokenizer': tokenizer, 'vocab_size': vocab_size,
            'max_seq_len': max_seq_len, 'text_column': text_column, 'compression': compression}


def _existing(out: Path, settings: dict[str, Any], overwrite: bool) -> bool:
    """True when ``out`` already holds this conversion; False when it is absent (or removed, with ``overwrite``)."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    record = out / CONVERSION_FILE
    if not overwrite and (out / 'index.json').is_file() and record.is_file():
        done = json.loads(record.read_text())
        differ = [k for k in _SETTINGS if done.get(k) != settings[k]]
        if not differ:
            return True
        raise ConfigError(f'--out: {out} holds another conversion (its {", ".join(differ)} differ); pass --overwrite '
                          'to replace it, or choose another --out')
    if not overwrite:
        raise ConfigError(f'--out: {out} exists and is not a finished conversion; pass --overwrite to replace it')
    if out.is_dir():
        shutil.rmtree(out)
    else:
        out.unlink()
    return False


def convert(inputs: Sequence[str], out: str | Path, tokenizer: str, max_seq_len: int = 128,
            text_column: str = 'text', compression: str | None = None, overwrite: bool = False,
            size_limit: int = 1 << 26, progress: bool = True) -> dict[str, Any]:
    """Convert the JSON-lines files ``inputs`` (paths or globs) into MDS shards in ``out``; returns the record written
    to ``out/conversion.json`` (settings and counts: ``documents``, ``blocks``, ``tokens``, ``dropped_tokens``).

    Raises ConfigError (one line naming the flag) for bad input; see the module docstring.
    """
    from streaming import MDSWriter

    from recipes.data.text.text_streaming import BlockPacker
    from recipes.data.text.tokenizer import load_tokenizer

    if max_seq_len < 3:
        raise ConfigError(f'--max-seq-len: expected an integer >= 3 ([CLS] + a token + [SEP]), got {max_seq_len}')
    files = expand_inputs(inputs)
    tok = load_tokenizer(tokenizer, '--tokenizer')
    out = Path(out)
    settings = _settings(files, tokenizer, len(tok), max_seq_len, text_column, compression)
    if _existing(out, settings, overwrite):
        record = json.loads((out / CONVERSION_FILE).read_text())
        log.info('%s already holds this conversion (%d blocks); nothing to do', out, record['blocks'])
        return record
    partial = out.with_name(out.name + '.partial')
    if partial.exists():
        shutil.rmtree(partial)
    dtype = block_dtype(len(tok))
    packer = BlockPacker(max_seq_len, tok.cls_token_id, tok.sep_token_id, dtype=np.dtype(dtype))
    counts = {'documents': 0, 'blocks': 0}
    start = time.perf_counter()
    bar = _progress(sum(f.stat().st_size for f in files), progress)
    try:
        with MDSWriter(out=str(partial), columns={'input_ids': f'ndarray:{dtype}:{max_seq_len}'},
                       compression=compression, size_limit=size_limit) as writer:
            for texts in _batches(iter_texts(files, text_column), DOCS_PER_BATCH):
                encoded = tok(texts, add_special_tokens=False, return_attention_mask=False,
                              return_token_type_ids=False, verbose=False)['input_ids']
                for block in packer.feed(encoded):
                    writer.write({'input_ids': block})
                    counts['blocks'] += 1
                counts['documents'] += len(texts)
                if bar is not None:
                    bar.update(sum(len(t.encode('utf-8')) for t in texts))
                    bar.set_postfix(blocks=counts['blocks'], refresh=False)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    record = {**settings, **counts, 'tokens': counts['blocks'] * max_seq_len, 'dropped_tokens': packer.pending,
              'dtype': dtype, 'seconds': round(time.perf_counter() - start, 3)}
    (partial / CONVERSION_FILE).write_text(json.dumps(record, indent=1) + '\n')
    partial.replace(out)
    log.info('%s: %d blocks of %d tokens from %d documents in %d files (%.1f s; %d tail tokens dropped)', out,
             counts['blocks'], max_seq_len, counts['documents'], len(files), record['seconds'], packer.pending)
    return record


def _progress(total_bytes: int, enabled: bool) -> Any:
    """A tqdm bar over the input's text bytes (approximately the file sizes), or None."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total_bytes, unit='B', unit_scale=True, desc='text_to_mds', file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit status (2 and one ``error:`` line for bad input)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--input', nargs='+', required=True, metavar='FILE_OR_GLOB',
                        help='JSON-lines files (plain or .gz) or globs of them, read in order')
    parser.add_argument('--out', required=True, help="the split's MDS folder, e.g. data/sotu_mds/train")
    parser.add_argument('--tokenizer', required=True, help='a save_pretrained folder, a tokenizer.json, or a hub name')
    parser.add_argument('--max-seq-len', type=int, default=128, help='block length in tokens (default 128)')
    parser.add_argument('--text-column', default='text', help="the JSON field holding the text (default 'text')")
    parser.add_argument('--compression', default=None, choices=['zstd', 'gz', 'bz2', 'br', 'snappy'],
                        help='shard compression (default none)')
    parser.add_argument('--size-limit', type=int, default=1 << 26, help='shard size limit in bytes (default 64 MiB)')
    parser.add_argument('--overwrite', action='store_true', help='replace a different conversion in --out')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    try:
        convert(args.input, args.out, args.tokenizer, max_seq_len=args.max_seq_len, text_column=args.text_column,
                compression=args.compression, overwrite=args.overwrite, size_limit=args.size_limit,
                progress=not args.no_progress)
    except ConfigError as e:
        sys.stderr.write(f'error: {e}\n')
        return 2
    return 0


if __name__ == '__main__':
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    raise SystemExit(main())
