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

import importlib.util
import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from omegaconf import MISSING
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets, transforms

from recipes.data.biased_data import Downsampled, WithIndex, resolve_fractions
from recipes.core.errors import ConfigError
from recipes.core.schema import union, validate

__all__ = ['DATASETS', 'DatasetSpec', 'register_dataset', 'CifarPickle', 'check_data', 'check_model_fits_loader',
           'LoaderOptions', 'WorkerOptions', 'CommonOptions', 'build_dataset', 'build_dataloader', 'resolve_options',
           'dataset_info']

log = logging.getLogger(__name__)



# A dataset's options are one dataclass (recipes.core.schema), derived from the options it shares with others.
@dataclass
class LoaderOptions:
    """Options every loader takes. A default of None for shuffle/drop_last (and augment) means "True for the train
    split, False otherwise"; for pin_memory, "True when CUDA is available"."""

    dataset: str = MISSING
    path: str = 'data'
    split: str = 'train'
    shuffle: Optional[bool] = None
    drop_last: Optional[bool] = None
    subset: Optional[int] = None
    pin_memory: Optional[bool] = None


@dataclass
class WorkerOptions(LoaderOptions):
    """A loader whose examples ``DataLoader`` workers read."""

    num_workers: int = 0
    persistent_workers: bool = False


@dataclass
class CommonOptions(WorkerOptions):
    """A dataset of labelled examples (images, GLUE): augmentation, class down-sampling, sample indices."""

    augment: Optional[bool] = None
    downsample: Any = union(str, dict, None)
    downsample_seed: int = 0
    indices: bool = False


@dataclass
class TorchvisionOptions(CommonOptions):
    """Fashion-MNIST and CIFAR. ``in_memory``: None means True (the images as one tensor, augmented by whole
    batches: recipes/data/tensor_data.py). ``skip``: the first N examples of the split left out (before subset):
    e.g. a validation split carved from the training set, train_loader.subset=55000 and eval_loader {split: train,
    skip: 55000}."""

    download: bool = False
    in_memory: Optional[bool] = None
    skip: int = 0


@dataclass
class ImagenetOptions(CommonOptions):
    path: str = MISSING
    image_size: int = 224


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
    opts = validate(cfg, dataset.options, key, where=f' (dataset {name!r})')
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
    """Validate loader config ``cfg`` (found at config key ``key``); raises ConfigError. Reads no data, except the
    labels of Fashion-MNIST/CIFAR (CIFAR's batches through the restricted unpickler), to refuse a loader that
    resolves to no example (``skip``, ``subset``, ``downsample``, an empty split) before a run starts."""
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
    labels = _split_labels(opts)
    if labels is not None:
        check_not_empty(len(kept_positions(labels, opts)), len(labels), opts, key)


def _split_labels(opts: Mapping[str, Any]) -> np.ndarray | None:
    """The labels of a Fashion-MNIST/CIFAR split read from its files; None for other datasets (their examples are
    counted when their loader is built)."""
    train = opts['split'] == 'train'
    if opts['dataset'] == 'fashion_mnist':
        file = Path(opts['path']) / 'FashionMNIST' / 'raw' / f'{"train" if train else "t10k"}-labels-idx1-ubyte'
        raw = file.read_bytes()
        if len(raw) < 8 or int.from_bytes(raw[:4], 'big') != 2049 or int.from_bytes(raw[4:8], 'big') != len(raw) - 8:
            raise ConfigError(f'{file}: not a Fashion-MNIST label file (idx1-ubyte: magic 2049, count, labels)')
        return np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64)
    if opts['dataset'] in _CIFAR_LAYOUT:
        return np.asarray(CifarPickle(opts['path'], opts['dataset'], train=train).targets, dtype=np.int64)
    return None


def kept_positions(labels: np.ndarray, opts: Mapping[str, Any]) -> np.ndarray:
    """Positions in the split of the examples a loader keeps, in order: ``skip`` first, then ``subset``, then
    ``downsample``, as :func:`build_dataset` and :func:`image_tensors` apply them."""
    positions = np.arange(len(labels))[opts.get('skip', 0):]
    if opts['subset'] is not None:
        positions = positions[:opts['subset']]
    if opts.get('downsample') is not None and len(positions):
        kept = _downsampled(range(len(positions)), opts, targets=labels[positions]).indices
        positions = positions[np.asarray(kept, dtype=np.int64)]
    return positions


def check_not_empty(kept: int, total: int | str, opts: Mapping[str, Any], key: str) -> None:
    """A ConfigError naming ``key`` and the counts when a loader resolves to no example: a run would otherwise
    step through empty epochs until stopped."""
    if kept > 0:
        return
    cuts = ', '.join(f'{opt} {opts[opt]}' for opt in ('skip', 'subset', 'downsample') if opts.get(opt))
    skip_too_far = isinstance(total, int) and opts.get('skip', 0) >= total > 0
    advice = f'; {key}.skip must be below {total}' if skip_too_far else ''
    raise ConfigError(f'{key}: no example to load: {opts["dataset"]} split {opts["split"]!r} has {total} examples'
                      f'{f" and {cuts} leaves 0" if cuts else ""}{advice}')


