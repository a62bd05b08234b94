"""Run by tests/algorithms/test_distillation_ddp.py under `composer -n 2`: FitNets heads on a DDP student (CPU, gloo)."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from composer import Trainer  # noqa: E402
from composer.utils import dist  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from algorithms.feature_distillation import FitNets  # noqa: E402
from tests.helpers.algorithm_settings import tiny_net  # noqa: E402

g = torch.Generator().manual_seed(0)
data = TensorDataset(torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g))
hint = FitNets([tiny_net(100)], '0', '0', 4, 4, end='0.5dur')  # no head gradient in the second half
trainer = Trainer(model=tiny_net(0), train_dataloader=DataLoader(data, batch_size=8, sampler=dist.get_sampler(data)),
                  max_duration='6ba', algorithms=[hint], device='cpu', progress_bar=False,
                  device_train_microbatch_size=4)
trainer.fit()
heads = dist.all_gather_object(hint.regressor[0].weight.detach().clone())
weights = dist.all_gather_object(trainer.state.model.module.module[0].weight.detach().clone())
if dist.get_global_rank() == 0:
    print('heads equal across ranks:', torch.equal(heads[0], heads[1]),
          'model equal:', torch.equal(weights[0], weights[1]))
