"""In-memory data (recipes/data/tensor_data.py): same pixels as the per-image path, crops and flips as torchvision's,
an epoch's batches a function of (seed, epoch) only, sharding across ranks, and the config rules."""
from __future__ import annotations

import pytest
import torch
from torchvision.transforms import functional as TF

from recipes.data.registry import build_dataloader, resolve_options
from recipes.core.errors import ConfigError
from recipes.data.tensor_data import EpochBatches, InMemoryImages
from tests.helpers.tiny_data import write_cifar

MEAN, STD = (0.2860,), (0.3530,)


def images(n: int = 40, c: int = 1, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=g), torch.arange(n) % 10


def keys(sampler: EpochBatches) -> list[tuple]:
    return [tuple(None if t is None else t.clone() for t in k) for k in sampler]


def same_keys(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        all((s is None and t is None) or (s is not None and t is not None and torch.equal(s, t)) for s, t in zip(p, q))
        for p, q in zip(a, b))


def test_eval_batches_equal_the_per_image_path(fmnist_root) -> None:
    cfg = {'dataset': 'fashion_mnist', 'path': str(fmnist_root), 'split': 'test'}
    fast = list(build_dataloader(cfg, batch_size=10))
    slow = list(build_dataloader({**cfg, 'in_memory': False}, batch_size=10))
    assert [len(b[1]) for b in fast] == [10, 10, 10, 2]
    torch.testing.assert_close(torch.cat([b[0] for b in fast]), torch.cat([b[0] for b in slow]), rtol=0, atol=1e-6)
    assert torch.equal(torch.cat([b[1] for b in fast]), torch.cat([b[1] for b in slow]))
    assert fast[0][0].is_contiguous(memory_format=torch.channels_last)


def test_cifar_in_memory_equals_per_image_path(tmp_path) -> None:
    write_cifar(tmp_path, 'cifar10', n_train=20, n_test=12)
    cfg = {'dataset': 'cifar10', 'path': str(tmp_path), 'split': 'test'}
    fast, slow = (torch.cat([b[0] for b in build_dataloader({**cfg, 'in_memory': m}, 5)]) for m in (True, False))
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5)


def test_crop_and_flip_match_torchvision() -> None:
    x, y = images(6)
    ds = InMemoryImages(x, y, MEAN, STD, pad=2)
    idx = torch.tensor([3, 0, 5, 1])
    dy, dx, flip = torch.tensor([0, 4, 2, 1]), torch.tensor([4, 0, 2, 3]), torch.tensor([True, False, True, False])
    got, labels = ds[(idx, dy, dx, flip)]
    for row, (i, a, b, f) in enumerate(zip(idx.tolist(), dy.tolist(), dx.tolist(), flip.tolist())):
        ref = TF.crop(TF.pad(x[i], [2]), a, b, 28, 28)  # RandomCrop(28, padding=2) at offset (a, b): zero padding
        ref = TF.hflip(ref) if f else ref
        expected = (ref.float() / 255 - MEAN[0]) / STD[0]
        torch.testing.assert_close(got[row], expected, rtol=0, atol=1e-5)
    assert labels.tolist() == y[idx].tolist()
    plain, _ = ds[(idx, None, None, None)]
    torch.testing.assert_close(plain, (x[idx].float() / 255 - MEAN[0]) / STD[0], rtol=0, atol=1e-5)


def test_an_epoch_depends_on_seed_and_epoch_only() -> None:
    x, y = images(40)
    ds = InMemoryImages(x, y, MEAN, STD, pad=2)
    sampler = EpochBatches(ds, 8, shuffle=True, augment=True, drop_last=True, seed=3)
    sampler.set_epoch(1)
    first = keys(sampler)
    torch.manual_seed(123)  # the global stream is not read
    torch.rand(100)
    sampler.set_epoch(0)
    other_epoch = keys(sampler)
    sampler.set_epoch(1)
    assert same_keys(keys(sampler), first)
    assert not same_keys(other_epoch, first)
    fresh = EpochBatches(ds, 8, shuffle=True, augment=True, drop_last=True, seed=4)
    fresh.set_epoch(1)
    assert not same_keys(keys(fresh), first)
    order = torch.cat([k[0] for k in first])
    assert sorted(order.tolist()) == list(range(40)) and order.tolist() != list(range(40))
    assert all(((k[1] >= 0) & (k[1] <= 4)).all() and ((k[2] >= 0) & (k[2] <= 4)).all() for k in first)
    flips = torch.cat([k[3] for k in first]).float().mean().item()
    assert 0.2 < flips < 0.8


def test_drop_last_and_ranks_partition_each_global_batch() -> None:
    x, y = images(43)
    ds = InMemoryImages(x, y, MEAN, STD)
    one = EpochBatches(ds, 8, shuffle=True, augment=False, drop_last=True, seed=0)
    assert len(one) == 5 and [len(k[0]) for k in one] == [8] * 5
    ranks = [EpochBatches(ds, 4, shuffle=True, augment=False, drop_last=True, seed=0, world=2, rank=r)
             for r in (0, 1)]
    assert [len(r) for r in ranks] == [5, 5]
    for whole, a, b in zip(one, *ranks):  # each global batch of 8 split between the two ranks
        assert sorted(torch.cat([a[0], b[0]]).tolist()) == sorted(whole[0].tolist())
    tail = EpochBatches(ds, 8, shuffle=False, augment=False, drop_last=False)
    assert [len(k[0]) for k in tail] == [8] * 5 + [3] and len(tail) == 6
    evals = [EpochBatches(ds, 8, shuffle=False, augment=False, drop_last=False, world=2, rank=r) for r in (0, 1)]
    per_rank = [torch.cat([k[0] for k in e]).tolist() for e in evals]
    assert [len(p) for p in per_rank] == [22, 22] and [len(e) for e in evals] == [3, 3]  # equal work per rank
    # padded as DistributedSampler (total_size 44): example 0 again, last on the last rank, where Composer drops it
    assert evals[1].total_size == 44 and per_rank[1][-1] == 0
    assert sorted(per_rank[0] + per_rank[1][:-1]) == list(range(43))


