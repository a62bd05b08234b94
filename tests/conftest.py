"""Shared fixtures: tiny Fashion-MNIST in the real format and a small recipe config pointing at it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from recipes.core.config import load_config
from tests.helpers.tiny_data import write_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
DEFAULT_YAML = REPO / 'yamls' / 'fashion_mnist' / 'resnet8.yaml'

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope='session')
def fmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 train / 32 test Fashion-MNIST images in torchvision's raw idx layout."""
    root = tmp_path_factory.mktemp('fmnist')
    write_fashion_mnist(root, n_train=64, n_test=32)
    return root


def tiny_overrides(data: Path, run_dir: Path, **extra: Any) -> list[str]:
    """Overrides that shrink the default recipe to a few CPU batches on the tiny data."""
    base = {
        'train_loader.path': str(data), 'eval_loader.path': str(data),
        'train_loader.num_workers': 0, 'eval_loader.num_workers': 0,
        'global_train_batch_size': 16, 'global_eval_batch_size': 32,
        'max_duration': '2ep', 'run_dir': str(run_dir), 'progress_bar': False,
        'callbacks': '{}', 'save_interval': '1ep',
    }
    base.update(extra)
    return [f'{k}={"null" if v is None else v}' for k, v in base.items()]


def tiny_config(data: Path, run_dir: Path, yaml: Path = DEFAULT_YAML, **extra: Any) -> dict[str, Any]:
    return load_config(yaml, tiny_overrides(data, run_dir, **extra))
