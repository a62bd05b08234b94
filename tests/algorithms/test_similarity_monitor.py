"""SimilarityMonitor: per-layer similarity to a reference, logged during training, in the checkpoint."""

from __future__ import annotations

import copy

import pytest
import torch
from composer import Trainer
from composer.loggers import InMemoryLogger
from torch.utils.data import DataLoader, TensorDataset

from algorithms.analysis import SimilarityMonitor
from composer.models import ComposerClassifier


def tiny_net(seed: int) -> ComposerClassifier:
    """No BatchNorm: with a zero learning rate nothing at all changes (running statistics would)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(16, 3))
    return ComposerClassifier(net, num_classes=3)


def data(n=64):
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)),
                      batch_size=16)


@pytest.mark.parametrize('lr, moved', [(0.0, False), (0.5, True)])
def test_similarity_to_the_starting_point_is_one_until_the_weights_move(lr, moved):
    model = tiny_net(0)
    monitor = SimilarityMonitor(copy.deepcopy(model), layers=['0', '4'], images=64, max_datapoints=2000)
    logs = InMemoryLogger()
    Trainer(model=model, train_dataloader=data(), eval_dataloader=data(), max_duration='2ep', callbacks=[monitor],
            loggers=[logs], optimizers=torch.optim.SGD(model.parameters(), lr=lr), device='cpu',
            progress_bar=False).fit()
    assert [h['epoch'] for h in monitor.history] == [1, 2]
    last = monitor.history[-1]
    if moved:
        assert last['0'] < 0.999  # the first conv changed: its representation is no longer the reference's
    else:
        assert last['0'] == pytest.approx(1.0, abs=1e-6) and last['4'] == pytest.approx(1.0, abs=1e-6)
    assert float(logs.most_recent_values['similarity/0']) == pytest.approx(last['0'])
    assert monitor.state_dict() == {'history': monitor.history}


def test_bad_arguments():
    with pytest.raises(ValueError, match='checkpoint not found'):
        SimilarityMonitor('/no/such.pt', layers=['0'])
    with pytest.raises(ValueError, match='interval'):
        SimilarityMonitor(tiny_net(0), layers=['0'], interval=0)