def check_model_fits_loader(model: Any, cfg: Mapping[str, Any], key: str) -> None:
    """Run the dataset's ``fits`` check on the built model (e.g. a sequence length beyond the model's limit)."""
    spec = DATASETS[cfg['dataset']]
    if spec.fits is not None:
        spec.fits(model, resolve_options(cfg, key), key)


# What CIFAR's python batches hold beyond plain dicts, lists, strings and numbers: numpy arrays (their
# reconstructors, under numpy 1 and 2 module names) and, in a protocol-2 pickle written by Python 3, bytes.
_CIFAR_GLOBALS = frozenset({
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),  # protocol 5
    ('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode'),
    *((module, name) for module in ('builtins', '__builtin__')
      for name in ('bytes', 'bytearray', 'str', 'unicode', 'list', 'dict', 'tuple', 'set', 'frozenset', 'int', 'float',
                   'bool', 'complex')),
})


class _Refused(pickle.UnpicklingError):
    """A pickle names a callable outside :data:`_CIFAR_GLOBALS`."""


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only what a CIFAR batch holds (:data:`_CIFAR_GLOBALS`): a crafted file naming any
    other callable (``os.system``, ``builtins.eval``, ...) is refused before anything of it runs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise _Refused(f'{module}.{name}')
        return super().find_class(module, name)


def load_cifar_batch(file: Path) -> Any:
    """One CIFAR python batch (or meta file) read with :class:`_CifarUnpickler`; a ConfigError names a file that is
    refused (it would run code) or is not a readable pickle (empty, truncated, another format)."""
    try:
        with open(file, 'rb') as f:
            return _CifarUnpickler(f, encoding='latin1').load()
    except _Refused as e:
        raise ConfigError(f'{file}: refused: unpickling it would call {e}, and a CIFAR batch holds only numpy arrays, '
                          'lists, dicts and strings; replace the folder with the published archive') from None
    except pickle.UnpicklingError as e:
        raise ConfigError(f'{file}: not a readable CIFAR batch ({e})') from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as e:
        raise ConfigError(f'{file}: not a readable CIFAR batch ({type(e).__name__}: {e})') from None


class CifarPickle(Dataset):
    """CIFAR-10/100 from the python-pickle batches (``cifar-10-batches-py/``, ``cifar-100-python/``) under ``root``.

    Same data, order and labels as torchvision's ``CIFAR10``/``CIFAR100`` (fine labels for CIFAR-100), without the
    md5 check (tests write small same-format files) but with a restricted unpickler (:func:`load_cifar_batch`):
    a file that would build anything but arrays, lists, dicts and strings is refused, so a data folder never runs
    code. Yields ``(PIL image, int label)`` passed through ``transform``; a bad file is a ConfigError naming it.
    """

    def __init__(self, root: str | os.PathLike, name: str = 'cifar10', train: bool = True,
                 transform: Callable | None = None) -> None:
        folder, train_files, test_files, meta = _CIFAR_LAYOUT[name]
        data, self.targets = [], []
        for file in train_files if train else test_files:
            entry = load_cifar_batch(Path(root) / folder / file)
            labels = 'labels' if name == 'cifar10' else 'fine_labels'
            if not isinstance(entry, dict) or 'data' not in entry or labels not in entry:
                raise ConfigError(f'{Path(root) / folder / file}: not a {name} batch (expected a dict with data and '
                                  f'{labels})')
            data.append(entry['data'])
            self.targets.extend(entry[labels])
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC uint8
        names = load_cifar_batch(Path(root) / folder / meta)
        self.classes = names['label_names' if name == 'cifar10' else 'fine_label_names']
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
        options: the dataclass of its options (a :class:`LoaderOptions`, see :mod:`recipes.core.schema`).
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

    options: type
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
    'fashion_mnist': DatasetSpec(TorchvisionOptions, _torchvision_build, _fmnist_files, hint=_PREPARE,
                                 info={'num_classes': 10, 'in_channels': 1, 'input_shape': (1, 28, 28)}),
    'cifar10': DatasetSpec(TorchvisionOptions, _torchvision_build, _cifar_files('cifar10'), hint=_PREPARE,
                           info={'num_classes': 10, 'in_channels': 3, 'input_shape': (3, 32, 32)}),
    'cifar100': DatasetSpec(TorchvisionOptions, _torchvision_build, _cifar_files('cifar100'), hint=_PREPARE,
                            info={'num_classes': 100, 'in_channels': 3, 'input_shape': (3, 32, 32)}),
    'imagenet_folder': DatasetSpec(ImagenetOptions, _imagenet_build, lambda path, split: [path / split],
                                   splits=('train', 'val'), info={'num_classes': 1000, 'in_channels': 3}),
    'imagenet_mds': DatasetSpec(ImagenetOptions, _imagenet_build, lambda path, split: [path / split / 'index.json'],
                                splits=('train', 'val'), info={'num_classes': 1000, 'in_channels': 3},
                                shards_itself=True, needs=(('streaming', 'mosaicml-streaming'),)),
}
"""Every dataset a recipe can name; add one with :func:`register_dataset` (the text datasets register in their
modules, imported by ``recipes/data/__init__.py``)."""