def test_no_example_or_no_batch_is_refused() -> None:
    # an epoch without a batch would let a run step through empty epochs forever
    x, y = images(0)
    with pytest.raises(ValueError, match='no example to serve'):
        EpochBatches(InMemoryImages(x, y, MEAN, STD), 8, shuffle=True, augment=False, drop_last=False)
    few = InMemoryImages(*images(15), MEAN, STD)
    with pytest.raises(ValueError, match='15 examples make no batch of 8 per rank x 2 ranks with drop_last'):
        EpochBatches(few, 8, shuffle=True, augment=False, drop_last=True, world=2)
    assert len(EpochBatches(few, 8, shuffle=True, augment=False, drop_last=False, world=2)) == 1


def test_subset_downsample_and_indices_select_the_same_examples(fmnist_root) -> None:
    cfg = {'dataset': 'fashion_mnist', 'path': str(fmnist_root), 'shuffle': False, 'augment': False,
           'subset': 50, 'downsample': {1: 0.5, 2: 0.2}, 'downsample_seed': 7, 'drop_last': False}
    fast = list(build_dataloader(cfg, batch_size=64))
    slow = list(build_dataloader({**cfg, 'in_memory': False}, batch_size=64))
    assert torch.equal(fast[0][1], slow[0][1]) and len(fast[0][1]) == 50 - 3 - 4  # 5 per class: keep round(2.5) = 2 and 1
    with_index = list(build_dataloader({**cfg, 'indices': True}, batch_size=64))[0]
    assert with_index[2].tolist() == list(range(len(fast[0][1])))


def test_skip_carves_the_same_held_out_examples_in_both_paths(fmnist_root) -> None:
    """train_loader.subset=40 and eval_loader {split: train, skip: 40}: a validation split of the last 24 training
    images, disjoint from the 40 trained on, the same in memory and per image."""
    cfg = {'dataset': 'fashion_mnist', 'path': str(fmnist_root), 'shuffle': False, 'augment': False,
           'drop_last': False}
    whole = list(build_dataloader(cfg, batch_size=64))[0]
    held = [list(build_dataloader({**cfg, 'skip': 40, 'in_memory': m}, batch_size=64))[0] for m in (True, False)]
    trained = list(build_dataloader({**cfg, 'subset': 40}, batch_size=64))[0]
    for x, y in held:
        assert torch.equal(y, whole[1][40:]) and torch.allclose(x, whole[0][40:], atol=1e-6)
    assert torch.equal(torch.cat([trained[1], held[0][1]]), whole[1])
    with pytest.raises(ConfigError, match=r'loader\.skip: expected an integer >= 0'):
        resolve_options({**cfg, 'skip': -1})


def test_workers_with_in_memory_data_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r'train_loader\.num_workers: in-memory data .* train_loader\.in_memory: false'):
        resolve_options({'dataset': 'fashion_mnist', 'num_workers': 2}, 'train_loader')
    assert resolve_options({'dataset': 'fashion_mnist', 'num_workers': 2, 'in_memory': False})['num_workers'] == 2
    assert resolve_options({'dataset': 'cifar100'})['in_memory'] is True


@pytest.mark.parametrize('in_memory', [True, False])
def test_the_run_seed_sets_the_training_order(fmnist_root, in_memory) -> None:
    """Both paths draw the order from the run's seed (Composer's default sampler seed is 0 for every run)."""
    cfg = {'dataset': 'fashion_mnist', 'path': str(fmnist_root), 'in_memory': in_memory}
    labels = {s: [b[1].tolist() for b in build_dataloader(cfg, 16, seed=s)] for s in (0, 1)}
    assert labels[0] != labels[1]
    assert labels[0] == [b[1].tolist() for b in build_dataloader(cfg, 16, seed=0)]


def test_blockwise_tensor_batches_crop_each_image_from_its_padding():
    """The blockwise cache's batches (normalised floats, padded with the images' minimum): every augmented image is
    its original shifted by the drawn offsets, the border filled with that minimum, mirrored where the flip says."""
    from recipes.blockwise import TensorBatches

    x = torch.randn(6, 2, 5, 5)
    batches = TensorBatches(x, torch.arange(6), batch_size=6, shuffle=True, pad=2, flip=True)
    torch.manual_seed(3)
    (got, y), = list(batches)
    torch.manual_seed(3)  # replay the draws: order, offsets, flips
    order = torch.randperm(6)
    dy, dx = torch.randint(0, 5, (6,)), torch.randint(0, 5, (6,))
    flip = torch.rand(6) < 0.5
    padded = torch.nn.functional.pad(x, [2] * 4, value=float(x.min()))
    for i, j in enumerate(order.tolist()):
        want = padded[j, :, dy[i]:dy[i] + 5, dx[i]:dx[i] + 5]
        assert torch.equal(got[i], want.flip(-1) if flip[i] else want) and y[i] == j
