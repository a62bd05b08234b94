"""Composable distillation terms: one loss dict, one teacher forward per step for terms that share a pool,
user losses through the ``fn(student_io, teacher_io, batch)`` seam, and trainable heads in the optimizer."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from composer import Trainer
from torch.utils.data import DataLoader, TensorDataset

from algorithms.distillation import DistillationTerm, KnowledgeDistillation, TeacherPool, kl_divergence_loss
from algorithms.feature_distillation import FitNets, hint_loss
from tests.helpers.algorithm_settings import tiny_net


def loader(n=16, batch=8):
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)),
                      batch_size=batch)


def fit(algorithms, duration='1ba', model=None, **kwargs):
    t = Trainer(model=model or tiny_net(0), train_dataloader=loader(), max_duration=duration, algorithms=algorithms,
                device='cpu', progress_bar=False, seed=0, **kwargs)
    t.fit()
    return t


def feature_mse(student, teacher, batch):
    """A user's loss through the seam: MSE between the first conv's outputs."""
    return F.mse_loss(student.feature('0'), teacher.feature('0'))


def test_terms_compose_into_one_loss_dict_with_hand_computed_values():
    teacher, model = tiny_net(100), tiny_net(0)
    initial = copy.deepcopy(model)
    pool = TeacherPool([teacher])
    kd = KnowledgeDistillation(pool, kd_loss='kl', kd_loss_weight=0.5, temperature=2.0)
    user = DistillationTerm(pool, loss_fn=feature_mse, weight=3.0, key='feat', student_features=['0'],
                            teacher_features=['0'])
    t = fit([kd, user], model=model)
    loss = t.state.loss
    assert set(loss) == {'total', 'ce', 'kd', 'feat'}
    x, y = next(iter(loader()))
    with torch.no_grad():
        s_logits, t_logits = initial((x, y)), teacher((x, y))
        feat = F.mse_loss(initial.module[0](x), teacher.module[0](x))
        kd_value = kl_divergence_loss(s_logits, t_logits, 2.0)
        ce = F.cross_entropy(s_logits, y)
    assert loss['kd'].item() == pytest.approx(kd_value.item(), rel=1e-5)
    assert loss['feat'].item() == pytest.approx(feat.item(), rel=1e-5)
    assert loss['total'].item() == pytest.approx(ce.item() + 0.5 * kd_value.item() + 3.0 * feat.item(), rel=1e-5)


@pytest.mark.parametrize('shared', [True, False])
def test_terms_sharing_a_pool_share_its_forwards_and_its_draws(shared):
    teachers = [tiny_net(100 + i) for i in range(3)]
    pool_a = TeacherPool(teachers, mode='random_1', seed=5)
    pool_b = pool_a if shared else TeacherPool(teachers, mode='random_1', seed=5)
    kd = KnowledgeDistillation(pool_a, kd_loss='mse')
    user = DistillationTerm(pool_b, loss_fn=feature_mse, key='feat', student_features=['0'], teacher_features=['0'])
    fit([kd, user], duration='4ba', device_train_microbatch_size=4)  # 2 microbatches per step
    assert kd.teacher_forwards == user.teacher_forwards == 8
    if shared:
        assert pool_a.forwards == 8  # one forward per microbatch, not one per term
    else:
        assert pool_a.forwards == pool_b.forwards == 8


def test_two_terms_with_one_key_are_refused():
    pool = TeacherPool([tiny_net(100)])
    with pytest.raises(ValueError, match="already has a 'kd' entry"):
        fit([KnowledgeDistillation(pool), KnowledgeDistillation(pool)])
    with pytest.raises(ValueError, match='key must be'):
        DistillationTerm(pool, loss_fn=feature_mse, key='total')


def test_unknown_teacher_feature_fails_at_construction():
    with pytest.raises(KeyError, match="no module named 'layer9'"):
        DistillationTerm([tiny_net(100)], loss_fn=feature_mse, teacher_features=['layer9'])


def test_fitnets_head_is_trained_and_in_the_optimizer():
    hint = FitNets([tiny_net(100)], student_feature='0', teacher_feature='0', student_channels=4, teacher_channels=4,
                   weight=10.0)
    before = copy.deepcopy(hint.regressor.state_dict())
    t = fit([hint], duration='3ba')
    held = {id(p) for group in t.state.optimizers[0].param_groups for p in group['params']}
    assert all(id(p) in held for p in hint.regressor.parameters())
    assert not torch.equal(hint.regressor[0].weight, before['0.weight'])
    assert t.state.model.distillation_heads['hint'] is hint.regressor  # registered on the student: checkpointed
    assert set(t.state.loss) == {'total', 'ce', 'hint'}


def test_hint_loss_against_hand_computation():
    reg = torch.nn.Conv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        reg.weight.copy_(torch.arange(6.).reshape(3, 2, 1, 1))
    s, t = torch.ones(1, 2, 4, 4), torch.zeros(1, 3, 2, 2)
    # each output channel c = sum of its weights (0+1, 2+3, 4+5); pooled 4x4 -> 2x2 keeps the constant maps
    assert hint_loss(s, t, reg).item() == pytest.approx((1 + 25 + 81) / 3)


def test_feature_distillation_readme_runs():
    import re
    from pathlib import Path
    readme = Path(__file__).resolve().parents[2] / 'algorithms' / 'feature_distillation' / 'README.md'
    blocks = re.findall(r'```python\n(.*?)```', readme.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(readme), 'exec'), {'__name__': 'readme'})
