"""AT, SP and PKT against hand computations on tiny tensors and RepDistiller's formulas, and composed with KD."""

from __future__ import annotations

import math

import pytest
import torch
from composer import Trainer
from torch.utils.data import DataLoader, TensorDataset

from algorithms.distillation import KnowledgeDistillation, TeacherPool
from algorithms.feature_distillation import (PKT, AttentionTransfer, SimilarityPreserving, attention_transfer_loss,
                                             pkt_loss, similarity_preserving_loss)
from tests.helpers.algorithm_settings import tiny_net


def test_attention_transfer_by_hand():
    s = torch.ones(1, 1, 2, 2)
    t = torch.tensor([[[[2.0, 1.0], [1.0, 1.0]]]])
    # maps (p=2, one channel): s -> [1,1,1,1]/2; t -> [4,1,1,1]/sqrt(19)
    a, b = [0.5] * 4, [4 / math.sqrt(19)] + [1 / math.sqrt(19)] * 3
    expected = sum((x - y) ** 2 for x, y in zip(a, b)) / 4
    assert attention_transfer_loss(s, t).item() == pytest.approx(expected, rel=1e-6)
    # the channel mean of f^p: two channels 1 and 3 give the map of one channel sqrt(5) everywhere (uniform)
    two = torch.cat([torch.ones(1, 1, 2, 2), 3 * torch.ones(1, 1, 2, 2)], dim=1)
    assert attention_transfer_loss(two, s).item() == pytest.approx(0.0, abs=1e-7)
    # a larger student map is average-pooled to the teacher's size: 4x4 blocks of the 2x2 pattern pool to it
    big = t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert attention_transfer_loss(big, t).item() == pytest.approx(0.0, abs=1e-7)


def test_similarity_preserving_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # Gram I, rows already unit
    t = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # Gram all 2 -> rows normalised to 1/sqrt(2)
    r = 1 / math.sqrt(2)
    expected = ((r - 1) ** 2 + r ** 2 + r ** 2 + (r - 1) ** 2) / 4
    assert similarity_preserving_loss(s, t).item() == pytest.approx(expected, rel=1e-6)
    x = torch.randn(4, 3, 2, 2)
    assert similarity_preserving_loss(x, 5 * x).item() == pytest.approx(0.0, abs=1e-6)  # scale-free


def test_pkt_by_hand_and_against_the_reference_formula():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosines I -> (c+1)/2 = [[1, .5], [.5, 1]] -> rows [2/3, 1/3]
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # cosines all 1 -> rows [1/2, 1/2]
    eps = 1e-7
    expected = 2 * (0.5 * math.log((0.5 + eps) / (2 / 3 + eps)) + 0.5 * math.log((0.5 + eps) / (1 / 3 + eps))) / 4
    assert pkt_loss(s, t).item() == pytest.approx(expected, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)

    def reference(out, tgt):  # RepDistiller's cosine_similarity_loss, transcribed
        out = out / (out.pow(2).sum(1, keepdim=True).sqrt() + eps)
        tgt = tgt / (tgt.pow(2).sum(1, keepdim=True).sqrt() + eps)
        ms, ts = (out @ out.t() + 1) / 2, (tgt @ tgt.t() + 1) / 2
        ms, ts = ms / ms.sum(1, keepdim=True), ts / ts.sum(1, keepdim=True)
        return torch.mean(ts * torch.log((ts + eps) / (ms + eps)))

    assert pkt_loss(a, b).item() == pytest.approx(reference(a, b).item(), rel=1e-6)


def loader():
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)),
                      batch_size=8)


@pytest.mark.parametrize('term, key', [
    (lambda pool: AttentionTransfer(pool, ['0']), 'at'),
    (lambda pool: SimilarityPreserving(pool, '4'), 'sp'),
    (lambda pool: PKT(pool, '4'), 'pkt'),
])
def test_feature_terms_compose_with_kd_on_one_teacher_forward(term, key):
    pool = TeacherPool([tiny_net(100)])
    algorithms = [KnowledgeDistillation(pool), term(pool)]
    trainer = Trainer(model=tiny_net(0), train_dataloader=loader(), max_duration='2ba', algorithms=algorithms,
                      device='cpu', progress_bar=False)
    trainer.fit()
    loss = trainer.state.loss
    assert set(loss) == {'total', 'ce', 'kd', key}
    weight = algorithms[1].weight
    assert loss['total'].item() == pytest.approx(loss['ce'].item() + loss['kd'].item() + weight * loss[key].item(),
                                                 rel=1e-5)
    assert pool.forwards == 2  # one teacher forward per step, shared by the two terms


def test_feature_names_must_pair_and_exist():
    with pytest.raises(ValueError, match='must pair up'):
        AttentionTransfer([tiny_net(1)], ['0', '2'], teacher_features=['0'])
    with pytest.raises(KeyError, match="no module named 'layer7'"):
        AttentionTransfer([tiny_net(1)], ['layer7'])


def test_agp_schedule_against_the_formula_and_clamped_after_the_end():
    from algorithms.pruning.agp import agp_sparsity

    # the seed's setting at half of 240 epochs: start 10%, prune every 5 epochs, target 45% at epoch 120
    kw = dict(final=0.45, initial=0.10, start=0, end=120, interval=5)
    assert agp_sparsity(0, **kw) == pytest.approx(0.10)
    assert agp_sparsity(7, **kw) == pytest.approx(0.45 + (0.10 - 0.45) * (1 - 5 / 120) ** 3)  # rounded to epoch 5
    assert agp_sparsity(60, **kw) == pytest.approx(0.45 - 0.35 * 0.125)
    assert agp_sparsity(120, **kw) == 0.45 and agp_sparsity(200, **kw) == 0.45  # held, not reset to 0
    assert agp_sparsity(-1, **kw) == 0.0
    values = [agp_sparsity(t, **kw) for t in range(0, 130)]
    assert all(a <= b for a, b in zip(values, values[1:]))  # never decreases
    with pytest.raises(ValueError):
        agp_sparsity(0, final=1.0)
