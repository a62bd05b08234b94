"""Datasets and dataloaders by name, from a flat loader config such as ``train_loader`` in a recipe YAML.

    train_loader:
      dataset: fashion_mnist   # fashion_mnist | cifar10 | cifar100 | imagenet_folder | imagenet_mds
      path: data               # the folder `python -m recipes.prepare_data` (`make data`) fills
      split: train

``check_data`` validates such a config without reading data; ``build_dataloader`` builds a distributed-aware
``DataLoader`` (``batch_size`` is per rank). The option keys, their types and defaults are in ``DATASET_OPTIONS``.

CIFAR is read by ``CifarPickle`` (below), not by torchvision's ``CIFAR10``/``CIFAR100``: those refuse any file whose
md5 differs from the published archive, so they cannot read the small same-format files tests write. ``CifarPickle``
reads the same pickled batches the same way (one code path for real and test data); integrity of real data is
checked by torchvision when ``download: true`` fetches it.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from recipes.errors import ConfigError

__all__ = ['DATASET_OPTIONS', 'DATASET_INFO', 'CifarPickle', 'check_data', 'build_dataset', 'build_dataloader',
           'resolve_options']

log = logging.getLogger(__name__)

REQUIRED = object()  # default of an option that must be given
NoneType = type(None)

# Options every dataset takes: key -> (allowed types, default). A default of None for augment/shuffle/drop_last
# means "True for the train split, False otherwise"; for pin_memory, "True when CUDA is available".
_COMMON: dict[str, tuple[tuple[type, ...], Any]] = {
    'dataset': ((str,), REQUIRED),
    'path': ((str,), 'data'),
    'split': ((str,), 'train'),
    'augment': ((bool, NoneType), None),
    'shuffle': ((bool, NoneType), None),
    'drop_last': ((bool, NoneType), None),
    'subset': ((int, NoneType), None),
    'num_workers': ((int,), 0),
    'pin_memory': ((bool, NoneType), None),
    'persistent_workers': ((bool,), False),
}
_TORCHVISION = {**_COMMON, 'download': ((bool,), False)}
_IMAGENET = {**_COMMON, 'path': ((str,), REQUIRED), 'image_size': ((int,), 224)}

DATASET_OPTIONS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    'fashion_mnist': _TORCHVISION,
    'cifar10': _TORCHVISION,
    'cifar100': _TORCHVISION,
    'imagenet_folder': _IMAGENET,
    'imagenet_mds': _IMAGENET,
}
"""For each dataset name, its option keys -> (allowed types, default); ``REQUIRED`` marks a key without default."""

DATASET_INFO: dict[str, dict[str, Any]] = {
    'fashion_mnist': {'num_classes': 10, 'in_channels': 1, 'splits': ('train', 'test', 'val')},
    'cifar10': {'num_classes': 10, 'in_channels': 3, 'splits': ('train', 'test', 'val')},
    'cifar100': {'num_classes': 100, 'in_channels': 3, 'splits': ('train', 'test', 'val')},
    'imagenet_folder': {'num_classes': 1000, 'in_channels': 3, 'splits': ('train', 'val')},
    'imagenet_mds': {'num_classes': 1000, 'in_channels': 3, 'splits': ('train', 'val')},
}
"""Nominal classes and channels of each dataset (a model's ``num_classes``/``in_channels`` should match), splits."""

_MEAN_STD = {
    'fashion_mnist': ((0.2860,), (0.3530,)),
    'cifar10': ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    'cifar100': ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),  # RepDistiller's values
    'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_FMNIST_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte',
                 't10k-labels-idx1-ubyte')
_CIFAR_LAYOUT = {
    'cifar10': ('cifar-10-batches-py', [f'data_batch_{i}' for i in range(1, 6)], ['test_batch'], 'batches.meta'),
    'cifar100': ('cifar-100-python', ['train'], ['test'], 'meta'),
}


def _type_names(types: tuple[type, ...]) -> str:
    return ' or '.join('null' if t is NoneType else t.__name__ for t in types)


