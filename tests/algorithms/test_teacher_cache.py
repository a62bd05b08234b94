"""Teacher caches in the library: sparse targets and their losses, the shard format, the cached pool."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from algorithms.distillation import (CachedTeacher, CachedTeacherPool, TeacherCache, TeacherCacheMismatch, TeacherPool,
                                     bytes_per_example, kl_divergence_loss, mse_logits_loss, sampled_targets,
                                     sparse_kl_loss, topk_probabilities, topk_targets)
from algorithms.distillation.teacher_cache import (FORMAT, ShardWriter, batch_digest, bytes_per_row, encode_rows,
                                                   input_digest, masked_counts, shard_fields, shard_name,
                                                   write_manifest)


def _logits(n=6, c=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g) * 3, torch.randn(n, c, generator=g) * 3


@pytest.mark.parametrize('temperature', [1.0, 4.0])
def test_topk_at_k_equal_c_is_the_dense_kl(temperature):
    student, teacher = _logits()
    student.requires_grad_(True)
    dense = kl_divergence_loss(student, teacher, temperature)
    sparse = kl_divergence_loss(student, topk_targets(teacher, 10, temperature), temperature)
    assert torch.allclose(sparse, dense, rtol=1e-5, atol=1e-6)
    (g_dense,) = torch.autograd.grad(dense, student)
    (g_sparse,) = torch.autograd.grad(sparse_kl_loss(student, topk_targets(teacher, 10, temperature), temperature),
                                      student)
    assert torch.isfinite(g_sparse).all() and torch.allclose(g_sparse, g_dense, rtol=1e-4, atol=1e-6)


def test_topk_probabilities_and_tail_add_up_and_the_coarse_kl_is_below_the_full():
    student, teacher = _logits(c=50)
    for k in (1, 5, 20):
        targets = topk_targets(teacher, k, 4.0)
        p = topk_probabilities(targets)
        assert torch.allclose(p.sum(-1) + targets.tail, torch.ones(len(p)), atol=1e-6)
        full = F.softmax(teacher / 4.0, -1)
        assert torch.allclose(p, full.gather(-1, targets.indices), atol=1e-6)  # the top-k's own probabilities
        assert 0 <= sparse_kl_loss(student, targets, 4.0) <= kl_divergence_loss(student, teacher, 4.0) + 1e-5


def test_sampled_targets_are_unbiased_on_a_hand_made_distribution():
    """E[w_i] = p(i) for every class, and E[sampled KL] = the full KL, within 5 standard errors of the mean over
    4,000 draws (the standard error measured from the draws themselves); for the teacher as its own proposal and
    for a flattened proposal (power 0.5, the importance-weight correction at work)."""
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.04, 0.01])
    teacher = (p.log() * 2.0).expand(4000, -1).contiguous()  # logits at T = 2: softmax(teacher / 2) = p
    student = torch.tensor([0.1, 0.3, -0.2, 0.0, 0.5, -1.0]).expand(4000, -1)
    full_kl = kl_divergence_loss(student[:1], teacher[:1], 2.0)
    for power in (1.0, 0.5):
        t = sampled_targets(teacher, 12, 2.0, generator=torch.Generator().manual_seed(1), power=power)
        w = torch.zeros(4000, 6).scatter_add_(-1, t.indices, t.values)
        assert torch.allclose(t.tail, -(p * p.log()).sum().expand(4000), atol=1e-5)
        stderr = w.std(0) / math.sqrt(4000)
        assert ((w.mean(0) - p).abs() <= 5 * stderr + 1e-6).all(), (power, w.mean(0), p, stderr)
        per_row = torch.stack([sparse_kl_loss(student[i:i + 1], t.select(slice(i, i + 1)), 2.0) for i in range(4000)])
        assert abs(per_row.mean() - full_kl) <= 5 * per_row.std() / math.sqrt(4000), (per_row.mean(), full_kl)
        if power == 1.0:
            assert torch.allclose(w.sum(-1), torch.ones(4000))  # count / m over the draws


def test_sparse_targets_refuse_another_temperature_and_mse():
    _, teacher = _logits()
    targets = topk_targets(teacher, 3, 4.0)
    with pytest.raises(ValueError, match='made at temperature 4.0, not 2.0'):
        kl_divergence_loss(teacher, targets, 2.0)
    with pytest.raises(ValueError, match='MSE between logits needs every teacher logit'):
        mse_logits_loss(teacher, targets)


def test_bytes_per_example_follow_the_fields():
    assert bytes_per_example('dense', 10) == 10 * 2 + 4
    assert bytes_per_example('topk', 1000, 5) == 5 * (2 + 2) + 4 + 4
    assert bytes_per_example('sampled', 50_000, 12) == 12 * (4 + 2) + 4 + 4  # int32 indices past 32,767 classes
    with pytest.raises(ValueError, match='needs k between 1'):
        shard_fields('topk', 10, None)


def _cache(folder, logits, inputs, store='dense', k=None, batch_size=4, epochs=(0,), temperature=4.0):
    """A cache of the given per-epoch logits/inputs (lists indexed by epoch) written by the library alone."""
    n, c = logits[0].shape
    manifest = {'format': FORMAT, 'store': store, 'k': k, 'temperature': temperature, 'num_classes': c,
                'batch_size': batch_size, 'rows_per_rank': n, 'fields': shard_fields(store, c, k),
                'world_size': 1, 'epochs': list(epochs), 'compute': 'fp32', 'fingerprint': {}}
    write_manifest(folder, manifest)
    for e in epochs:
        writer = ShardWriter(folder, manifest, e, 0)
        for start in range(0, n, batch_size):
            writer.write(start, encode_rows(logits[e][start:start + batch_size], inputs[e][start:start + batch_size],
                                            store, k, temperature, generator=torch.Generator().manual_seed(e)))
        writer.commit()
    return TeacherCache(folder)


def test_shards_are_raw_arrays_read_by_rows_and_checked_against_the_inputs(tmp_path):
    logits = [torch.randn(10, 5) * 4 for _ in range(2)]
    inputs = [torch.randn(10, 1, 3, 3) for _ in range(2)]
    cache = _cache(tmp_path / 'c', logits, inputs, epochs=(0, 1))
    assert sorted(p.name for p in (tmp_path / 'c').iterdir()) == ['epoch0000-rank0.bin', 'epoch0001-rank0.bin',
                                                                  'manifest.json']
    assert (tmp_path / 'c' / shard_name(1, 0)).stat().st_size == 10 * bytes_per_example('dense', 5)
    assert cache.batches_per_epoch == 3 and cache.epochs() == [0, 1]
    pool = CachedTeacherPool([cache])
    # step 4 = epoch 1, batch 1 (rows 4-7), read as two microbatches of 2 rows
    first = pool.forward((inputs[1][4:6], None), step=4).outputs
    second = pool.forward((inputs[1][6:8], None), step=4).outputs
    assert torch.equal(torch.cat([first, second]), logits[1][4:8].half().float())
    last = pool.forward((inputs[0][8:10], None), step=2).outputs  # the short last batch
    assert torch.equal(last, logits[0][8:10].half().float())
    with pytest.raises(TeacherCacheMismatch, match='are not those the cache was made for'):
        pool.forward((inputs[1][0:4].flip(-1), None), step=3)  # epoch 1 batch 0, mirrored
    with pytest.raises(TeacherCacheMismatch, match='no shard for epoch 2'):
        pool.forward((inputs[0][0:4], None), step=6)
    assert json.loads((tmp_path / 'c' / 'manifest.json').read_text())['store'] == 'dense'


def test_a_digest_tells_order_crop_and_flip_apart():
    x = torch.rand(2, 1, 8, 8)
    d, tol = input_digest(x)
    for other in (x.flip(0), x.flip(-1), torch.roll(x, 1, dims=-1)):
        assert ((input_digest(other)[0] - d).abs() > tol).all()


@pytest.mark.parametrize('store, k', [('topk', 3), ('sampled', 6)])
def test_sparse_caches_read_back_as_the_targets_they_stored(tmp_path, store, k):
    logits, inputs = [torch.randn(8, 7) * 3], [torch.randn(8, 4)]
    cache = _cache(tmp_path / store, logits, inputs, store=store, k=k)
    targets = CachedTeacherPool([cache]).forward((inputs[0][:4],), step=0).outputs
    assert targets.kind == store and targets.indices.shape == (4, k)
    if store == 'topk':
        expected = topk_targets(logits[0][:4], k, 4.0)
        assert torch.equal(targets.indices, expected.indices)
        assert torch.allclose(targets.values, expected.values, rtol=1e-3)
        assert torch.allclose(targets.tail, expected.tail)
    else:
        assert torch.allclose(targets.values.sum(-1), torch.ones(4), atol=1e-3)  # count / m, fp16


def test_verify_every_catches_a_corrupted_shard(tmp_path):
    torch.manual_seed(0)
    teacher = torch.nn.Linear(4, 5)
    inputs = [torch.randn(8, 4)]
    with torch.no_grad():
        logits = [teacher(inputs[0])]
    cache = _cache(tmp_path / 'c', logits, inputs)

    def pool():
        live = TeacherPool([teacher])
        return CachedTeacherPool([CachedTeacher(TeacherCache(tmp_path / 'c'), live)], verify_every=1)

    good = pool()
    good.forward((inputs[0][:4],), step=0)
    good.forward((inputs[0][4:],), step=1)
    assert good.verified == 2
    shard = np.memmap(tmp_path / 'c' / shard_name(0, 0), dtype=np.float16, mode='r+', shape=(8, 5))
    shard[5, 2] += 0.5  # one logit of batch 1
    shard.flush()
    del shard
    bad = pool()
    bad.forward((inputs[0][:4],), step=0)
    with pytest.raises(TeacherCacheMismatch, match='disagrees with the live teacher at epoch 0, rows 4-7'):
        bad.forward((inputs[0][4:],), step=1)
    assert cache.store == 'dense'


def test_random_1_draws_a_cache_per_step_and_resumes_the_same_draws(tmp_path):
    inputs = [torch.randn(8, 4)]
    caches = [_cache(tmp_path / str(i), [torch.full((8, 3), float(i))], inputs, batch_size=1) for i in range(3)]

    def read(pool, s):
        return int(pool.forward((inputs[0][s:s + 1],), step=s).outputs[0, 0])

    pool = CachedTeacherPool(caches, mode='random_1', seed=3)
    drawn = [read(pool, s) for s in range(8)]
    assert len(set(drawn)) > 1
    again = CachedTeacherPool(caches, mode='random_1', seed=3)
    for s in range(4):
        read(again, s)
    resumed = CachedTeacherPool(caches, mode='random_1', seed=3)
    resumed.load_state_dict(again.state_dict())
    assert [read(resumed, s) for s in range(4, 8)] == drawn[4:]
    averaged = CachedTeacherPool(caches, mode='all').forward((inputs[0][:1],), step=0).outputs
    assert torch.equal(averaged, torch.ones(1, 3))


def test_a_reader_beside_its_producer_waits_for_the_shard_then_proceeds(tmp_path, caplog):
    """Stretch: with ``wait_s``, a shard the manifest plans but that is not written yet is waited for (logged, and
    counted in ``waited_s``); without it, or for an epoch not planned, the read fails at once."""
    import threading

    logits, inputs = [torch.randn(8, 3), torch.randn(8, 3)], [torch.randn(8, 2), torch.randn(8, 2)]
    full = _cache(tmp_path / 'full', logits, inputs, epochs=(0, 1))
    _cache(tmp_path / 'live', logits, inputs, epochs=(0,))
    manifest = dict(full.manifest)
    write_manifest(tmp_path / 'live', manifest)  # the producer plans epochs 0 and 1, and has written epoch 0
    with pytest.raises(TeacherCacheMismatch, match='no shard for epoch 1'):
        CachedTeacherPool([TeacherCache(tmp_path / 'live')]).forward((inputs[1][:4],), step=2)
    writer = threading.Timer(0.5, lambda: (tmp_path / 'full' / shard_name(1, 0)).rename(
        tmp_path / 'live' / shard_name(1, 0)))
    writer.start()
    cache = TeacherCache(tmp_path / 'live', wait_s=30)
    caplog.set_level('INFO', logger='algorithms.distillation.teacher_cache')
    out = CachedTeacherPool([cache]).forward((inputs[1][:4],), step=2).outputs
    writer.join()
    assert torch.equal(out, logits[1][:4].half().float())
    assert 0.3 < cache.waited_s < 10
    assert any('waited' in r.message and 'epoch 1' in r.message for r in caplog.records)


# --- masked-position rows (a masked LM) --------------------------------------------------------------------------
def _mlm_batch(ids: torch.Tensor, chosen: torch.Tensor) -> dict:
    return {'input_ids': ids, 'attention_mask': torch.ones_like(ids), 'labels': torch.where(chosen, ids, -100)}


def _masked_cache(folder, batches, logits, store='dense', k=None, temperature=2.0):
    """A masked-row cache of one epoch: ``batches`` (MLM batch dicts) and the teacher's rows ``[M_b, C]`` of each."""
    n = sum(len(b['input_ids']) for b in batches)
    c = logits[0].shape[1]
    manifest = {'format': FORMAT, 'store': store, 'k': k, 'temperature': temperature, 'num_classes': c,
                'batch_size': len(batches[0]['input_ids']), 'rows_per_rank': n, 'rows': 'masked',
                'fields': shard_fields(store, c, k, 'masked'), 'world_size': 1, 'epochs': [0], 'compute': 'fp32',
                'fingerprint': {}}
    write_manifest(folder, manifest)
    counts = torch.cat([masked_counts(b) for b in batches]).numpy()
    writer = ShardWriter(folder, manifest, 0, 0, counts=counts)
    start = 0
    for b, rows in zip(batches, logits):
        writer.write(start, encode_rows(rows, b, store, k, temperature))
        start += len(b['input_ids'])
    writer.commit()
    return TeacherCache(folder)


