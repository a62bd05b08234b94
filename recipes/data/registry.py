"""Datasets and dataloaders by name, from a flat loader config such as ``train_loader`` in a recipe YAML.

    train_loader:
      dataset: fashion_mnist   # fashion_mnist | cifar10 | cifar100 | imagenet_folder | imagenet_mds
                               # text: text_json | c4 | text_mds (masked LM), glue (recipes/text_*.py, glue_data.py)
      path: data               # the folder `python -m recipes.prepare_data` (`make data`) fills
      split: train

Datasets register by name in ``DATASETS`` (:func:`register_dataset`): a :class:`DatasetSpec` holds the option keys
with their types and defaults, what the data gives a model (classes, channels, input shape: a model that does not
fit is refused before anything starts), the files it needs, and its builder. A text dataset with its own collate
function registers the same way as an image one. ``check_data`` validates a loader config without reading data;
``build_dataloader`` builds a distributed-aware ``DataLoader`` (``batch_size`` is per rank).

CIFAR is read by ``CifarPickle`` (below), not by torchvision's ``CIFAR10``/``CIFAR100``: those refuse any file whose
md5 differs from the published archive, so they cannot read the small same-format files tests write. ``CifarPickle``
reads the same pickled batches the same way (one code path for real and test data); integrity of real data is
checked by torchvision when ``download: true`` fetches it.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from recipes.data.biased_data import Downsampled, WithIndex, resolve_fractions
from recipes.core.config import REQUIRED, check_type
from recipes.core.errors import ConfigError

__all__ = ['DATASETS', 'DATASET_OPTIONS', 'DatasetSpec', 'register_dataset', 'CifarPickle', 'check_data',
           'check_model_fits_loader',
           'build_dataset', 'build_dataloader', 'resolve_options', 'dataset_info']

log = logging.getLogger(__name__)

NoneType = type(None)
Options = dict[str, tuple[tuple[type, ...], Any]]

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
    'downsample': ((str, dict, NoneType), None),
    'downsample_seed': ((int,), 0),
    'indices': ((bool,), False),
}
COMMON_OPTIONS = _COMMON  # for datasets registered from other modules (e.g. recipes/data/text/glue_data.py)
# in_memory: None means True (the images as one tensor, augmented by whole batches: recipes/data/tensor_data.py).
# skip: the first N examples of the split left out (before subset): e.g. a validation split carved from the training
# set, train_loader.subset=55000 and eval_loader {split: train, skip: 55000}.
_TORCHVISION = {**_COMMON, 'download': ((bool,), False), 'in_memory': ((bool, NoneType), None), 'skip': ((int,), 0)}
_IMAGENET = {**_COMMON, 'path': ((str,), REQUIRED), 'image_size': ((int,), 224)}

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


def resolve_options(cfg: Mapping[str, Any], key: str = 'loader') -> dict[str, Any]:
    """``cfg`` checked (names, option keys, types, split) and completed with the defaults; raises ConfigError."""
    name = cfg.get('dataset')
    if not isinstance(name, str) or name not in DATASETS:
        raise ConfigError(f'{key}.dataset: unknown dataset {name!r}; allowed: {", ".join(DATASETS)}')
    dataset = DATASETS[name]
    spec = dataset.options
    opts: dict[str, Any] = {}
    for opt, value in cfg.items():
        if opt not in spec:
            raise ConfigError(f'{key}.{opt}: unknown option for dataset {name!r}; allowed: {", ".join(spec)}')
        check_type(f'{key}.{opt}', value, spec[opt][0])
        opts[opt] = value
    for opt, (_, default) in spec.items():
        if opt not in opts:
            if default is REQUIRED:
                raise ConfigError(f'{key}.{opt}: required for dataset {name!r}')
            opts[opt] = default
    splits = dataset.splits
    if opts['split'] not in splits:
        raise ConfigError(f'{key}.split: unknown split {opts["split"]!r} for {name!r}; allowed: {", ".join(splits)}')
    for opt, least in (('subset', 1), ('num_workers', 0), ('image_size', 1), ('skip', 0)):
        if opts.get(opt) is not None and opts[opt] < least:
            raise ConfigError(f'{key}.{opt}: expected an integer >= {least}, got {opts[opt]!r}')
    if opts.get('downsample') is not None:
        opts['downsample'] = resolve_fractions(opts['downsample'], dataset.info.get('num_classes'), f'{key}.downsample')
    train = opts['split'] == 'train'
    for opt in ('augment', 'shuffle', 'drop_last'):
        if opt in opts and opts[opt] is None:
            opts[opt] = train
    if opts.get('pin_memory', False) is None:
        opts['pin_memory'] = torch.cuda.is_available()
    if 'in_memory' in opts:
        if opts['in_memory'] is None:
            opts['in_memory'] = True
        if opts['in_memory'] and opts['num_workers'] > 0:
            raise ConfigError(f'{key}.num_workers: in-memory data is served in the main process, without workers; '
                              f'set {key}.num_workers: 0, or {key}.in_memory: false for the per-image path')
    return opts


def _fmnist_files(path: Path, split: str) -> list[Path]:
    return [path / 'FashionMNIST' / 'raw' / f for f in _FMNIST_FILES]


def _cifar_files(name: str) -> Callable[[Path, str], list[Path]]:
    def files(path: Path, split: str) -> list[Path]:
        folder, train, test, meta = _CIFAR_LAYOUT[name]
        return [path / folder / f for f in (train if split == 'train' else test) + [meta]]
    return files


def check_data(cfg: Mapping[str, Any], key: str) -> None:
    """Validate loader config ``cfg`` (found at config key ``key``) without reading data; raises ConfigError."""
    opts = resolve_options(cfg, key)
    spec = DATASETS[opts['dataset']]
    for module, extra in spec.needs:
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f'{key}.dataset: {opts["dataset"]} needs {extra}: pip install {extra}')
    if spec.check is not None:
        spec.check(opts, key)
    if opts.get('download'):
        return
    path = Path(opts['path'])
    for expected in spec.files(path, opts['split']):
        if not expected.exists():
            raise ConfigError(f'{key}.path: {str(path)!r} lacks {opts["dataset"]} data: expected {expected}{spec.hint}')


def check_model_fits_loader(model: Any, cfg: Mapping[str, Any], key: str) -> None:
    """Run the dataset's ``fits`` check on the built model (e.g. a sequence length beyond the model's limit)."""
    spec = DATASETS[cfg['dataset']]
    if spec.fits is not None:
        spec.fits(model, resolve_options(cfg, key), key)


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

    Defined on first use so that mosaicml-streaming stays optional; reachable as ``recipes.data.registry.StreamingImages``
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


def _torchvision_build(opts: Mapping[str, Any], batch_size: int | None) -> Dataset:
    name, train = opts['dataset'], opts['split'] == 'train'
    transform = build_transform(name, opts['augment'])
    if name == 'fashion_mnist':
        return datasets.FashionMNIST(opts['path'], train=train, transform=transform, download=opts['download'])
    if opts['download']:
        getattr(datasets, name.upper())(opts['path'], train=train, download=True)
    return CifarPickle(opts['path'], name, train=train, transform=transform)


def _imagenet_build(opts: Mapping[str, Any], batch_size: int | None) -> Dataset:
    transform = build_transform(opts['dataset'], opts['augment'], opts['image_size'])
    if opts['dataset'] == 'imagenet_folder':
        return datasets.ImageFolder(os.path.join(opts['path'], opts['split']), transform=transform)
    cls = _streaming_images_class()
    return cls(local=os.path.join(opts['path'], opts['split']), transform=transform, shuffle=opts['shuffle'],
               batch_size=batch_size, epoch_size=opts['subset'])


@dataclass(frozen=True)
class DatasetSpec:
    """How a dataset name is configured, checked and built.

    Attributes:
        options: option key -> (allowed types, default; ``REQUIRED`` for none).
        build: ``fn(resolved options, per-rank batch size) -> Dataset``.
        files: ``fn(path, split) -> [paths that must exist]`` (checked before anything starts).
        splits: the allowed ``split`` values.
        info: what the data gives a model, e.g. ``{'num_classes': 10, 'in_channels': 1, 'input_shape': (1, 28, 28)}``;
            a model option of the same name must agree (checked before anything starts).
        shards_itself: a streaming dataset that shards across ranks itself (no distributed sampler).
        collate: ``fn(resolved options) -> collate_fn`` (e.g. masked-LM masking), or None for the default.
        needs: ``(module, pip name)`` pairs of optional dependencies.
        hint: appended to a missing-data error (how to prepare the data).
        check: ``fn(resolved options, key)`` raising ConfigError: checks beyond types (e.g. the tokenizer loads).
        fits: ``fn(model, resolved options, key)`` raising ConfigError when the built model cannot take the data.
        loader: ``fn(resolved options, per-rank batch size, key, seed, device) -> DataLoader`` for a dataset that
            builds its own loader (in-memory text); None for the default ``DataLoader`` over ``build``.
    """

    options: Options
    build: Callable[[Mapping[str, Any], int | None], Dataset]
    files: Callable[[Path, str], list[Path]]
    splits: tuple[str, ...] = ('train', 'test', 'val')
    info: Mapping[str, Any] = field(default_factory=dict)
    shards_itself: bool = False
    collate: Callable[[Mapping[str, Any]], Callable] | None = None
    needs: tuple[tuple[str, str], ...] = ()
    hint: str = ''
    check: Callable[[Mapping[str, Any], str], Any] | None = None
    fits: Callable[[Any, Mapping[str, Any], str], None] | None = None
    loader: Callable[..., DataLoader] | None = None


_PREPARE = ' (run `make data` or `python -m recipes.prepare_data`)'
DATASETS: dict[str, DatasetSpec] = {
    'fashion_mnist': DatasetSpec(_TORCHVISION, _torchvision_build, _fmnist_files, hint=_PREPARE,
                                 info={'num_classes': 10, 'in_channels': 1, 'input_shape': (1, 28, 28)}),
    'cifar10': DatasetSpec(_TORCHVISION, _torchvision_build, _cifar_files('cifar10'), hint=_PREPARE,
                           info={'num_classes': 10, 'in_channels': 3, 'input_shape': (3, 32, 32)}),
    'cifar100': DatasetSpec(_TORCHVISION, _torchvision_build, _cifar_files('cifar100'), hint=_PREPARE,
                            info={'num_classes': 100, 'in_channels': 3, 'input_shape': (3, 32, 32)}),
    'imagenet_folder': DatasetSpec(_IMAGENET, _imagenet_build, lambda path, split: [path / split],
                                   splits=('train', 'val'), info={'num_classes': 1000, 'in_channels': 3}),
    'imagenet_mds': DatasetSpec(_IMAGENET, _imagenet_build, lambda path, split: [path / split / 'index.json'],
                                splits=('train', 'val'), info={'num_classes': 1000, 'in_channels': 3},
                                shards_itself=True, needs=(('streaming', 'mosaicml-streaming'),)),
}
"""Every dataset a recipe can name; add one with :func:`register_dataset`."""
#: Each dataset's option keys -> (allowed types, default).
DATASET_OPTIONS = {name: spec.options for name, spec in DATASETS.items()}


def register_dataset(name: str, spec: DatasetSpec) -> None:
    """Make ``name`` usable as ``train_loader.dataset`` / ``eval_loader.dataset``."""
    DATASETS[name] = spec
    DATASET_OPTIONS[name] = spec.options


def dataset_info(cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    """What the dataset of loader config ``cfg`` gives a model (``{}`` for an unknown name)."""
    spec = DATASETS.get(cfg.get('dataset'))  # type: ignore[arg-type]
    if spec is None:
        return {}
    return {**spec.info, **({'input_shape': (spec.info['in_channels'], cfg['image_size'], cfg['image_size'])}
                            if 'image_size' in cfg and 'in_channels' in spec.info else {})}


def build_dataset(opts: Mapping[str, Any], batch_size: int | None = None) -> Dataset:
    """The dataset of resolved options ``opts`` (see ``resolve_options``), transforms applied, ``skip`` and ``subset``
    taken."""
    dataset = DATASETS[opts['dataset']].build(opts, batch_size)
    if opts.get('skip'):
        dataset = Subset(dataset, range(min(opts['skip'], len(dataset)), len(dataset)))  # type: ignore[arg-type]
    if opts['subset'] is not None and not DATASETS[opts['dataset']].shards_itself:
        dataset = Subset(dataset, range(min(opts['subset'], len(dataset))))  # type: ignore[arg-type]
    if opts.get('downsample') is not None:
        dataset = _downsampled(dataset, opts)
    if opts.get('indices'):
        dataset = WithIndex(dataset)
    return dataset


def _downsampled(dataset: Any, opts: Mapping[str, Any], targets: Any = None) -> Downsampled:
    out = Downsampled(dataset, opts['downsample'], seed=opts.get('downsample_seed', 0), targets=targets)
    log.info('down-sampled classes %s: kept %s of %s examples', opts['downsample'],
             {c: out.kept_per_class.get(c, 0) for c in opts['downsample']},
             {c: out.original_per_class.get(c, 0) for c in opts['downsample']})
    return out


def image_tensors(opts: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw ``uint8`` images ``(N, C, H, W)`` and labels of a Fashion-MNIST/CIFAR split, ``skip``, ``subset`` and
    ``downsample`` applied exactly as :func:`build_dataset` applies them (same examples, same order)."""
    name, train = opts['dataset'], opts['split'] == 'train'
    if name == 'fashion_mnist':
        raw = datasets.FashionMNIST(opts['path'], train=train, download=opts['download'])
        x, y = raw.data.unsqueeze(1), torch.as_tensor(raw.targets)
    else:
        if opts['download']:
            getattr(datasets, name.upper())(opts['path'], train=train, download=True)
        raw = CifarPickle(opts['path'], name, train=train)
        x, y = torch.from_numpy(raw.data).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(raw.targets)
    x, y = x[opts.get('skip', 0):], y[opts.get('skip', 0):]
    if opts['subset'] is not None:
        x, y = x[:opts['subset']], y[:opts['subset']]
    if opts.get('downsample') is not None:
        kept = torch.as_tensor(_downsampled(range(len(y)), opts, targets=y.numpy()).indices)
        x, y = x[kept], y[kept]
    return x, y.long()


