"""Every algorithm of the project with small settings, Composer style: one entry per algorithm configuration.

``tests/test_algorithm_resume.py`` trains each entry a few batches, checkpoints, resumes, and checks the result
equals an uninterrupted run. Add an entry here when you add an algorithm.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from composer.models import ComposerClassifier

from algorithms.distillation import KnowledgeDistillation


def tiny_net(seed: int) -> ComposerClassifier:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 3),
    )
    return ComposerClassifier(net, num_classes=3)


def teachers(n: int) -> list[ComposerClassifier]:
    return [tiny_net(100 + i) for i in range(n)]


ALGORITHM_SETTINGS: dict[str, Callable[[], Any]] = {
    'kd_kl': lambda: KnowledgeDistillation(teachers(1), kd_loss='kl', temperature=4.0),
    'kd_mse': lambda: KnowledgeDistillation(teachers(1), kd_loss='mse', kd_loss_weight=0.5),
    'kd_early_stop': lambda: KnowledgeDistillation(teachers(1), kd_loss='mse', end='0.5dur'),
    'pool_all': lambda: KnowledgeDistillation(teachers(3), pool_mode='all'),
    'pool_greedy_topk': lambda: KnowledgeDistillation(teachers(3), pool_mode='greedy_topk', k=2,
                                                      scores=[0.1, 0.9, 0.5]),
    'pool_random_k': lambda: KnowledgeDistillation(teachers(3), pool_mode='random_k', k=2, seed=3),
    'pool_random_1': lambda: KnowledgeDistillation(teachers(3), pool_mode='random_1', seed=3),
}
