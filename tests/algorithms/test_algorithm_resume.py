"""Registry test: every algorithm setting trains a few batches, survives checkpoint and resume, and ends where an
uninterrupted run ends: the model's weights and the algorithm's own ``state_dict()`` (heads, masks, samplers)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from composer import Trainer

from recipes.core.checkpoint_safety import use_weights_only_checkpoint_loading
from tests.helpers.algorithm_settings import ALGORITHM_SETTINGS, AlgorithmSetting


def trainer(setting: AlgorithmSetting, algorithm, folder, **kwargs) -> Trainer:
    use_weights_only_checkpoint_loading()
    return Trainer(model=setting.model(), train_dataloader=setting.data(), max_duration='6ba', algorithms=[algorithm],
                   optimizers=None, save_folder=str(folder), save_interval='1ba', progress_bar=False,
                   device='cpu', seed=0, **setting.trainer_kwargs, **kwargs)


def assert_same(a: Any, b: Any, where: str = 'state') -> None:
    """Recursive equality of state dicts: tensors exactly, containers element-wise, the rest by ``==``."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f'{where}: keys {sorted(a)} vs {sorted(b)}'
        for k in a:
            assert_same(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f'{where}[{i}]')
    else:
        assert a == b, f'{where}: {a!r} vs {b!r}'


@pytest.mark.parametrize('name', sorted(ALGORITHM_SETTINGS))
def test_trains_checkpoints_and_resumes(name, tmp_path):
    setting = ALGORITHM_SETTINGS[name]
    full_algo = setting.algorithm()
    full = trainer(setting, full_algo, tmp_path / 'full')
    start = {k: v.clone() for k, v in full.state.model.state_dict().items()}
    full.fit()
    changed = [k for k, v in full.state.model.state_dict().items() if not torch.equal(v, start[k])]
    assert changed, 'training changed no weight'

    resumed_algo = setting.algorithm()
    resumed = trainer(setting, resumed_algo, tmp_path / 'resumed', load_path=str(tmp_path / 'full' / 'ep0-ba3-rank0.pt'))
    assert int(resumed.state.timestamp.batch) == 3
    resumed.fit()
    for k, v in full.state.model.state_dict().items():
        torch.testing.assert_close(resumed.state.model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert_same(resumed_algo.state_dict(), full_algo.state_dict())
    heads = [k for k in changed if 'distillation_heads' in k]  # a trainable head: changed, saved and restored above
    has_heads = getattr(full_algo, 'heads', lambda: None)() is not None
    assert bool(heads) == has_heads
