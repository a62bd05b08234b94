"""Every algorithm of the project with small settings, Composer style: one entry per algorithm configuration.

Each :class:`AlgorithmSetting` carries its algorithm, its model and its data, so the generic test
(``tests/algorithms/test_algorithm_resume.py``) can train it, checkpoint it, resume it and compare weights and the algorithm's
own ``state_dict()`` with an uninterrupted run. Adding an algorithm is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from composer.core import Algorithm
from composer.models import ComposerClassifier
from torch.utils.data import DataLoader, TensorDataset

from algorithms.distillation import KnowledgeDistillation
from algorithms.feature_distillation import CRD, FSP, FitNets
from algorithms.label_smoothing import LabelSmoothing
from algorithms.pruning import FixedMaskTraining, MagnitudePruning, RandomSparseInit, StructuredPruning


def tiny_net(seed: int) -> ComposerClassifier:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 3),
    )
    return ComposerClassifier(net, num_classes=3)


def teachers(n: int) -> list[ComposerClassifier]:
    return [tiny_net(100 + i) for i in range(n)]


def image_loader() -> DataLoader:
    """48 random 1x8x8 images, 3 classes, batches of 8 in a fixed order."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 8, 8, generator=g), torch.randint(0, 3, (48,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False)


def indexed_image_loader() -> DataLoader:
    """:func:`image_loader`'s data with each sample's index, ``(x, y, index)``, as CRD needs."""
    x, y = image_loader().dataset.tensors
    return DataLoader(TensorDataset(x, y, torch.arange(len(x))), batch_size=8, shuffle=False)


@dataclass
class AlgorithmSetting:
    """An algorithm with the model and data it is tested on, and extra Trainer arguments."""

    algorithm: Callable[[], Algorithm]
    model: Callable[[], Any] = lambda: tiny_net(0)
    data: Callable[[], DataLoader] = image_loader
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)


def _fitnets() -> FitNets:
    return FitNets(teachers(1), student_feature='0', teacher_feature='0', student_channels=4, teacher_channels=4)


def _crd() -> CRD:
    return CRD(teachers(1), student_dim=16, teacher_dim=16, num_data=48, student_feature='4', feat_dim=8, nce_k=16)


ALGORITHM_SETTINGS: dict[str, AlgorithmSetting] = {
    'label_smoothing': AlgorithmSetting(lambda: LabelSmoothing(smoothing=0.1)),  # fused into the loss
    'kd_kl': AlgorithmSetting(lambda: KnowledgeDistillation(teachers(1), kd_loss='kl', temperature=4.0)),
    'kd_mse': AlgorithmSetting(lambda: KnowledgeDistillation(teachers(1), kd_loss='mse', kd_loss_weight=0.5)),
    'kd_early_stop': AlgorithmSetting(lambda: KnowledgeDistillation(teachers(1), kd_loss='mse', end='0.5dur')),
    'pool_all': AlgorithmSetting(lambda: KnowledgeDistillation(teachers(3), pool_mode='all')),
    'pool_greedy_topk': AlgorithmSetting(lambda: KnowledgeDistillation(teachers(3), pool_mode='greedy_topk', k=2,
                                                                       scores=[0.1, 0.9, 0.5])),
    'pool_random_k': AlgorithmSetting(lambda: KnowledgeDistillation(teachers(3), pool_mode='random_k', k=2, seed=3)),
    'pool_random_1': AlgorithmSetting(lambda: KnowledgeDistillation(teachers(3), pool_mode='random_1', seed=3)),
    'fitnets': AlgorithmSetting(_fitnets),  # a trainable head: in the optimizer and the checkpoint
    # a head whose window opens after the checkpoint: optimizer state must exist for it before it is first used
    'fitnets_late': AlgorithmSetting(lambda: FitNets(teachers(1), student_feature='0', teacher_feature='0',
                                                     student_channels=4, teacher_channels=4, start='4ba')),
    # CRD: embeddings, banks and Z in the checkpoint, the negatives' generator in the algorithm's state
    'crd': AlgorithmSetting(_crd, data=indexed_image_loader),
    'fsp_init': AlgorithmSetting(lambda: FSP(teachers(1), ['0', '2', '3'], end='4ba')),  # ends after the checkpoint
    # pruning: one-shot before the checkpoint at batch 3, iterative before and after it; masks in the state
    'magnitude_one_shot': AlgorithmSetting(lambda: MagnitudePruning([('2ba', 0.6)])),
    'magnitude_iterative': AlgorithmSetting(lambda: MagnitudePruning([('2ba', 0.5), ('4ba', 0.75)], exclude=[])),
    'random_sparse_init': AlgorithmSetting(lambda: RandomSparseInit(0.5, seed=1)),
    # structured AGP: rounds at batches 1 and 3 (before the checkpoint) and 5 (after); channel masks in the state
    'structured_agp': AlgorithmSetting(lambda: StructuredPruning(0.5, initial_sparsity=0.25, start='1ba', end='5ba',
                                                                 interval='2ba')),
    'fixed_mask': AlgorithmSetting(lambda: FixedMaskTraining({'0': (torch.arange(36) % 2 == 0).view(4, 1, 3, 3)})),
}
