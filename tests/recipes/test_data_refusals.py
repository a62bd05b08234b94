"""Data that must not start a run: a CIFAR folder whose batch would run code when unpickled, and a loader that
resolves to no example. Both are one ``error:`` line naming the file or loader key, exit 2, before anything is
written (recipes/data/registry.py)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from recipes import train
from recipes.core.errors import ConfigError
from recipes.data.registry import CifarPickle, build_dataloader, check_data, load_cifar_batch
from tests.conftest import REPO, tiny_overrides
from tests.helpers.tiny_data import write_cifar, write_fashion_mnist, write_imagefolder

CIFAR_YAML = REPO / 'yamls' / 'cifar10' / 'convnet.yaml'


class _Touch:
    """Unpickling it calls ``open(marker, 'w')``: it creates a file, the way a crafted batch would run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), 'w')


def crafted_cifar(root: Path, marker: Path, file: str = 'data_batch_1') -> Path:
    """A real-format CIFAR-10 folder whose ``file`` is replaced by a batch that creates ``marker`` when unpickled."""
    write_cifar(root, 'cifar10', n_train=50, n_test=20)
    batch = root / 'cifar-10-batches-py' / file
    entry = pickle.loads(batch.read_bytes())
    entry['batch_label'] = _Touch(marker)
    batch.write_bytes(pickle.dumps(entry, protocol=2))
    return batch


def run_refused(tmp_path: Path, capsys, data: Path, *overrides: str, yaml: Path | None = None) -> str:
    run_dir = tmp_path / 'run'
    argv = [*(['-f', str(yaml)] if yaml else []), *tiny_overrides(data, run_dir), *overrides]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and '\n' not in err, err
    assert not run_dir.exists(), 'a folder was written before the error'
    return err


def test_real_format_cifar_batches_still_load(tmp_path):
    for name in ('cifar10', 'cifar100'):
        written = write_cifar(tmp_path, name, n_train=30, n_test=10)
        train_set = CifarPickle(tmp_path, name, train=True)
        assert train_set.targets == written['train'].tolist() and train_set.data.shape == (30, 32, 32, 3)
        assert len(CifarPickle(tmp_path, name, train=False)) == 10
    # every protocol a re-pickled batch may use (2 as the published Python 2 files; 4; 5 with its _frombuffer)
    batch = tmp_path / 'cifar-10-batches-py' / 'test_batch'
    entry = pickle.loads(batch.read_bytes())
    for protocol in (2, 4, 5):
        batch.write_bytes(pickle.dumps(entry, protocol=protocol))
        again = load_cifar_batch(batch)
        np.testing.assert_array_equal(again['data'], entry['data'])
        assert again['labels'] == entry['labels'] and again['filenames'] == entry['filenames']


@pytest.mark.parametrize('file', ['data_batch_1', 'batches.meta'])
def test_crafted_cifar_batch_runs_nothing_and_names_the_file(tmp_path, capsys, file):
    marker = tmp_path / 'code_ran'
    batch = crafted_cifar(tmp_path / 'data', marker, file)
    pickle.loads(batch.read_bytes())  # the crafted file does run code under plain pickle
    assert marker.exists()
    marker.unlink()
    err = run_refused(tmp_path, capsys, tmp_path / 'data', yaml=CIFAR_YAML)
    assert not marker.exists(), 'unpickling the data folder ran code'
    assert err.startswith(f'error: {batch}: refused: unpickling it would call io.open,'), err


@pytest.mark.parametrize('content', [b'', b'\x80\x02}q\x00(X', b'not a pickle at all'])
def test_truncated_or_foreign_cifar_batch_is_one_error_naming_it(tmp_path, content):
    write_cifar(tmp_path, 'cifar10', n_train=50, n_test=20)
    batch = tmp_path / 'cifar-10-batches-py' / 'test_batch'
    batch.write_bytes(content)
    with pytest.raises(ConfigError, match='test_batch: not a readable CIFAR batch') as e:
        check_data({'dataset': 'cifar10', 'path': str(tmp_path), 'split': 'test'}, 'eval_loader')
    assert '\n' not in str(e.value)


@pytest.mark.parametrize('skip', [64, 100])
def test_skip_past_the_split_is_refused_before_the_run(tmp_path, fmnist_root, capsys, skip):
    err = run_refused(tmp_path, capsys, fmnist_root, f'train_loader.skip={skip}')
    assert err == (f"error: train_loader: no example to load: fashion_mnist split 'train' has 64 examples and skip "
                   f'{skip} leaves 0; train_loader.skip must be below 64'), err


def test_eval_loader_skip_and_per_example_path_are_refused_too(tmp_path, fmnist_root, capsys):
    err = run_refused(tmp_path, capsys, fmnist_root, 'eval_loader.skip=32', 'eval_loader.in_memory=false')
    assert err.startswith("error: eval_loader: no example to load: fashion_mnist split 'test' has 32 examples"), err


def test_empty_split_is_refused(tmp_path, capsys):
    write_fashion_mnist(tmp_path / 'data', n_train=0, n_test=8)
    err = run_refused(tmp_path, capsys, tmp_path / 'data')
    assert err == "error: train_loader: no example to load: fashion_mnist split 'train' has 0 examples", err


@pytest.mark.parametrize('in_memory', [True, False])
def test_loaders_refuse_no_example_and_no_batch_when_built(fmnist_root, in_memory):
    # the same refusals where the loader is built (a caller that skipped check_data, or data that changed since)
    cfg = {'dataset': 'fashion_mnist', 'path': str(fmnist_root), 'split': 'test', 'in_memory': in_memory}
    with pytest.raises(ConfigError, match=r"^eval_loader: no example to load: fashion_mnist split 'test' has 32 "
                                          r'examples and skip 40 leaves 0'):
        build_dataloader({**cfg, 'skip': 40}, 8, 'eval_loader')
    with pytest.raises(ConfigError, match=r'^train_loader: .*no batch of 16 .*drop_last'):
        build_dataloader({**cfg, 'skip': 20, 'drop_last': True}, 16, 'train_loader')
    assert len(build_dataloader({**cfg, 'skip': 20}, 8, 'eval_loader')) == 2  # 12 examples: batches of 8 and 4


def test_skip_and_subset_keep_the_same_examples_as_before(fmnist_root):
    cfg = {'dataset': 'fashion_mnist', 'path': str(fmnist_root), 'split': 'train', 'skip': 10, 'subset': 20,
           'shuffle': False, 'augment': False, 'drop_last': False}
    check_data(cfg, 'train_loader')
    batch = next(iter(build_dataloader(cfg, 64, 'train_loader')))
    assert batch[1].tolist() == [i % 10 for i in range(10, 30)]
    per_example = next(iter(build_dataloader({**cfg, 'in_memory': False}, 64, 'train_loader')))
    assert per_example[1].tolist() == [i % 10 for i in range(10, 30)]


def test_a_loader_refused_when_built_leaves_no_run_folder(tmp_path, fmnist_root, capsys, monkeypatch):
    """Datasets checked only when their loader is built (ImageNet folders, MDS shards, text) fail before the run
    folder exists: the loaders are built before the folder is locked and ``config.yaml`` written."""
    from recipes.core import builders

    def empty(cfg, batch_size, key, **kwargs):
        raise ConfigError(f'{key}: no example to load: imagenet_folder split {cfg["split"]!r} has 0 examples')
    monkeypatch.setattr(builders, 'build_dataloader', empty)
    err = run_refused(tmp_path, capsys, fmnist_root)
    assert err.startswith("error: train_loader: no example to load")