def resolve_options(cfg: Mapping[str, Any], key: str = 'loader') -> dict[str, Any]:
    """``cfg`` checked (names, option keys, types, split) and completed with the defaults; raises ConfigError."""
    name = cfg.get('dataset')
    if not isinstance(name, str) or name not in DATASET_OPTIONS:
        raise ConfigError(f'{key}.dataset: unknown dataset {name!r}; allowed: {", ".join(DATASET_OPTIONS)}')
    spec = DATASET_OPTIONS[name]
    opts: dict[str, Any] = {}
    for opt, value in cfg.items():
        if opt not in spec:
            raise ConfigError(f'{key}.{opt}: unknown option for dataset {name!r}; allowed: {", ".join(spec)}')
        types = spec[opt][0]
        # bool is a subclass of int: reject True where an int is expected.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(f'{key}.{opt}: expected {_type_names(types)}, got {value!r}')
        opts[opt] = value
    for opt, (_, default) in spec.items():
        if opt not in opts:
            if default is REQUIRED:
                raise ConfigError(f'{key}.{opt}: required for dataset {name!r}')
            opts[opt] = default
    splits = DATASET_INFO[name]['splits']
    if opts['split'] not in splits:
        raise ConfigError(f'{key}.split: unknown split {opts["split"]!r} for {name!r}; allowed: {", ".join(splits)}')
    for opt, least in (('subset', 1), ('num_workers', 0), ('image_size', 1)):
        if opts.get(opt) is not None and opts[opt] < least:
            raise ConfigError(f'{key}.{opt}: expected an integer >= {least}, got {opts[opt]!r}')
    train = opts['split'] == 'train'
    for opt in ('augment', 'shuffle', 'drop_last'):
        if opts[opt] is None:
            opts[opt] = train
    if opts['pin_memory'] is None:
        opts['pin_memory'] = torch.cuda.is_available()
    return opts


def _expected_files(name: str, path: Path, split: str) -> list[Path]:
    """The files or folders that must exist for ``name``/``split`` under ``path``."""
    if name == 'fashion_mnist':
        return [path / 'FashionMNIST' / 'raw' / f for f in _FMNIST_FILES]
    if name in _CIFAR_LAYOUT:
        folder, train, test, meta = _CIFAR_LAYOUT[name]
        return [path / folder / f for f in (train if split == 'train' else test) + [meta]]
    if name == 'imagenet_folder':
        return [path / split]
    return [path / split / 'index.json']


def check_data(cfg: Mapping[str, Any], key: str) -> None:
    """Validate loader config ``cfg`` (found at config key ``key``) without reading data; raises ConfigError."""
    opts = resolve_options(cfg, key)
    if opts['dataset'] == 'imagenet_mds' and importlib.util.find_spec('streaming') is None:
        raise ConfigError(f'{key}.dataset: imagenet_mds needs mosaicml-streaming: pip install mosaicml-streaming')
    if opts.get('download'):
        return
    path = Path(opts['path'])
    for expected in _expected_files(opts['dataset'], path, opts['split']):
        if not expected.exists():
            hint = ' (run `make data` or `python -m recipes.prepare_data`)' if 'imagenet' not in opts['dataset'] else ''
            raise ConfigError(f'{key}.path: {str(path)!r} lacks {opts["dataset"]} data: expected {expected}{hint}')


class CifarPickle(Dataset):
    """CIFAR-10/100 from the python-pickle batches (``cifar-10-batches-py/``, ``cifar-100-python/``) under ``root``.

    Same data, order and labels as torchvision's ``CIFAR10``/``CIFAR100`` (fine labels for CIFAR-100), without the
    md5 check; yields ``(PIL image, int label)`` passed through ``transform``.
    """

    def __init__(self, root: str | os.PathLike, name: str = 'cifar10', train: bool = True,
                 transform: Callable | None = None) -> None:
        folder, train_files, test_files, meta = _CIFAR_LAYOUT[name]
        data, self.targets = [], []
        for file in train_files if train else test_files:
            with open(Path(root) / folder / file, 'rb') as f:
                entry = pickle.load(f, encoding='latin1')
            data.append(entry['data'])
            self.targets.extend(entry['labels'] if 'labels' in entry else entry['fine_labels'])
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC uint8
        with open(Path(root) / folder / meta, 'rb') as f:
            self.classes = pickle.load(f, encoding='latin1')['label_names' if name == 'cifar10' else 'fine_label_names']
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = Image.fromarray(self.data[index])
        return (self.transform(img) if self.transform else img), int(self.targets[index])


