"""FSP and CRD against hand computations and transcriptions of RepDistiller, and in Composer Trainers with KD."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from composer import Callback, Trainer
from composer.core import State
from composer.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

from algorithms.distillation import KnowledgeDistillation, TeacherPool
from algorithms.feature_distillation import (CRD, FSP, ContrastMemory, Embed, contrast_loss, fsp_loss, fsp_matrices,
                                             split_index)
from tests.helpers.algorithm_settings import tiny_net
from tests.helpers.teacher_registry import resnet_registry


# --- FSP ------------------------------------------------------------------------------------------------------------
def reference_fsp(g):  # RepDistiller's FSP.compute_fsp, transcribed
    out = []
    for bot, top in zip(g[:-1], g[1:]):
        b_h, t_h = bot.shape[2], top.shape[2]
        if b_h > t_h:
            bot = F.adaptive_avg_pool2d(bot, (t_h, t_h))
        elif b_h < t_h:
            top = F.adaptive_avg_pool2d(top, (b_h, b_h))
        bot, top = bot.unsqueeze(1), top.unsqueeze(2)
        bot = bot.view(bot.shape[0], bot.shape[1], bot.shape[2], -1)
        top = top.view(top.shape[0], top.shape[1], top.shape[2], -1)
        out.append((bot * top).mean(-1))
    return out


def test_fsp_matrix_by_hand_and_against_repdistiller():
    bottom = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[1.0, 0.0], [0.0, 1.0]]]])  # [1, 2, 2, 2]
    top = torch.tensor([[[[2.0]]]])  # [1, 1, 1, 1]: the bottom map is pooled to 1x1 -> channel means 2.5, 0.5
    (g,) = fsp_matrices([bottom, top])
    assert g.shape == (1, 1, 2) and torch.allclose(g, torch.tensor([[[5.0, 1.0]]]))
    same = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]]]])  # same size: G[j, i] = mean(top_j * bottom_i)
    (g,) = fsp_matrices([bottom, same])
    assert torch.allclose(g, torch.tensor([[[(1 - 2 + 6 + 0) / 4, (1 + 0 + 0 + 0) / 4]]]))
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 5, 4, 4, generator=gen),
             torch.randn(3, 6, 4, 4, generator=gen)]
    for ours, ref in zip(fsp_matrices(feats), reference_fsp(feats)):
        torch.testing.assert_close(ours, ref)


def test_fsp_loss_is_the_sum_over_pairs_of_the_mean_squared_difference():
    gen = torch.Generator().manual_seed(1)
    s = [torch.randn(2, 3, 4, 4, generator=gen), torch.randn(2, 4, 2, 2, generator=gen),
         torch.randn(2, 2, 2, 2, generator=gen)]
    t = [torch.randn(2, 3, 8, 8, generator=gen), torch.randn(2, 4, 4, 4, generator=gen),
         torch.randn(2, 2, 4, 4, generator=gen)]  # spatial sizes may differ from the student's, channels not
    expected = sum((a - b).pow(2).mean() for a, b in zip(reference_fsp(s), reference_fsp(t)))
    assert fsp_loss(s, t).item() == pytest.approx(expected.item(), rel=1e-6)
    assert fsp_loss(s, s).item() == 0.0
    with pytest.raises(ValueError, match='equal channel counts'):
        fsp_loss(s, [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2), torch.randn(2, 2, 2, 2)])
    with pytest.raises(ValueError, match='two or more student features'):
        FSP([tiny_net(1)], ['0'], end='1ba')


class LossRecorder(Callback):
    def __init__(self):
        self.losses = []

    def batch_end(self, state: State, logger: Logger) -> None:
        self.losses.append({k: v.item() for k, v in state.loss.items()})


def test_fsp_is_an_init_stage_alone_in_total_then_gone():
    pool = TeacherPool([tiny_net(100)])
    student = tiny_net(0)
    fc = student.module[5].weight.detach().clone()
    recorder = LossRecorder()
    fsp = FSP(pool, ['0', '2', '3'], end='2ba', weight=2.0)
    trainer = Trainer(model=student, train_dataloader=loader(), max_duration='4ba', device='cpu',
                      algorithms=[fsp, KnowledgeDistillation(pool)], callbacks=[recorder], progress_bar=False)
    trainer.fit()
    inside, after = recorder.losses[:2], recorder.losses[2:]
    for loss in inside:  # ce and kd are logged but not trained on
        assert set(loss) == {'total', 'ce', 'kd', 'fsp'} and loss['fsp'] > 0
        assert loss['total'] == pytest.approx(2.0 * loss['fsp'], rel=1e-6)
    for loss in after:
        assert set(loss) == {'total', 'ce', 'kd'}
        assert loss['total'] == pytest.approx(loss['ce'] + loss['kd'], rel=1e-6)
    assert fsp.find_unused_parameters  # DDP must not wait for the classifier's gradient inside the window
    assert not torch.equal(student.module[5].weight, fc)  # trained after the window


def test_fsp_classifier_untouched_inside_the_window():
    student = tiny_net(0)
    fc = student.module[5].weight.detach().clone()
    conv = student.module[0].weight.detach().clone()
    trainer = Trainer(model=student, train_dataloader=loader(), max_duration='2ba', device='cpu',
                      algorithms=[FSP([tiny_net(100)], ['0', '2', '3'], end='2ba')], progress_bar=False,
                      optimizers=torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9))
    trainer.fit()
    assert torch.equal(student.module[5].weight, fc) and not torch.equal(student.module[0].weight, conv)


# --- CRD: the pieces ------------------------------------------------------------------------------------------------
def test_embed_is_linear_then_l2_normalised():
    embed = Embed(12, 5)
    x = torch.randn(4, 3, 2, 2)
    v = embed(x)
    assert v.shape == (4, 5)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(v, F.normalize(embed.linear(x.flatten(1))))


def test_memory_initialisation_and_momentum_update_by_hand():
    torch.manual_seed(0)
    memory = ContrastMemory(feat_dim=3, num_data=1000, nce_m=0.5)
    stdv = 1 / math.sqrt(3 / 3)
    assert memory.memory_s.abs().max() <= stdv and memory.memory_s.min() < -0.9 * stdv
    assert memory.z.tolist() == [-1.0, -1.0]
    memory = ContrastMemory(feat_dim=2, num_data=3, nce_m=0.5)
    memory.memory_s.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    memory.memory_t.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]))
    memory.update(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    r = 1 / math.sqrt(2)  # 0.5 * [1, 0] + 0.5 * [0, 1] = [.5, .5] -> normalised
    torch.testing.assert_close(memory.memory_s, torch.tensor([[r, r], [0.0, 1.0], [0.6, 0.8]]))
    torch.testing.assert_close(memory.memory_t, torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]))  # [0,1] kept
    memory.nce_m = 0.75
    memory.update(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    w = torch.tensor([0.25, 0.75])  # 0.75 * [0, 1] + 0.25 * [1, 0]
    torch.testing.assert_close(memory.memory_s[1], w / w.norm())


def crd(num_data=10, nce_k=4, **kwargs):
    return CRD([tiny_net(100)], student_dim=16, teacher_dim=16, num_data=num_data, student_feature='4',
               feat_dim=8, nce_k=nce_k, **kwargs)


def test_negatives_positive_first_uniform_seeded_and_capped():
    term = crd(num_data=10, nce_k=16384)
    assert term.nce_k == 9  # capped at N - 1
    idx = torch.tensor([3, 7, 0])
    draws = term.sample(idx)
    assert draws.shape == (3, 10) and torch.equal(draws[:, 0], idx)
    assert 0 <= int(draws.min()) and int(draws.max()) < 10
    again = crd(num_data=10, nce_k=16384).sample(idx)
    assert torch.equal(draws, again)  # the sampler's own seeded generator
    many = crd(num_data=10, nce_k=9).sample(torch.zeros(2000, dtype=torch.long))[:, 1:]
    counts = torch.bincount(many.flatten(), minlength=10).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.1  # uniform over [0, N) (sd 2.2%)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2, 0])
    other = crd(num_data=10, nce_k=9, labels=labels).sample(torch.arange(10).repeat(200))
    assert torch.all(labels[other[:, 1:]] != labels[other[:, :1]])  # RepDistiller's CIFAR loader: other classes
    assert set(other[other[:, 0] == 0, 1:].flatten().tolist()) == {2, 3, 4, 5, 6, 7, 8}


def reference_crd(memory_v1, memory_v2, v1, v2, y, idx, n_data, t=0.07, momentum=0.5, eps=1e-7):
    """RepDistiller's ContrastMemory.forward (Z unset) and ContrastLoss on both outputs, transcribed."""
    memory_v1, memory_v2 = memory_v1.clone(), memory_v2.clone()
    b, k, d = v1.size(0), idx.size(1) - 1, memory_v1.size(1)
    out_v2 = torch.exp(torch.div(torch.bmm(memory_v1.index_select(0, idx.view(-1)).view(b, k + 1, d),
                                           v2.view(b, d, 1)), t))
    out_v1 = torch.exp(torch.div(torch.bmm(memory_v2.index_select(0, idx.view(-1)).view(b, k + 1, d),
                                           v1.view(b, d, 1)), t))
    z_v1, z_v2 = (out_v1.mean() * n_data).item(), (out_v2.mean() * n_data).item()
    out_v1, out_v2 = out_v1 / z_v1, out_v2 / z_v2
    for memory, v in ((memory_v1, v1), (memory_v2, v2)):
        pos = memory.index_select(0, y.view(-1)).mul(momentum).add(v * (1 - momentum))
        memory.index_copy_(0, y, pos.div(pos.pow(2).sum(1, keepdim=True).pow(0.5)))

    def contrast_loss_ref(x):
        m, pn = x.size(1) - 1, 1 / float(n_data)
        p_pos = x.select(1, 0)
        log_d1 = torch.div(p_pos, p_pos.add(m * pn + eps)).log_()
        p_neg = x.narrow(1, 1, m)
        log_d0 = torch.div(p_neg.clone().fill_(m * pn), p_neg.add(m * pn + eps)).log_()
        return - (log_d1.sum(0) + log_d0.view(-1, 1).sum(0)) / x.shape[0]

    return contrast_loss_ref(out_v1) + contrast_loss_ref(out_v2), (z_v1, z_v2), memory_v1, memory_v2