def build_dataloader(cfg: Mapping[str, Any], batch_size: int, key: str = 'loader', seed: int = 0,
                     device: torch.device | str | None = None) -> DataLoader:
    """A ``DataLoader`` for loader config ``cfg`` with per-rank ``batch_size``, sharded across ranks.

    ``in_memory`` data (the default for Fashion-MNIST and CIFAR) is one tensor on ``device`` (default CPU) served by
    :class:`recipes.data.tensor_data.EpochBatches`; other map-style datasets get ``composer.utils.dist.get_sampler``; a
    ``StreamingDataset`` shards itself. The order and augmentation come from ``seed`` and the loader's own
    generator, never from the global random state, so evaluating more often does not change training.
    """
    from composer.utils import dist

    opts = resolve_options(cfg, key)
    spec = DATASETS[opts['dataset']]
    generator = torch.Generator().manual_seed(seed)  # DataLoader iterators draw their worker seed from it
    if spec.loader is not None:
        return spec.loader(opts, batch_size, key, seed, device)
    if opts.get('in_memory'):
        return _in_memory_loader(opts, batch_size, key, seed, device, generator)
    dataset = build_dataset(opts, batch_size)
    sampler = None
    if not spec.shards_itself:
        sampler = dist.get_sampler(dataset, shuffle=opts['shuffle'], drop_last=opts['drop_last'], seed=seed)
    workers = opts.get('num_workers', 0)
    log.info('%s: %s/%s, %s examples, batch %d per rank', key, opts['dataset'], opts['split'],
             len(dataset) if hasattr(dataset, '__len__') else '?', batch_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=opts['drop_last'],
                      num_workers=workers, pin_memory=opts['pin_memory'], generator=generator,
                      collate_fn=spec.collate(opts) if spec.collate else None,
                      persistent_workers=opts.get('persistent_workers', False) and workers > 0)