def build_transform(name: str, augment: bool, image_size: int = 224) -> Callable:
    """The train (``augment``) or eval transform of dataset ``name``: PIL image -> normalized float tensor."""
    mean, std = _MEAN_STD['imagenet' if name.startswith('imagenet') else name]
    if name.startswith('imagenet'):
        if augment:
            head = [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()]
        else:
            head = [transforms.Resize(image_size * 256 // 224), transforms.CenterCrop(image_size)]
    elif augment:
        size, pad = (28, 2) if name == 'fashion_mnist' else (32, 4)
        head = [transforms.RandomCrop(size, padding=pad), transforms.RandomHorizontalFlip()]
    else:
        head = []
    return transforms.Compose(head + [transforms.ToTensor(), transforms.Normalize(mean, std)])


def _streaming_images_class() -> type:
    """``StreamingImages``: a ``StreamingDataset`` over MDS shards with columns ``x`` (image) and ``y`` (int label).

    Defined on first use so that mosaicml-streaming stays optional; reachable as ``recipes.data.StreamingImages``
    (module ``__getattr__``) so that dataloader workers started with ``spawn`` can unpickle it.
    """
    try:
        from streaming import StreamingDataset
    except ImportError as e:
        raise ImportError('dataset imagenet_mds needs mosaicml-streaming: pip install mosaicml-streaming') from e

    class StreamingImages(StreamingDataset):
        def __init__(self, *, local: str, transform: Callable, **kwargs: Any) -> None:
            super().__init__(local=local, **kwargs)
            self.transform = transform

        def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
            sample = super().__getitem__(index)
            return self.transform(sample['x'].convert('RGB')), int(sample['y'])

    StreamingImages.__module__, StreamingImages.__qualname__ = __name__, 'StreamingImages'
    globals()['StreamingImages'] = StreamingImages
    return StreamingImages


def __getattr__(name: str) -> Any:
    if name == 'StreamingImages':
        return _streaming_images_class()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def build_dataset(opts: Mapping[str, Any], batch_size: int | None = None) -> Dataset:
    """The dataset of resolved options ``opts`` (see ``resolve_options``), transforms applied, ``subset`` taken."""
    name, split, path = opts['dataset'], opts['split'], opts['path']
    transform = build_transform(name, opts['augment'], opts.get('image_size', 224))
    train = split == 'train'
    if name == 'imagenet_mds':
        cls = _streaming_images_class()
        return cls(local=os.path.join(path, split), transform=transform, shuffle=opts['shuffle'],
                   batch_size=batch_size, epoch_size=opts['subset'])
    if name == 'fashion_mnist':
        dataset: Dataset = datasets.FashionMNIST(path, train=train, transform=transform, download=opts['download'])
    elif name in _CIFAR_LAYOUT:
        if opts['download']:
            getattr(datasets, name.upper())(path, train=train, download=True)
        dataset = CifarPickle(path, name, train=train, transform=transform)
    else:
        dataset = datasets.ImageFolder(os.path.join(path, split), transform=transform)
    if opts['subset'] is not None:
        dataset = Subset(dataset, range(min(opts['subset'], len(dataset))))
    return dataset


def build_dataloader(cfg: Mapping[str, Any], batch_size: int, key: str = 'loader') -> DataLoader:
    """A ``DataLoader`` for loader config ``cfg`` with per-rank ``batch_size``, sharded across ranks.

    Map-style datasets get ``composer.utils.dist.get_sampler``; a ``StreamingDataset`` shards itself.
    """
    from composer.utils import dist

    opts = resolve_options(cfg, key)
    dataset = build_dataset(opts, batch_size)
    sampler = None
    if opts['dataset'] != 'imagenet_mds':
        sampler = dist.get_sampler(dataset, shuffle=opts['shuffle'], drop_last=opts['drop_last'])
    workers = opts['num_workers']
    log.info('%s: %s/%s, %s examples, batch %d per rank', key, opts['dataset'], opts['split'],
             len(dataset) if hasattr(dataset, '__len__') else '?', batch_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=opts['drop_last'],
                      num_workers=workers, pin_memory=opts['pin_memory'],
                      persistent_workers=opts['persistent_workers'] and workers > 0)
