"""Registry test: every algorithm trains a few batches, survives checkpoint and resume, and ends where an
uninterrupted run ends (weights and the algorithm's own state)."""

from __future__ import annotations

import pytest
import torch
from composer import Trainer
from torch.utils.data import DataLoader, TensorDataset

from recipes.checkpoint_safety import use_weights_only_checkpoint_loading
from tests.algorithm_settings import ALGORITHM_SETTINGS, tiny_net


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 8, 8, generator=g), torch.randint(0, 3, (48,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False)


def trainer(algorithm, folder, **kwargs) -> Trainer:
    use_weights_only_checkpoint_loading()
    return Trainer(model=tiny_net(0), train_dataloader=loader(), max_duration='6ba', algorithms=[algorithm],
                   optimizers=None, save_folder=str(folder), save_interval='1ba', progress_bar=False,
                   device='cpu', seed=0, **kwargs)


@pytest.mark.parametrize('name', sorted(ALGORITHM_SETTINGS))
def test_trains_checkpoints_and_resumes(name, tmp_path):
    full_algo = ALGORITHM_SETTINGS[name]()
    full = trainer(full_algo, tmp_path / 'full')
    start = {k: v.clone() for k, v in full.state.model.state_dict().items()}
    full.fit()
    changed = [k for k, v in full.state.model.state_dict().items() if not torch.equal(v, start[k])]
    assert changed, 'training changed no weight'

    resumed_algo = ALGORITHM_SETTINGS[name]()
    resumed = trainer(resumed_algo, tmp_path / 'resumed', load_path=str(tmp_path / 'full' / 'ep0-ba3-rank0.pt'))
    assert int(resumed.state.timestamp.batch) == 3
    resumed.fit()
    for k, v in full.state.model.state_dict().items():
        torch.testing.assert_close(resumed.state.model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert resumed_algo.teacher_forwards == full_algo.teacher_forwards
    assert torch.equal(resumed_algo.pool.state_dict()['generator'], full_algo.pool.state_dict()['generator'])
