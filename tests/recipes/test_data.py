"""Data loaders on tiny real-format data, the config checks, and the Fashion-MNIST preparation script."""
from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from recipes import prepare_data
from recipes.core.schema import option_names
from recipes.data.registry import DATASETS, build_dataloader, check_data, resolve_options
from recipes.core.errors import ConfigError
from tests.helpers.tiny_data import images_for, write_cifar, write_fashion_mnist, write_imagefolder, write_mds

FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530


def collect(loader) -> tuple[torch.Tensor, torch.Tensor]:
    """All batches of ``loader`` concatenated."""
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture(scope='module')
def fmnist(tmp_path_factory) -> tuple[str, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp('fmnist')
    return str(root), write_fashion_mnist(root, n_train=64, n_test=32)


def test_fashion_mnist_eval_reads_what_was_written(fmnist) -> None:
    root, written = fmnist
    for split in ('test', 'val'):
        x, y = collect(build_dataloader({'dataset': 'fashion_mnist', 'path': root, 'split': split}, batch_size=10))
        assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert y.tolist() == written['test'].tolist()
        pixels = images_for(written['test'], 10, (28, 28), seed=32) / 255.0
        expected = (pixels - FMNIST_MEAN) / FMNIST_STD
        np.testing.assert_allclose(x[:, 0].numpy(), expected, atol=1e-5)


def test_fashion_mnist_train_batches_are_shuffled_normalized_and_complete(fmnist) -> None:
    root, written = fmnist
    loader = build_dataloader({'dataset': 'fashion_mnist', 'path': root}, batch_size=16)
    assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)  # distributed-aware, one rank here
    x, y = collect(loader)
    assert x.shape == (64, 1, 28, 28)
    assert sorted(y.tolist()) == sorted(written['train'].tolist())
    assert y.tolist() != written['train'].tolist()  # shuffled (64! orders; a fixed seed)
    # Normalized: every value lies in the image of [0, 1], and augmentation off gives the exact eval pixels.
    assert x.min() >= (0 - FMNIST_MEAN) / FMNIST_STD - 1e-5 and x.max() <= (1 - FMNIST_MEAN) / FMNIST_STD + 1e-5
    assert abs(x.mean().item()) < 1.5 and 0.2 < x.std().item() < 3
    plain = build_dataloader({'dataset': 'fashion_mnist', 'path': root, 'augment': False, 'shuffle': False}, 64)
    x0, y0 = collect(plain)
    pixels = images_for(written['train'], 10, (28, 28), seed=64) / 255.0
    np.testing.assert_allclose(x0[:, 0].numpy(), (pixels - FMNIST_MEAN) / FMNIST_STD, atol=1e-5)
    augmented, _ = collect(build_dataloader({'dataset': 'fashion_mnist', 'path': root, 'shuffle': False}, 64))
    assert augmented.shape == x0.shape and not torch.equal(augmented, x0)  # random crops and flips were applied


def test_subset_and_drop_last(fmnist) -> None:
    root, _ = fmnist
    cfg = {'dataset': 'fashion_mnist', 'path': root, 'split': 'test', 'subset': 10}
    assert [len(b[1]) for b in build_dataloader(cfg, 4)] == [4, 4, 2]
    assert [len(b[1]) for b in build_dataloader({**cfg, 'drop_last': True}, 4)] == [4, 4]


@pytest.mark.parametrize('name', ['cifar10', 'cifar100'])
def test_cifar_reads_pickled_batches(tmp_path: Path, name: str) -> None:
    written = write_cifar(tmp_path, name, n_train=50, n_test=20)
    cfg = {'dataset': name, 'path': str(tmp_path), 'split': 'test'}
    check_data(cfg, 'eval_loader')
    x, y = collect(build_dataloader(cfg, batch_size=8))
    assert x.shape == (20, 3, 32, 32) and y.tolist() == written['test'].tolist()
    # Channel 0 undone from normalization equals the R plane that was written.
    mean, std = (0.4914, 0.2470) if name == 'cifar10' else (0.5071, 0.2675)
    red = images_for(written['test'], 10 if name == 'cifar10' else 100, (3, 32, 32), seed=0)[:, 0] / 255.0
    np.testing.assert_allclose(x[:, 0].numpy() * std + mean, red, atol=1e-4)
    x, y = collect(build_dataloader({**cfg, 'split': 'train', 'drop_last': False}, batch_size=8))
    assert x.shape == (50, 3, 32, 32) and sorted(y.tolist()) == sorted(written['train'].tolist())