def test_masked_rows_follow_each_examples_masked_positions(tmp_path):
    """Examples carry 0..L rows each (an example with none included); a step's microbatches read consecutive
    example ranges and get exactly their masked positions' rows; a batch with another mask is refused."""
    g = torch.Generator().manual_seed(0)
    batches, rows = [], []
    for _ in range(2):
        ids = torch.randint(5, 50, (4, 6), generator=g)
        chosen = torch.rand(4, 6, generator=g) < 0.4
        chosen[1] = False  # an example without a masked position
        batches.append(_mlm_batch(ids, chosen))
        rows.append(torch.randn(int(chosen.sum()), 9, generator=g) * 3)
    cache = _masked_cache(tmp_path / 'm', batches, rows)
    size = (tmp_path / 'm' / shard_name(0, 0)).stat().st_size
    m = sum(len(r) for r in rows)
    assert size == 8 * 9 + 4 * 8 + m * bytes_per_row('dense', 9, rows='masked')  # header, then the rows
    assert cache.has_shard(0) and cache.batches_per_epoch == 2
    pool = CachedTeacherPool([cache])
    b = batches[1]
    half = {key: v[:2] for key, v in b.items()}, {key: v[2:] for key, v in b.items()}
    first = pool.forward(half[0], step=1).outputs
    second = pool.forward(half[1], step=1).outputs
    assert len(first) == int(masked_counts(half[0]).sum())
    assert torch.equal(torch.cat([first, second]), rows[1].half().float())
    other = dict(batches[0], labels=batches[0]['labels'].roll(1, dims=1))  # same tokens, another mask
    with pytest.raises(TeacherCacheMismatch, match='are not those the cache was made for'):
        pool.forward(other, step=0)
    (tmp_path / 'm' / shard_name(0, 0)).write_bytes((tmp_path / 'm' / shard_name(0, 0)).read_bytes()[:-1])
    assert not cache.has_shard(0)  # a cut shard is not whole


