"""Biased (down-sampled) training sets and sample indices (recipes/data/biased_data.py, recipes/data/registry.py options
``downsample``, ``downsample_seed``, ``indices``) and the checks that guard them (recipes/core/builders.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset

from recipes import train
from recipes.data.biased_data import BIASED_CIFAR100, BIASED_FASHION_MNIST, PRESETS, Downsampled, WithIndex
from recipes.core.builders import check_sample_indices
from recipes.data.registry import build_dataloader, check_data, resolve_options
from recipes.core.errors import ConfigError
from tests.conftest import tiny_overrides
from tests.helpers.tiny_data import write_fashion_mnist

# 30 examples of classes 0, 1, 2 each (interleaved), then 4 of class 3
LABELS = [i % 3 for i in range(90)] + [3] * 4


class Labelled(Dataset):
    """Item i is (i, label i): the item says which original example it is."""

    def __init__(self, labels: list[int]):
        self.targets = list(labels)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return i, self.targets[i]


FRACTIONS = {0: 0.1, 1: 0.5, 3: 0.1}


def test_downsampled_keeps_the_stated_fraction_of_listed_classes_and_all_of_the_rest():
    base = Labelled(LABELS)
    ds = Downsampled(base, FRACTIONS, seed=0)
    # class 0: round(0.1 * 30) = 3; class 1: round(0.5 * 30) = 15; class 2: all 30; class 3: round(0.4) = 0 -> 1
    assert ds.kept_per_class == {0: 3, 1: 15, 2: 30, 3: 1}
    assert ds.original_per_class == {0: 30, 1: 30, 2: 30, 3: 4}
    assert len(ds) == 49
    items = [ds[k] for k in range(len(ds))]
    originals = [i for i, _ in items]
    assert originals == sorted(originals) == list(ds.indices)  # the original order
    assert Counter(y for _, y in items) == Counter({0: 3, 1: 15, 2: 30, 3: 1})
    assert all(LABELS[i] == y for i, y in items)
    assert [i for i in originals if LABELS[i] == 2] == [i for i in range(90) if i % 3 == 2]  # class 2 whole
    assert list(ds.targets) == [y for _, y in items]


def test_the_seed_chooses_which_examples_are_kept():
    base = Labelled(LABELS)
    a, b, other = (Downsampled(base, FRACTIONS, seed=s) for s in (0, 0, 1))
    assert list(a.indices) == list(b.indices)
    assert list(a.indices) != list(other.indices)
    assert other.kept_per_class == a.kept_per_class  # the same counts, other examples
    class1 = [i for i in a.indices if LABELS[i] == 1]
    assert class1 != [i for i in range(90) if i % 3 == 1][:15]  # not simply the first 15: a seeded choice
    # a Subset's labels are read through it (the loader down-samples after `subset`)
    sub = Downsampled(Subset(base, range(60)), {0: 0.5}, seed=0)  # classes 0, 1, 2 with 20 each; 0 -> 10
    assert sub.kept_per_class == {0: 10, 1: 20, 2: 20}
    assert all(sub[k][1] == sub.targets[k] for k in range(len(sub)))


def test_with_index_appends_the_sample_index():
    ds = WithIndex(Labelled([2, 0, 1]))
    assert len(ds) == 3 and [ds[i] for i in range(3)] == [(0, 2, 0), (1, 0, 1), (2, 1, 2)]
    assert ds.targets == [2, 0, 1]


# CIFAR-100 fine labels in the order of the published meta file (alphabetical): the seed's 15 classes
CIFAR100_INDEX = {'apple': 0, 'bicycle': 8, 'butterfly': 14, 'can': 16, 'crocodile': 27, 'dinosaur': 29,
                  'elephant': 31, 'flatfish': 32, 'maple_tree': 47, 'oak_tree': 52, 'orange': 53, 'palm_tree': 56,
                  'raccoon': 66, 'shrew': 74, 'train': 90}


def test_biased_cifar100_is_the_seeds_fifteen_classes():
    by_name = {
        0.1: ('apple', 'bicycle', 'crocodile', 'maple_tree', 'shrew'),
        0.2: ('butterfly', 'can', 'oak_tree', 'palm_tree', 'train'),
        0.5: ('dinosaur', 'elephant', 'flatfish', 'orange', 'raccoon'),
    }
    expected = {CIFAR100_INDEX[n]: f for f, names in by_name.items() for n in names}
    assert BIASED_CIFAR100 == expected
    assert BIASED_CIFAR100 == {0: 0.1, 8: 0.1, 27: 0.1, 47: 0.1, 74: 0.1, 14: 0.2, 16: 0.2, 52: 0.2, 56: 0.2,
                               90: 0.2, 29: 0.5, 31: 0.5, 32: 0.5, 53: 0.5, 66: 0.5}
    assert BIASED_FASHION_MNIST == {6: 0.1, 2: 0.2, 4: 0.5}
    assert PRESETS == {'biased_cifar100': BIASED_CIFAR100, 'biased_fashion_mnist': BIASED_FASHION_MNIST}
    assert resolve_options({'dataset': 'cifar100', 'downsample': 'biased_cifar100'})['downsample'] == expected


@pytest.fixture(scope='module')
def fm200(tmp_path_factory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp('fm200')
    labels = write_fashion_mnist(root, n_train=200, n_test=10)['train']  # i % 10: 20 of each class
    return root, labels


def loader_cfg(root: Path, **extra) -> dict:
    """The per-image path, whose dataset objects these tests inspect (tests/recipes/test_tensor_data.py checks that the
    in-memory path selects the same examples)."""
    return {'dataset': 'fashion_mnist', 'path': str(root), 'num_workers': 0, 'augment': False, 'drop_last': False,
            'in_memory': False, **extra}


def test_the_loader_yields_exactly_the_stated_fractions(fm200):
    root, _ = fm200
    loader = build_dataloader(loader_cfg(root, downsample={6: 0.1, 2: 0.5}), batch_size=32, key='train_loader')
    counts = Counter(int(y) for _, ys in loader for y in ys)
    # class 6: round(0.1 * 20) = 2; class 2: round(0.5 * 20) = 10; the other 8 classes: 20 each
    assert counts == Counter({6: 2, 2: 10, **{c: 20 for c in (0, 1, 3, 4, 5, 7, 8, 9)}})
    preset = build_dataloader(loader_cfg(root, downsample='biased_fashion_mnist'), batch_size=64)
    counts = Counter(int(y) for _, ys in preset for y in ys)
    assert (counts[6], counts[2], counts[4], counts[0]) == (2, 4, 10, 20)  # 10%, 20%, 50% of 20


def test_downsample_seed_in_the_loader_config(fm200):
    root, labels = fm200

    def kept(**extra) -> list[int]:
        ds = build_dataloader(loader_cfg(root, downsample={1: 0.25}, **extra), batch_size=8).dataset
        assert isinstance(ds, Downsampled) and ds.kept_per_class[1] == 5
        return list(ds.indices)

    assert kept() == kept(downsample_seed=0) != kept(downsample_seed=3)


def test_indices_cover_the_epoch_and_point_at_the_right_example(fm200):
    root, labels = fm200
    loader = build_dataloader(loader_cfg(root, downsample={6: 0.1, 2: 0.5}, indices=True, shuffle=True),
                              batch_size=32)
    dataset = loader.dataset
    assert isinstance(dataset, WithIndex) and len(dataset) == 172  # 8 * 20 + 2 + 10
    seen: list[int] = []
    for batch in loader:
        assert len(batch) == 3
        x, y, index = batch
        assert x.shape[1:] == (1, 28, 28) and index.dtype == torch.int64
        seen += index.tolist()
        for i, label in zip(index.tolist(), y.tolist()):
            assert dataset[i][1] == label and dataset[i][2] == i
            assert labels[dataset.dataset.indices[i]] == label  # back to the example's place in the file
    assert sorted(seen) == list(range(172)) and seen != sorted(seen)  # a shuffled permutation of the epoch


@pytest.mark.parametrize('value, expected', [
    ('biased_mnist', "train_loader.downsample: unknown preset 'biased_mnist'"),
    ({6: 0}, 'train_loader.downsample.6: the fraction kept must be in (0, 1], got 0'),
    ({6: 1.5}, 'train_loader.downsample.6: the fraction kept must be in (0, 1], got 1.5'),
    ({6: True}, 'train_loader.downsample.6'),
    ({12: 0.5}, 'train_loader.downsample: class 12 is outside [0, 10)'),
    ({-1: 0.5}, 'train_loader.downsample: class -1'),
    ({'shirt': 0.5}, "train_loader.downsample: class 'shirt' is not an integer class index"),
    ({}, 'train_loader.downsample: expected a preset name or a non-empty mapping'),
    ([6, 0.1], 'train_loader.downsample: expected'),
])
def test_bad_downsample_is_a_config_error_naming_the_key(value, expected):
    with pytest.raises(ConfigError) as e:
        resolve_options({'dataset': 'fashion_mnist', 'downsample': value}, 'train_loader')
    assert str(e.value).startswith(expected), str(e.value)
    assert '\n' not in str(e.value)


def test_check_data_refuses_a_class_the_dataset_lacks(fm200):
    root, _ = fm200
    check_data(loader_cfg(root, downsample={9: 1}), 'train_loader')  # fraction 1 and the last class: fine
    with pytest.raises(ConfigError, match=r'^train_loader\.downsample: class 10 is outside \[0, 10\)'):
        check_data(loader_cfg(root, downsample={10: 0.5}), 'train_loader')
    assert resolve_options({'dataset': 'cifar100', 'downsample': {99: 0.5}})['downsample'] == {99: 0.5}
    with pytest.raises(ConfigError, match=r'class 100 is outside \[0, 100\)'):
        resolve_options({'dataset': 'cifar100', 'downsample': {100: 0.5}})


def run_cfg(train_indices: bool = False, eval_indices: bool = False) -> dict:
    return {'train_loader': {'dataset': 'fashion_mnist', 'indices': train_indices},
            'eval_loader': {'dataset': 'fashion_mnist', 'split': 'test', 'indices': eval_indices}}


CRD_LIKE = SimpleNamespace(needs_sample_indices=True)
PLAIN = SimpleNamespace()


def test_sample_indices_exactly_when_an_algorithm_reads_them():
    check_sample_indices(run_cfg(), [PLAIN])
    check_sample_indices(run_cfg(train_indices=True), [PLAIN, CRD_LIKE])
    check_sample_indices({'train_loader': {'dataset': 'fashion_mnist'}, 'eval_loader': None}, [])
    with pytest.raises(ConfigError, match=r'^train_loader\.indices: true, but no algorithm reads sample indices'):
        check_sample_indices(run_cfg(train_indices=True), [PLAIN])
    with pytest.raises(ConfigError, match=r'^algorithms \(SimpleNamespace\): .*set train_loader\.indices: true'):
        check_sample_indices(run_cfg(), [PLAIN, CRD_LIKE])
    with pytest.raises(ConfigError, match=r'^eval_loader\.indices'):
        check_sample_indices(run_cfg(train_indices=True, eval_indices=True), [CRD_LIKE])


@pytest.mark.parametrize('override, expected', [
    ('train_loader.indices=true', 'error: train_loader.indices: true, but no algorithm reads sample indices'),
    ('eval_loader.indices=true', 'error: eval_loader.indices: evaluation takes (x, y) batches'),
    ('train_loader.downsample.6=0', 'error: train_loader.downsample.6: the fraction kept must be in (0, 1]'),
    ('train_loader.downsample=biased_mnist', "error: train_loader.downsample: unknown preset 'biased_mnist'"),
])
def test_through_the_training_script_one_line_and_nothing_written(override, expected, fmnist_root, tmp_path, capsys):
    run_dir = tmp_path / 'run'
    assert train.main([*tiny_overrides(fmnist_root, run_dir), override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(expected) and '\n' not in err, err
    assert not run_dir.exists()