def test_imagenet_folder(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, n_per_class=3, classes=['dog', 'cat'], size=40, split='train')
    written = write_imagefolder(tmp_path, n_per_class=2, classes=['dog', 'cat'], size=40, split='val')
    cfg = {'dataset': 'imagenet_folder', 'path': str(tmp_path), 'split': 'val', 'image_size': 32}
    check_data(cfg, 'eval_loader')
    x, y = collect(build_dataloader(cfg, batch_size=3))
    assert x.shape == (4, 3, 32, 32) and y.tolist() == written['val'].tolist() == [0, 0, 1, 1]  # cat < dog
    assert x[y == 1].mean() > x[y == 0].mean()  # the brightness signal survives the transform
    x, y = collect(build_dataloader({**cfg, 'split': 'train'}, batch_size=3))
    assert x.shape == (6, 3, 32, 32) and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]


def test_imagenet_mds(tmp_path: Path) -> None:
    write_mds(tmp_path, 'train', n=12, size=40)
    written = write_mds(tmp_path, 'val', n=8, size=40)
    cfg = {'dataset': 'imagenet_mds', 'path': str(tmp_path), 'split': 'val', 'image_size': 32}
    check_data(cfg, 'eval_loader')
    x, y = collect(build_dataloader(cfg, batch_size=4))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == written['val'].tolist()
    x, y = collect(build_dataloader({**cfg, 'split': 'train'}, batch_size=4))
    assert x.shape == (12, 3, 32, 32) and sorted(y.tolist()) == [0] * 6 + [1] * 6


def test_defaults_follow_the_split() -> None:
    train = resolve_options({'dataset': 'cifar10'})
    assert train['augment'] and train['shuffle'] and train['drop_last'] and train['path'] == 'data'
    test = resolve_options({'dataset': 'cifar10', 'split': 'test'})
    assert not (test['augment'] or test['shuffle'] or test['drop_last'])
    assert set(option_names(DATASETS['imagenet_mds'].options)) - set(option_names(DATASETS['cifar10'].options)) \
        == {'image_size'}