def test_crd_loss_memory_and_z_against_repdistiller():
    torch.manual_seed(0)
    memory = ContrastMemory(feat_dim=8, num_data=20, nce_t=0.07, nce_m=0.5)
    gen = torch.Generator().manual_seed(3)
    v_s, v_t = F.normalize(torch.randn(4, 8, generator=gen)), F.normalize(torch.randn(4, 8, generator=gen))
    y = torch.tensor([2, 5, 11, 19])
    idx = torch.cat([y.unsqueeze(1), torch.randint(0, 20, (4, 6), generator=gen)], dim=1)
    ref_loss, ref_z, ref_m1, ref_m2 = reference_crd(memory.memory_s, memory.memory_t, v_s, v_t, y, idx, 20)
    out_s, out_t = memory(v_s, v_t, y, idx)
    loss = contrast_loss(out_s, 20) + contrast_loss(out_t, 20)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    assert memory.z.tolist() == pytest.approx(list(ref_z), rel=1e-6)
    torch.testing.assert_close(memory.memory_s, ref_m1)
    torch.testing.assert_close(memory.memory_t, ref_m2)
    z = memory.z.clone()
    memory(v_s, v_t, y, idx)
    assert torch.equal(memory.z, z)  # Z is estimated on the first batch and kept


def test_crd_arguments_are_validated():
    for kwargs, name in [({'nce_k': 0}, 'nce_k'), ({'nce_m': 1.0}, 'nce_m'), ({'nce_m': -0.1}, 'nce_m'),
                         ({'nce_t': 0.0}, 'nce_t'), ({'num_data': 1}, 'num_data')]:
        with pytest.raises(ValueError, match=name):
            crd(**kwargs)


