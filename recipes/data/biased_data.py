"""Dataset wrappers for the bias studies: chosen classes down-sampled to given fractions, and sample indices.

The seed's chapter III trains on a "biased" CIFAR-100 where 15 classes keep only 10%, 20% or 50% of their training
images, and measures how pruning hurts exactly those classes (CEV, SDE, PIEs: ``algorithms/analysis/bias.py``).
:class:`Downsampled` builds such a training set from any labelled dataset; :data:`BIASED_CIFAR100` is the seed's
choice, and :data:`BIASED_FASHION_MNIST` the CPU-scale one of this project. :class:`WithIndex` makes a dataset yield
``(x, y, index)``, which contrastive distillation (CRD) needs for its memory banks.

In a recipe YAML (``train_loader``)::

    downsample: {3: 0.1, 5: 0.2, 8: 0.5}   # class index -> fraction kept; or a preset name: biased_cifar100
    downsample_seed: 0                     # which examples are kept (a fixed, seeded choice)
    indices: true                          # yield (x, y, index)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset

from recipes.core.errors import ConfigError

__all__ = ['Downsampled', 'WithIndex', 'BIASED_CIFAR100', 'CIFAR100_CLASSES', 'BIASED_FASHION_MNIST', 'PRESETS',
           'dataset_targets', 'resolve_fractions']

_CIFAR100_NAMES = {  # the seed's 15 classes (CIFAR-100 fine labels, alphabetical order as in the meta file)
    0.1: ('apple', 'bicycle', 'crocodile', 'maple_tree', 'shrew'),
    0.2: ('butterfly', 'can', 'oak_tree', 'palm_tree', 'train'),
    0.5: ('dinosaur', 'elephant', 'flatfish', 'orange', 'raccoon'),
}
CIFAR100_CLASSES = (
    'apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle '
    'caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant '
    'flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man '
    'maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree '
    'plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail '
    'snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout '
    'tulip turtle wardrobe whale willow_tree wolf woman worm').split()

#: The seed's biased CIFAR-100: class index -> fraction of its training images kept (15 classes at 10/20/50%).
BIASED_CIFAR100: dict[int, float] = {CIFAR100_CLASSES.index(name): fraction
                                     for fraction, names in _CIFAR100_NAMES.items() for name in names}
#: This project's CPU-scale analogue on Fashion-MNIST: shirt (6) at 10%, pullover (2) at 20%, coat (4) at 50%,
#: the three classes most confused with one another, so a pruned model has somewhere to send their errors.
BIASED_FASHION_MNIST: dict[int, float] = {6: 0.1, 2: 0.2, 4: 0.5}
PRESETS: dict[str, dict[int, float]] = {'biased_cifar100': BIASED_CIFAR100,
                                        'biased_fashion_mnist': BIASED_FASHION_MNIST}


def dataset_targets(dataset: Dataset) -> np.ndarray:
    """The integer label of every example, read without loading images (``.targets`` of torchvision datasets and
    ``CifarPickle``, through ``Subset``\\ s)."""
    if isinstance(dataset, Subset):
        return dataset_targets(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    targets = getattr(dataset, 'targets', None)
    if targets is None:
        raise TypeError(f'{type(dataset).__name__} has no .targets: cannot down-sample its classes')
    return np.asarray(targets, dtype=np.int64).reshape(-1)


def resolve_fractions(value: Any, num_classes: int | None, key: str = 'downsample') -> dict[int, float]:
    """``{class index: fraction}`` from a preset name or a mapping, checked; ``ConfigError`` naming ``key``."""
    if isinstance(value, str):
        if value not in PRESETS:
            raise ConfigError(f'{key}: unknown preset {value!r}; allowed: {", ".join(PRESETS)} or a mapping '
                              '{class index: fraction kept}')
        value = PRESETS[value]
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f'{key}: expected a preset name or a non-empty mapping {{class index: fraction kept}}, '
                          f'got {value!r}')
    out: dict[int, float] = {}
    for cls, fraction in value.items():
        try:
            index = int(cls)
        except (TypeError, ValueError):
            raise ConfigError(f'{key}: class {cls!r} is not an integer class index') from None
        if index < 0 or (num_classes is not None and index >= num_classes):
            raise ConfigError(f'{key}: class {index} is outside [0, {num_classes})')
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ConfigError(f'{key}.{index}: the fraction kept must be in (0, 1], got {fraction!r}')
        out[index] = float(fraction)
    return out


class Downsampled(Subset):
    """``dataset`` with each class ``c`` of ``fractions`` cut to ``round(fraction * n_c)`` of its ``n_c`` examples
    (at least one), chosen by a permutation seeded with ``seed``; other classes are kept whole. The kept examples
    stay in their original order. ``kept_per_class`` and ``original_per_class`` say what was done."""

    def __init__(self, dataset: Dataset, fractions: Mapping[int, float], seed: int = 0,
                 targets: Sequence[int] | np.ndarray | None = None) -> None:
        labels = dataset_targets(dataset) if targets is None else np.asarray(targets, dtype=np.int64)
        rng = np.random.default_rng(seed)
        drop = np.zeros(len(labels), dtype=bool)
        self.original_per_class = {int(c): int(n) for c, n in zip(*np.unique(labels, return_counts=True))}
        for cls in sorted(fractions):
            members = np.flatnonzero(labels == cls)
            keep = max(1, int(round(fractions[cls] * len(members)))) if len(members) else 0
            drop[members[np.sort(rng.permutation(len(members))[keep:])]] = True
        kept = np.flatnonzero(~drop)
        super().__init__(dataset, kept.tolist())
        self.targets = labels[kept]
        self.fractions = dict(fractions)
        self.kept_per_class = {int(c): int(n) for c, n in zip(*np.unique(self.targets, return_counts=True))}


class WithIndex(Dataset):
    """``dataset`` yielding ``(*item, index)``: the sample's index in ``[0, len(dataset))`` appended."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.targets = getattr(dataset, 'targets', None)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        item = self.dataset[index]
        return (*item, index) if isinstance(item, tuple) else (item, index)
