"""Importable pieces for blockwise tests (Dask workers import them by name): a tiny teacher, synthetic data
labelled by the teacher itself (so its accuracy is 100%), and a data factory that kills its worker once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SHAPE = (1, 12, 12)


def tiny_teacher() -> nn.Module:
    """conv-BN-ReLU x2, pool, conv-BN-ReLU, a 1x1 conv, average pool, linear: three replaceable layers."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


def save_teacher(path: Path, seed: int = 0) -> nn.Module:
    """A tiny teacher with random weights and non-trivial BN statistics, saved as a plain state dict."""
    torch.manual_seed(seed)
    model = tiny_teacher()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    torch.save(model.state_dict(), path)
    return model


def tiny_data(checkpoint: str, n_train: int = 128, n_val: int = 64, batch: int = 32, seed: int = 1):
    """Gaussian images labelled by the teacher's predictions: (train loader, validation batches)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_val, *SHAPE, generator=g)
    teacher = tiny_teacher()
    teacher.load_state_dict(torch.load(checkpoint, weights_only=True))
    with torch.no_grad():
        y = teacher.eval()(x).argmax(1)
    train = DataLoader(TensorDataset(x[:n_train], y[:n_train]), batch_size=batch, shuffle=True)
    val = [(x[n_train:], y[n_train:])]
    return train, val


def killing_data(checkpoint: str, marker: str):
    """``tiny_data``, except that the first call (no ``marker`` file yet) kills the process it runs in, as a worker
    lost mid-task."""
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return tiny_data(checkpoint)


def worker_name(i: int) -> str:
    """The name of the Dask worker running this task."""
    from distributed import get_worker

    return get_worker().name


def worker_settings(dask_worker: object = None) -> dict:
    """What a worker runs with (``client.run`` passes the worker): its name, Dask's profiler switch, the allocator
    variable and its CPU affinity."""
    import os

    import dask

    return {'name': dask_worker.name, 'profile': dask.config.get('distributed.worker.profile.enabled'),
            'arena_max': os.environ.get('MALLOC_ARENA_MAX'), 'cores': sorted(os.sched_getaffinity(0))}