def _in_memory_loader(opts: Mapping[str, Any], batch_size: int, key: str, seed: int,
                      device: torch.device | str | None, generator: torch.Generator) -> DataLoader:
    from composer.utils import dist

    from recipes.data.tensor_data import BatchLoader, EpochBatches, InMemoryImages

    x, y = image_tensors(opts)
    device = torch.device(device or 'cpu')
    mean, std = _MEAN_STD[opts['dataset']]
    pad = 2 if opts['dataset'] == 'fashion_mnist' else 4
    dataset = InMemoryImages(x, y, mean, std, pad=pad, with_index=opts['indices'], device=device)
    sampler = EpochBatches(dataset, batch_size, shuffle=opts['shuffle'], augment=opts['augment'],
                           drop_last=opts['drop_last'], seed=seed, world=dist.get_world_size(),
                           rank=dist.get_global_rank())
    log.info('%s: %s/%s in memory on %s, %d examples, batch %d per rank', key, opts['dataset'], opts['split'],
             device, len(dataset), batch_size)
    return BatchLoader(dataset, sampler, generator=generator,
                       pin_memory=opts['pin_memory'] and device.type == 'cpu' and torch.cuda.is_available())


def _served_by_loader(opts: Mapping[str, Any], batch_size: int | None) -> Dataset:
    raise ConfigError(f'dataset {opts["dataset"]!r} is served as whole batches by its own loader, not as a '
                      'per-example dataset')


def _register_text() -> None:
    """The text datasets live in their own modules (masked-LM corpora, GLUE); they register on import, here, at
    the end of this module, so that any recipe can name them."""
    from recipes.data.text import text_data

    register_dataset('text_json', DatasetSpec(
        text_data.TEXT_OPTIONS, build=_served_by_loader, files=text_data.text_json_files,
        splits=('train', 'validation', 'test'), check=text_data.check_text_json, fits=text_data.check_text_fits,
        loader=text_data.text_json_loader,
        hint=' (run `python -m recipes.prepare_data sotu` for the offline corpus)'))
    for module in ('recipes.data.text.glue_data', 'recipes.data.text.text_streaming'):  # they register glue, text_mds and c4
        importlib.import_module(module)


_register_text()