@pytest.mark.parametrize('cfg, pattern', [
    ({'dataset': ['cifar10']}, r'train_loader\.dataset: unknown dataset'),
    ({'dataset': 'mnist'}, r"train_loader\.dataset: unknown dataset 'mnist'; allowed: fashion_mnist, cifar10"),
    ({'dataset': 'cifar10', 'foo': 1},
     r"unknown key 'train_loader\.foo'; allowed: .*num_workers.* \(dataset 'cifar10'\)"),
    ({'dataset': 'cifar10', 'num_workers': '2'}, r"train_loader\.num_workers: expected int, got str '2'"),
    ({'dataset': 'cifar10', 'num_workers': True}, r'train_loader\.num_workers: expected int, got bool True'),
    ({'dataset': 'cifar10', 'augment': 1}, r'train_loader\.augment: expected bool or null, got int 1'),
    ({'dataset': 'cifar10', 'subset': 0}, r'train_loader\.subset: expected an integer >= 1, got 0'),
    ({'dataset': 'cifar10', 'split': 'validation'}, r"train_loader\.split: unknown split 'validation'"),
    ({'dataset': 'imagenet_folder', 'split': 'test'}, r"missing required key 'train_loader\.path' \(dataset 'imagenet"),
    ({'dataset': 'imagenet_folder', 'path': 'x', 'split': 'test'}, r"train_loader\.split: .*allowed: train, val"),
])
def test_check_data_errors(cfg: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        check_data(cfg, 'train_loader')
    assert '\n' not in str(info.value)


def test_check_data_missing_path(tmp_path: Path) -> None:
    cfg = {'dataset': 'fashion_mnist', 'path': str(tmp_path / 'nowhere')}
    with pytest.raises(ConfigError, match=r'train_loader\.path: .*FashionMNIST/raw/train-images-idx3-ubyte.*make data'):
        check_data(cfg, 'train_loader')
    check_data({**cfg, 'download': True}, 'train_loader')  # download: the path may be empty
    with pytest.raises(ConfigError, match=r'eval_loader\.path: .*cifar-100-python/test'):
        check_data({'dataset': 'cifar100', 'path': str(tmp_path), 'split': 'test'}, 'eval_loader')
    with pytest.raises(ConfigError, match=r'eval_loader\.path: .*val/index\.json'):
        check_data({'dataset': 'imagenet_mds', 'path': str(tmp_path), 'split': 'val'}, 'eval_loader')


def _gzipped_source(tmp_path: Path) -> Path:
    """A folder laid out like Debian's /usr/share/datasets/fashion-mnist, holding tiny data."""
    write_fashion_mnist(tmp_path / 'tiny', n_train=20, n_test=10)
    source = tmp_path / 'source'
    source.mkdir()
    for file in (tmp_path / 'tiny' / 'FashionMNIST' / 'raw').iterdir():
        (source / f'{file.name}.gz').write_bytes(gzip.compress(file.read_bytes()))
    return source


def test_prepare_fashion_mnist_is_read_by_torchvision(tmp_path: Path, caplog) -> None:
    from torchvision.datasets import FashionMNIST

    source, out = _gzipped_source(tmp_path), tmp_path / 'data'
    assert prepare_data.main(['fashion_mnist', '--out', str(out), '--source', str(source)]) == 0
    train, test = FashionMNIST(str(out), train=True), FashionMNIST(str(out), train=False)
    assert len(train) == 20 and len(test) == 10 and train.targets.tolist() == [i % 10 for i in range(20)]
    check_data({'dataset': 'fashion_mnist', 'path': str(out)}, 'train_loader')
    # Idempotent: a second run rewrites nothing.
    file = out / 'FashionMNIST' / 'raw' / 'train-images-idx3-ubyte'
    os.utime(file, (1, 1))
    with caplog.at_level(logging.INFO, logger='recipes.prepare_data'):
        prepare_data.prepare_fashion_mnist(out, source)
    assert file.stat().st_mtime == 1 and 'already' in caplog.text


def test_prepare_fashion_mnist_without_source_or_network(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError('no network')

    monkeypatch.setattr(torchvision.datasets, 'FashionMNIST', offline)
    with pytest.raises(RuntimeError, match='apt-get install dataset-fashion-mnist'):
        prepare_data.prepare_fashion_mnist(tmp_path / 'data', tmp_path / 'empty')


def _prepare_refused(capsys, *argv: str) -> str:
    """``python -m recipes.prepare_data ...`` that must fail: exit 2 and one ``error:`` line, returned."""
    assert prepare_data.main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and '\n' not in err, err
    return err


@pytest.mark.parametrize('corrupt', ['not gzip', 'truncated'])
def test_prepare_fashion_mnist_from_a_corrupt_gz_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys,
                                                                                          corrupt) -> None:
    source, out = _gzipped_source(tmp_path), tmp_path / 'data'
    bad = source / 't10k-images-idx3-ubyte.gz'
    bad.write_bytes(b'this is not gzip data' if corrupt == 'not gzip' else bad.read_bytes()[:40])
    err = _prepare_refused(capsys, 'fashion_mnist', '--out', str(out), '--source', str(source))
    assert err.startswith(f'error: fashion_mnist: {bad}: cannot read it ('), err
    raw = out / 'FashionMNIST' / 'raw'
    assert not list(raw.glob('*.tmp')), 'a temporary file was left behind'
    assert not (raw / 't10k-images-idx3-ubyte').exists()  # no half-written file under the real name either
    bad.write_bytes(gzip.compress((tmp_path / 'tiny' / 'FashionMNIST' / 'raw' / 't10k-images-idx3-ubyte').read_bytes()))
    assert prepare_data.main(['fashion_mnist', '--out', str(out), '--source', str(source)]) == 0  # rerun completes
    check_data({'dataset': 'fashion_mnist', 'path': str(out), 'split': 'test'}, 'eval_loader')


@pytest.mark.parametrize('dataset', ['sotu', 'rotten_tomatoes'])
@pytest.mark.parametrize('content', [b'', b'not an archive', gzip.compress(b'a gzip, but no tar inside', mtime=0)],
                         ids=['empty', 'not an archive', 'gzip without a tar'])
def test_prepare_text_from_a_corrupt_archive_is_one_line_naming_it(tmp_path, capsys, dataset, content) -> None:
    archive = tmp_path / 'archive.tgz'
    archive.write_bytes(content)
    err = _prepare_refused(capsys, dataset, '--out', str(tmp_path / 'data'), '--source', str(archive))
    assert err.startswith(f'error: {dataset}: {archive}: cannot read it ('), err
    assert not [f for f in (tmp_path / 'data').rglob('*') if f.is_file()], 'a file was written'


def test_prepare_fashion_mnist_on_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys,
                                                                                      monkeypatch) -> None:
    import errno
    import shutil

    def full_disk(fin, fout):
        fout.write(fin.read(100))
        raise OSError(errno.ENOSPC, 'No space left on device')

    source, out = _gzipped_source(tmp_path), tmp_path / 'data'
    monkeypatch.setattr(shutil, 'copyfileobj', full_disk)
    err = _prepare_refused(capsys, 'fashion_mnist', '--out', str(out), '--source', str(source))
    assert err == 'error: [Errno 28] No space left on device', err  # the disk's fault, not the source's
    assert not [f for f in out.rglob('*') if f.is_file()], 'a file was left behind'


def test_written_removes_its_temporary_file_when_writing_fails(tmp_path) -> None:
    from recipes.data.prepared_files import written

    target = tmp_path / 'file.bin'
    with pytest.raises(KeyboardInterrupt):
        with written(target) as tmp:
            tmp.write_bytes(b'half')
            raise KeyboardInterrupt
    assert not target.exists() and not list(tmp_path.iterdir())
    with written(target) as tmp:
        tmp.write_bytes(b'whole')
    assert target.read_bytes() == b'whole' and list(tmp_path.iterdir()) == [target]