# --- CRD in a Trainer -----------------------------------------------------------------------------------------------
def loader(indices: bool = False, shuffle: bool = False):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
    data = TensorDataset(x, y, torch.arange(16)) if indices else TensorDataset(x, y)
    return DataLoader(data, batch_size=8, shuffle=shuffle, generator=torch.Generator().manual_seed(1))


def test_missing_index_is_a_clear_error():
    with pytest.raises(ValueError, match='indices: true'):
        split_index((torch.zeros(2), torch.zeros(2)))
    (x, y), index = split_index([torch.zeros(2), torch.ones(2), torch.arange(2)])
    assert torch.equal(index, torch.arange(2))
    batch, index = split_index({'x': torch.zeros(2), 'index': torch.arange(2)})
    assert set(batch) == {'x'}
    trainer = Trainer(model=tiny_net(0), train_dataloader=loader(indices=False), max_duration='1ba', device='cpu',
                      algorithms=[crd(num_data=16)], progress_bar=False)
    with pytest.raises(ValueError, match='indices: true'):
        trainer.fit()


class BatchSeen(Callback):
    """What the model's forward, its loss and the teachers get: the batch at AFTER_LOSS, once per microbatch."""

    def __init__(self):
        self.lengths, self.losses = [], []

    def after_loss(self, state: State, logger: Logger) -> None:
        self.lengths.append(len(state.batch))

    def before_backward(self, state: State, logger: Logger) -> None:  # the microbatch's final loss dict
        self.losses.append({k: v.item() for k, v in state.loss.items()})