def register_dataset(name: str, spec: DatasetSpec) -> None:
    """Make ``name`` usable as ``train_loader.dataset`` / ``eval_loader.dataset``."""
    DATASETS[name] = spec


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


def image_tensors(opts: Mapping[str, Any], key: str = 'loader') -> tuple[torch.Tensor, torch.Tensor]:
    """The raw ``uint8`` images ``(N, C, H, W)`` and labels of a Fashion-MNIST/CIFAR split, ``skip``, ``subset`` and
    ``downsample`` applied exactly as :func:`build_dataset` applies them (same examples, same order); a ConfigError
    naming ``key`` when none is left."""
    name, train = opts['dataset'], opts['split'] == 'train'
    if name == 'fashion_mnist':
        raw = datasets.FashionMNIST(opts['path'], train=train, download=opts['download'])
        x, y = raw.data.unsqueeze(1), torch.as_tensor(raw.targets)
    else:
        if opts['download']:
            getattr(datasets, name.upper())(opts['path'], train=train, download=True)
        raw = CifarPickle(opts['path'], name, train=train)
        x, y = torch.from_numpy(raw.data).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(raw.targets)
    kept = kept_positions(y.numpy(), opts)
    check_not_empty(len(kept), len(y), opts, key)
    if len(kept) < len(y):  # increasing positions: as many as the split means all of it
        x, y = x[torch.as_tensor(kept)], y[torch.as_tensor(kept)]
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
    if hasattr(dataset, '__len__') and len(dataset) == 0:  # type: ignore[arg-type]
        check_not_empty(0, _base_size(dataset), opts, key)
    sampler = None
    if not spec.shards_itself:
        sampler = dist.get_sampler(dataset, shuffle=opts['shuffle'], drop_last=opts['drop_last'], seed=seed)
        per_rank = len(sampler)  # type: ignore[arg-type]
        if opts['drop_last'] and per_rank < batch_size:
            raise ConfigError(f'{key}: {per_rank} examples per rank make no batch of {batch_size} with drop_last: '
                              f'lower the batch size or set {key}.drop_last: false')
    workers = opts.get('num_workers', 0)
    log.info('%s: %s/%s, %s examples, batch %d per rank', key, opts['dataset'], opts['split'],
             len(dataset) if hasattr(dataset, '__len__') else '?', batch_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=opts['drop_last'],
                      num_workers=workers, pin_memory=opts['pin_memory'], generator=generator,
                      collate_fn=spec.collate(opts) if spec.collate else None,
                      persistent_workers=opts.get('persistent_workers', False) and workers > 0)


def _base_size(dataset: Any) -> int | str:
    """The size of the split under the ``Subset``/``Downsampled``/``WithIndex`` wrappers of :func:`build_dataset`."""
    while isinstance(getattr(dataset, 'dataset', None), Dataset):
        dataset = dataset.dataset
    return len(dataset) if hasattr(dataset, '__len__') else '?'


def _in_memory_loader(opts: Mapping[str, Any], batch_size: int, key: str, seed: int,
                      device: torch.device | str | None, generator: torch.Generator) -> DataLoader:
    from composer.utils import dist

    from recipes.data.tensor_data import BatchLoader, EpochBatches, InMemoryImages

    x, y = image_tensors(opts, key)
    device = torch.device(device or 'cpu')
    mean, std = _MEAN_STD[opts['dataset']]
    pad = 2 if opts['dataset'] == 'fashion_mnist' else 4
    dataset = InMemoryImages(x, y, mean, std, pad=pad, with_index=opts['indices'], device=device)
    try:
        sampler = EpochBatches(dataset, batch_size, shuffle=opts['shuffle'], augment=opts['augment'],
                               drop_last=opts['drop_last'], seed=seed, world=dist.get_world_size(),
                               rank=dist.get_global_rank())
    except ValueError as e:  # no batch with drop_last
        raise ConfigError(f'{key}: {e}') from None
    log.info('%s: %s/%s in memory on %s, %d examples, batch %d per rank', key, opts['dataset'], opts['split'],
             device, len(dataset), batch_size)
    return BatchLoader(dataset, sampler, generator=generator,
                       pin_memory=opts['pin_memory'] and device.type == 'cpu' and torch.cuda.is_available())