def test_integer_digests_are_exact_and_see_every_token_and_label():
    ids = torch.randint(0, 8192, (3, 64), generator=torch.Generator().manual_seed(1))
    batch = _mlm_batch(ids, ids % 7 == 0)
    d, tol = batch_digest(batch)
    assert torch.equal(tol, torch.zeros(3)) and (d == d.round()).all() and (d < 2**24).all()
    assert torch.equal(batch_digest({k: v.clone() for k, v in batch.items()})[0], d)
    for change in ('token', 'label'):
        other = {k: v.clone() for k, v in batch.items()}
        key = 'input_ids' if change == 'token' else 'labels'
        other[key][:, 40] = torch.where(other[key][:, 40] == -100, 5, -100) if change == 'label' else \
            other[key][:, 40] + 1
        assert ((batch_digest(other)[0] - d).abs() > 0).all(), change


def test_kl_of_a_student_on_every_position_against_cached_masked_rows():
    """[N, L, C] student logits, a mask, and [M, C] teacher rows (a cache's): the loss of the masked positions."""
    student, teacher = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    mask = torch.rand(2, 5, generator=torch.Generator().manual_seed(2)) < 0.5
    full = kl_divergence_loss(student, teacher, 2.0, mask=mask)
    assert torch.allclose(kl_divergence_loss(student, teacher[mask], 2.0, mask=mask), full)
    assert torch.allclose(mse_logits_loss(student, teacher[mask], mask=mask), mse_logits_loss(student, teacher,
                                                                                              mask=mask))
    with pytest.raises(ValueError, match='masked positions of the student'):
        kl_divergence_loss(student, teacher[mask][1:], 2.0, mask=mask)