@pytest.mark.parametrize('crd_first', [True, False])
def test_crd_with_kd_in_one_trainer(crd_first):
    pool = TeacherPool([tiny_net(100)])
    term = CRD(pool, student_dim=16, teacher_dim=16, num_data=16, student_feature='4', feat_dim=8, nce_k=8)
    algorithms = [term, KnowledgeDistillation(pool)] if crd_first else [KnowledgeDistillation(pool), term]
    student, seen = tiny_net(0), BatchSeen()
    trainer = Trainer(model=student, train_dataloader=loader(indices=True, shuffle=True), max_duration='1ba',
                      device='cpu', algorithms=algorithms, callbacks=[seen], progress_bar=False,
                      device_train_microbatch_size=4)  # two microbatches: each gets its own slice of the indices
    heads = student.distillation_heads['crd']
    embed = heads.embed_s.linear.weight.detach().clone()
    banks = heads.memory.memory_s.clone(), heads.memory.memory_t.clone()
    first = next(iter(loader(indices=True, shuffle=True)))[2]  # the first batch's indices
    trainer.fit()
    for loss in seen.losses:
        assert set(loss) == {'total', 'ce', 'kd', 'crd'}
        assert loss['total'] == pytest.approx(loss['ce'] + loss['kd'] + 0.8 * loss['crd'], rel=1e-5)
    assert seen.lengths == [2, 2]  # model, loss, teachers and callbacks saw (x, y)
    assert pool.forwards == 2  # one teacher forward per microbatch, shared by the two terms
    assert not torch.equal(heads.embed_s.linear.weight, embed)  # the embedding is in the optimizer
    for bank, before in zip((heads.memory.memory_s, heads.memory.memory_t), banks):
        changed = (bank != before).any(dim=1).nonzero().flatten()
        assert sorted(changed.tolist()) == sorted(first.tolist())  # the batch's rows, no others
    assert (heads.memory.z > 0).all()
    assert any(k.startswith('distillation_heads.crd.memory.') for k in student.state_dict())  # checkpointed


# --- the YAML factories ---------------------------------------------------------------------------------------------
def test_yaml_factories_read_the_feature_shapes(tmp_path):
    from recipes.core.algorithm_factories import TEACHER_FACTORIES
    from recipes.core.errors import ConfigError

    registry, teachers = resnet_registry(tmp_path)
    term = TEACHER_FACTORIES['crd'](teachers, num_data=100, registry=registry)
    assert isinstance(term, CRD) and term.needs_sample_indices and term.weight == 0.8 and term.nce_k == 99
    assert term.heads().embed_s.linear.in_features == 64 and term.heads().memory.memory_s.shape == (100, 128)
    with pytest.raises(ConfigError, match='num_data'):
        TEACHER_FACTORIES['crd'](teachers, registry=registry)
    registry.train_size = lambda: 50  # the run's registry computes the training set's size when asked
    assert TEACHER_FACTORIES['crd'](teachers, registry=registry).num_data == 50
    with pytest.raises(ConfigError, match='nce_m'):
        TEACHER_FACTORIES['crd'](teachers, num_data=100, nce_m=1.0, registry=registry)
    names = ['relu', 'layer1', 'layer2', 'layer3']
    term = TEACHER_FACTORIES['fsp'](teachers, names, end='30ep', registry=registry)
    assert isinstance(term, FSP) and str(term.end) == '30ep' and term.weight == 1.0
    wide, teachers = resnet_registry(tmp_path, student='cifar_resnet8x4')  # channels 32.. vs the teacher's 16..
    with pytest.raises(ConfigError, match='equal channel counts'):
        TEACHER_FACTORIES['fsp'](teachers, names, end='30ep', registry=wide)
