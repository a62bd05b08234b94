"""The ``glue`` dataset (recipes/data/text/glue_data.py) on small JSON lines in GLUE's format, with a tiny WordPiece tokenizer.

The tiny tokenizer and the GLUE files come from ``tests/helpers/glue_text.py`` (shared with the other GLUE tests): a
20-word vocabulary whose ids the assertions below spell out by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from recipes.data.registry import DATASETS, build_dataloader, resolve_options
from recipes.core.errors import ConfigError
from recipes.data.text.glue_data import GlueCollator, check_loader_config, glue_examples
from tests.helpers.glue_text import CLS, ID, PAD, SEP, write_glue, write_tiny_tokenizer


def ids(text: str) -> list[int]:
    return [ID[w] for w in text.split()]


SST2 = [{'sentence': 'The movie was good', 'label': 1}, {'sentence': 'bad', 'label': 0},
        {'sentence': 'a very dull plot', 'label': 0}]


@pytest.fixture()
def tok(tmp_path: Path) -> str:
    return write_tiny_tokenizer(tmp_path / 'tok')


def loader_cfg(root: Path, tok: str, **extra: Any) -> dict[str, Any]:
    return {'dataset': 'glue', 'task': 'sst2', 'source': 'local', 'path': str(root), 'split': 'validation',
            'tokenizer': tok, 'max_seq_len': 8, **extra}


def test_single_sentences_tokenised_once_and_padded_per_batch(tmp_path, tok):
    write_glue(tmp_path / 'glue', 'sst2', 'validation', SST2)
    assert 'glue' in DATASETS
    loader = build_dataloader(loader_cfg(tmp_path / 'glue', tok), batch_size=2)
    first, second = list(loader)
    # [CLS] the movie was good [SEP] and [CLS] bad [SEP] padded to the longer (6) with [PAD] = 0
    assert first['input_ids'].tolist() == [[CLS, *ids('the movie was good'), SEP], [CLS, ID['bad'], SEP, PAD, PAD, PAD]]
    assert first['attention_mask'].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    assert first['token_type_ids'].tolist() == [[0] * 6] * 2
    assert first['labels'].tolist() == [1, 0] and first['labels'].dtype == torch.long
    assert second['input_ids'].tolist() == [[CLS, *ids('a very dull plot'), SEP]]  # its own length: 6
    # tokenised once per process: a second loader of the same file reuses the examples
    opts = resolve_options(loader_cfg(tmp_path / 'glue', tok))
    assert glue_examples(opts) is glue_examples(opts)


def test_pairs_truncate_the_longer_text_and_carry_token_types(tmp_path, tok):
    rows = [{'sentence1': 'the movie was good and the plot', 'sentence2': 'a film', 'label': 1},
            {'sentence1': 'fun', 'sentence2': 'it is fun', 'label': 0}]
    write_glue(tmp_path / 'glue', 'rte', 'validation', rows)
    batch = next(iter(build_dataloader(loader_cfg(tmp_path / 'glue', tok, task='rte'), batch_size=2)))
    # max_seq_len 8 leaves 5 text tokens; the first text (7) is cut to 3, the second (2) kept
    assert batch['input_ids'].tolist() == [
        [CLS, *ids('the movie was'), SEP, *ids('a film'), SEP],
        [CLS, ID['fun'], SEP, *ids('it is fun'), SEP, PAD]]
    assert batch['token_type_ids'].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 0]]
    assert batch['attention_mask'].tolist() == [[1] * 8, [1] * 7 + [0]]


def test_stsb_labels_are_floats_and_a_changed_file_is_read_again(tmp_path, tok):
    path = write_glue(tmp_path / 'glue', 'stsb', 'train', [
        {'sentence1': 'a film', 'sentence2': 'a movie', 'label': 4.2}, {'sentence1': 'the plot', 'sentence2': 'love',
                                                                        'label': 0}])
    cfg = loader_cfg(tmp_path / 'glue', tok, task='stsb', split='train', shuffle=False, drop_last=False)
    batch = next(iter(build_dataloader(cfg, batch_size=2)))
    assert batch['labels'].dtype == torch.float32 and batch['labels'].tolist() == pytest.approx([4.2, 0.0])
    before = glue_examples(resolve_options(cfg))
    path.write_text(path.read_text() + json.dumps({'sentence1': 'it', 'sentence2': 'it', 'label': 5}) + '\n')
    after = glue_examples(resolve_options(cfg))
    assert after is not before and len(after) == 3


def test_collator_pads_with_the_given_id():
    batch = GlueCollator(pad_id=7)([{'input_ids': [2, 9, 3], 'token_type_ids': [0, 0, 0], 'labels': 1},
                                    {'input_ids': [2, 3], 'token_type_ids': [0, 0], 'labels': 0}])
    assert batch['input_ids'].tolist() == [[2, 9, 3], [2, 3, 7]]
    assert batch['attention_mask'].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_hub_source_goes_through_datasets(tmp_path, tok, monkeypatch):
    """``source: hub`` calls ``datasets.load_dataset('nyu-mll/glue', 'sst2', split=...)``; here that call is served
    by the ``json`` builder on local files, so the same columns come back as a real ``datasets.Dataset``."""
    import datasets

    file = write_glue(tmp_path / 'hub', 'sst2', 'validation', SST2)
    calls = []
    real = datasets.load_dataset

    def offline(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return real('json', data_files=str(file), split='train', cache_dir=str(tmp_path / 'cache'))

    monkeypatch.setattr(datasets, 'load_dataset', offline)
    cfg = loader_cfg(tmp_path / 'unused', tok, source='hub')
    batch = next(iter(build_dataloader(cfg, batch_size=3)))
    assert calls == [('nyu-mll/glue', 'sst2', 'validation')]
    assert batch['input_ids'][0].tolist() == [CLS, *ids('the movie was good'), SEP]
    assert batch['labels'].tolist() == [1, 0, 0]


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert '\n' not in message
    return message


@pytest.mark.parametrize('change, expected', [
    ({'task': 'wnli'}, r"^train_loader.task: unknown GLUE task 'wnli'; allowed: mnli, qqp, qnli, sst2"),
    ({'task': 'mnli'}, r"^train_loader.split: mnli has no split 'validation'; allowed: train, validation_matched"),
    ({'source': 'web'}, r"^train_loader.source: expected one of hub, local, got 'web'$"),
    ({'split': 'train'}, r"^train_loader.path: .* lacks GLUE sst2 data: expected .*sst2/train.jsonl \(the SST-2-style "
                         r"task: `python -m recipes.prepare_data rotten_tomatoes --out data`\)$"),
    ({'max_seq_len': 4}, r'^train_loader.max_seq_len: expected an integer >= 8, got 4$'),
    ({'tokenizer': '/nowhere/tok'}, r'^train_loader.tokenizer: tokenizer path not found: /nowhere/tok'),
])
def test_bad_options_are_one_line_errors(tmp_path, tok, change, expected):
    write_glue(tmp_path / 'glue', 'sst2', 'validation', SST2)
    with pytest.raises(ConfigError, match=expected) as excinfo:
        check_loader_config(loader_cfg(tmp_path / 'glue', tok, **change), 'train_loader')
    one_line(excinfo)


@pytest.mark.parametrize('rows, expected', [
    ([SST2[0], {'text': 'bad', 'label': 0}],
     r"^loader.task: .*validation.jsonl row 2 has no text column 'sentence' \(GLUE sst2 reads sentence, label; the "
     r'row has text, label, idx\)$'),
    ([{'sentence': 'bad'}], r"^loader.task: .*row 1 has no column 'label' \(GLUE sst2\)$"),
    ([{'sentence': 'bad', 'label': 2}], r'^loader.task: .*row 1 has label 2; sst2 expects an integer in \[0, 2\)$'),
])
def test_bad_rows_are_one_line_errors(tmp_path, tok, rows, expected):
    write_glue(tmp_path / 'glue', 'sst2', 'validation', rows)
    with pytest.raises(ConfigError, match=expected) as excinfo:
        build_dataloader(loader_cfg(tmp_path / 'glue', tok), batch_size=2)
    one_line(excinfo)


def test_a_tokenizer_without_cls_and_sep_is_refused(tmp_path):
    bare = write_tiny_tokenizer(tmp_path / 'bare', post_processor=False)
    write_glue(tmp_path / 'glue', 'sst2', 'validation', SST2)
    with pytest.raises(ConfigError, match=r'^eval_loader.tokenizer: .* does not add \[CLS\] ... \[SEP\]') as excinfo:
        check_loader_config(loader_cfg(tmp_path / 'glue', bare), 'eval_loader')
    one_line(excinfo)
