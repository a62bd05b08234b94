"""recipes/teacher_cache.py and training from its caches: the replay is the student's loader bit for bit, a cached
KD run is the online one step for step, a cache of another run is refused field by field, resume and verify_every."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from algorithms.distillation import CachedTeacherPool, TeacherCache, TeacherCacheMismatch
from algorithms.distillation.teacher_cache import input_digest, shard_name
from recipes import teacher_cache, train
from recipes.core.builders import prepare
from recipes.core.cache_replay import replay_samplers
from recipes.core.errors import ConfigError
from recipes.data.registry import build_dataloader
from recipes.models import registry as models
from tests.conftest import REPO, tiny_config, tiny_overrides
from tests.helpers.kd_fit import fit
from tests.helpers.tiny_data import write_fashion_mnist

KD_KL = REPO / 'yamls' / 'fashion_mnist' / 'kd_kl.yaml'
KD = 'algorithms.knowledge_distillation'


def _teacher(path: Path, seed: int) -> str:
    torch.manual_seed(seed)
    model = models.build_model('cifar_resnet8', num_classes=10, in_channels=1)
    torch.save(model.state_dict(), path)
    return str(path)


def _args(data: Path, **extra) -> list[str]:
    """The tiny recipe's overrides as command-line pairs (no run folder: the producer writes none)."""
    return [o for o in tiny_overrides(data, Path('unused'), **extra) if not o.startswith('run_dir=')]


def produce(data: Path, teacher: str, out: Path, *flags: str, **extra) -> int:
    return teacher_cache.main(['-f', str(KD_KL), '--teacher', teacher, '--out', str(out), *flags,
                               *_args(data, **extra)])


def config(data: Path, run_dir: Path, teachers: list, **extra) -> dict:
    """The tiny KD recipe; at lr 0.1 the 64 examples' dynamics amplify fp16 rounding of the targets to 1% of kd by
    step 7 (an online run whose teacher logits are rounded to fp16 gives the cached run's losses exactly), at
    0.02 they stay within 0.1%."""
    extra.setdefault('optimizer.lr', 0.02)
    cfg = tiny_config(data, run_dir, yaml=KD_KL, **extra)
    cfg['algorithms']['knowledge_distillation']['teachers'] = teachers
    return cfg


@pytest.fixture(scope='module')
def made(fmnist_root, tmp_path_factory):
    """A teacher, its dense cache of 2 epochs, and three 2-epoch KD runs: online, cached (checkpoints every 3
    batches, verify_every 2), and cached from a top-k cache at k = C."""
    root = tmp_path_factory.mktemp('cache')
    teacher = _teacher(root / 'teacher.pt', seed=5)
    assert produce(fmnist_root, teacher, root / 'dense') == 0
    assert produce(fmnist_root, teacher, root / 'topk', '--store', 'topk', '--k', '10') == 0
    online = fit(config(fmnist_root, root / 'online', [teacher]))
    cached = fit(config(fmnist_root, root / 'cached', [{'cache': str(root / 'dense'), 'verify_every': 2}],
                        save_interval='3ba'))
    topk = fit(config(fmnist_root, root / 'topk-run', [{'cache': str(root / 'topk')}]))
    return {'root': root, 'teacher': teacher, 'online': online, 'cached': cached, 'topk': topk}


def test_replay_is_the_student_loader_bit_for_bit(fmnist_root, tmp_path, monkeypatch):
    """Order, crop, flip, skip, subset and down-sampling: the producer's batches are the loader's, for each rank."""
    from composer.utils import dist

    cfg = config(fmnist_root, tmp_path / 'r', [], **{'train_loader.skip': 4, 'train_loader.subset': 50,
                                                     'train_loader.downsample': '{3: 0.5}'})
    for world in (1, 2):
        dataset, samplers = replay_samplers(cfg, world)
        for rank in range(world):
            monkeypatch.setattr(dist, 'get_world_size', lambda: world)
            monkeypatch.setattr(dist, 'get_global_rank', lambda: rank)
            loader = build_dataloader(cfg['train_loader'], 16 // world, 'train_loader', seed=cfg['seed'])
            for epoch in (0, 1):
                loader.sampler.set_epoch(epoch)
                samplers[rank].set_epoch(epoch)
                ours = [dataset[key] for key in samplers[rank]]
                theirs = list(loader)
                assert len(ours) == len(theirs) > 0
                for (x, y), (x2, y2) in zip(ours, theirs):
                    assert torch.equal(x, x2) and torch.equal(y, y2)
        monkeypatch.undo()


def test_the_cache_rows_are_the_student_batches(fmnist_root, made):
    """The digests stored for (epoch, batch) are those of the student loader's inputs, bit for bit."""
    cfg = config(fmnist_root, made['root'] / 'unused', [])
    loader = build_dataloader(cfg['train_loader'], 16, 'train_loader', seed=cfg['seed'])
    cache = TeacherCache(made['root'] / 'dense')
    assert cache.epochs() == [0, 1] and cache.batches_per_epoch == 4
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        stored = torch.from_numpy(np.array(cache.arrays(epoch)['digest'])).reshape(-1)
        assert torch.equal(torch.cat([input_digest(x)[0] for x, _ in loader]), stored)
    loader.sampler.set_epoch(0)
    first = torch.cat([input_digest(x)[0] for x, _ in loader])
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, torch.cat([input_digest(x)[0] for x, _ in loader]))  # epochs differ


def test_cached_kd_equals_online_kd_step_by_step(made):
    (online, kd_online), (cached, kd_cached) = made['online'], made['cached']
    assert sorted(kd_online) == sorted(kd_cached) == list(range(8))
    for step in range(8):
        assert kd_cached[step] == pytest.approx(kd_online[step], rel=2e-3, abs=1e-5), step
    pool = cached.state.algorithms[0].pool
    assert isinstance(pool, CachedTeacherPool) and pool.reads == 8 and pool.verified == 4
    # what the run says it cost: no teacher forward, one cache read a step (the online run: one forward a step)
    algo_cached, algo_online = cached.state.algorithms[0], online.state.algorithms[0]
    assert (algo_cached.teacher_forwards, algo_cached.cache_reads) == (0, 8)
    assert (algo_online.teacher_forwards, algo_online.cache_reads) == (8, 0)
    weights = [dict(t.state.model.named_parameters()) for t in (online, cached)]
    for name, p in weights[0].items():
        assert torch.allclose(p, weights[1][name], rtol=1e-3, atol=1e-3), name
    assert kd_online[7] != kd_online[0]  # the loss moved: the comparison is not of constants


def test_cached_kd_is_online_kd_on_fp16_teacher_logits_exactly(fmnist_root, made, tmp_path, monkeypatch):
    """The whole difference is the storage's rounding: an online run whose teacher logits are rounded to fp16 logs
    the cached run's kd bit for bit at every step (so every step read its own batch's rows)."""
    from algorithms.distillation import TeacherPool

    forward = TeacherPool.forward

    def rounded(self, *args, **kwargs):
        io = forward(self, *args, **kwargs)
        io.outputs = io.outputs.half().float()
        return io

    monkeypatch.setattr(TeacherPool, 'forward', rounded)
    _, kd = fit(config(fmnist_root, tmp_path / 'online16', [made['teacher']]))
    assert kd == made['cached'][1]


def test_topk_at_k_equal_c_trains_as_the_dense_cache(made):
    """The first step (same weights) agrees to float32 rounding of a differently ordered sum; later steps drift by
    what training amplifies of it (about 1e-4 after 8 steps on an AMD EPYC), well inside 1e-3."""
    _, kd_dense = made['cached']
    _, kd_topk = made['topk']
    assert kd_topk[0] == pytest.approx(kd_dense[0], rel=1e-5, abs=1e-7)
    for step in range(1, 8):
        assert kd_topk[step] == pytest.approx(kd_dense[step], rel=1e-3, abs=1e-6), step


def test_resume_mid_epoch_reads_the_right_rows(fmnist_root, made, tmp_path):
    """Resumed at batch 6 (epoch 1, batch 2), the run reads the rows of those batches (the digest check would
    raise otherwise) and logs the uninterrupted run's kd."""
    checkpoint = made['root'] / 'cached' / 'checkpoints' / 'ep1-ba6-rank0.pt'
    assert checkpoint.is_file()
    cfg = config(fmnist_root, tmp_path / 'resumed', [{'cache': str(made['root'] / 'dense')}],
                 load_path=str(checkpoint))
    trainer, kd = fit(cfg)
    assert sorted(kd) == [6, 7]
    _, kd_full = made['cached']
    for step in (6, 7):
        assert kd[step] == pytest.approx(kd_full[step], rel=1e-5), step
    assert trainer.state.algorithms[0].pool.reads == 2


@pytest.mark.parametrize('change, field', [
    ({'seed': 18}, 'seed'),
    ({'global_train_batch_size': 32}, 'global_train_batch_size'),
    ({'train_loader.subset': 48}, 'subset'),
    ({'train_loader.skip': 8}, 'skip'),
    ({'train_loader.downsample': '{3: 0.5}'}, 'downsample'),
    ({'train_loader.augment': False}, 'augment'),
    ({'train_loader.shuffle': False}, 'shuffle'),
    ('other data', 'data_files'),
    ('other teacher', 'teacher_sha256'),
    ('two ranks', 'world_size'),
])
def test_a_cache_of_another_run_is_refused_naming_the_field(fmnist_root, made, tmp_path, monkeypatch, change, field):
    spec = {'cache': str(made['root'] / 'dense')}
    extra = change if isinstance(change, dict) else {}
    data = fmnist_root
    if change == 'other data':
        data = tmp_path / 'data'
        write_fashion_mnist(data, n_train=80, n_test=32)
    elif change == 'other teacher':
        spec['checkpoint'] = _teacher(tmp_path / 'other.pt', seed=6)
    elif change == 'two ranks':
        from composer.utils import dist
        monkeypatch.setattr(dist, 'get_world_size', lambda: 2)
    cfg = config(data, tmp_path / 'run', [spec], **extra)
    with pytest.raises(ConfigError, match=rf'{KD}\.teachers\[0\]\.cache: .* was made for another run: {field} is '):
        prepare(cfg)
    assert not (tmp_path / 'run').exists()


def test_train_refuses_a_run_longer_than_the_cache_in_one_line(fmnist_root, made, tmp_path, capsys):
    short = made['root'] / 'short'
    shutil.copytree(made['root'] / 'dense', short)
    (short / shard_name(1, 0)).unlink()
    overrides = [*tiny_overrides(fmnist_root, tmp_path / 'run'), f'{KD}.teachers=[{{cache: {short}}}]']
    assert train.main(['-f', str(KD_KL), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'error: {KD}.teachers[0].cache: the run reads epochs 0-1 but {short} lacks epoch 1')
    assert '\n' not in err and not (tmp_path / 'run').exists()
    cfg = config(fmnist_root, tmp_path / 'window', [{'cache': str(short)}])
    cfg['algorithms']['knowledge_distillation']['end'] = '0.5dur'  # the window reads epoch 0 only
    prepare(cfg)
    prepare(config(fmnist_root, tmp_path / 'beside', [{'cache': str(short), 'wait_s': 60}]))  # epoch 1 is planned


def test_verify_every_catches_a_corrupted_shard(fmnist_root, made, tmp_path):
    bad = tmp_path / 'bad'
    shutil.copytree(made['root'] / 'dense', bad)
    logits = np.memmap(bad / shard_name(1, 0), dtype=np.float16, mode='r+', shape=(64, 10))
    logits[20, 3] += 1.0  # epoch 1, batch 1 (step 5)
    logits.flush()
    del logits
    cfg = config(fmnist_root, tmp_path / 'run', [{'cache': str(bad), 'verify_every': 1}])
    with pytest.raises(TeacherCacheMismatch, match='disagrees with the live teacher at epoch 1, rows 16-31'):
        fit(cfg)


def test_sparse_caches_are_refused_where_the_loss_needs_logits(fmnist_root, made, tmp_path):
    cfg = config(fmnist_root, tmp_path / 'mse', [{'cache': str(made['root'] / 'topk')}])
    cfg['algorithms']['knowledge_distillation']['kd_loss'] = 'mse'
    with pytest.raises(ConfigError, match=r'kd_loss mse needs every logit; .* stores topk targets'):
        prepare(cfg)
    cfg = config(fmnist_root, tmp_path / 'temp', [{'cache': str(made['root'] / 'topk')}])
    cfg['algorithms']['knowledge_distillation']['temperature'] = 2.0
    with pytest.raises(ConfigError, match='made at temperature 4.0, not 2.0'):
        prepare(cfg)


def test_production_resumes_and_is_deterministic(fmnist_root, made, tmp_path, caplog):
    out = tmp_path / 'sampled'
    assert produce(fmnist_root, made['teacher'], out, '--store', 'sampled', '--epochs', '0-1') == 0
    first = (out / shard_name(1, 0)).read_bytes()
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['k'] == 12 and manifest['bytes_per_example'] == 12 * 4 + 8
    assert len(first) == 64 * manifest['bytes_per_example']
    (out / shard_name(1, 0)).unlink()
    stamp = (out / shard_name(0, 0)).stat().st_mtime_ns
    caplog.set_level('INFO', logger='recipes.teacher_cache')
    assert produce(fmnist_root, made['teacher'], out, '--store', 'sampled', '--epochs', '0-1') == 0
    assert (out / shard_name(1, 0)).read_bytes() == first  # the same draws, however often it is run
    assert (out / shard_name(0, 0)).stat().st_mtime_ns == stamp
    assert any('1 shard(s) finished earlier, skipped' in r.message for r in caplog.records)
    assert not list(out.glob('.*tmp'))
    # production time: one session per run that wrote shards, summed; the machine of each
    production = json.loads((out / 'manifest.json').read_text())['production']
    first_session, second_session = production['sessions']
    assert (first_session['shards'], second_session['shards'], production['shards']) == (2, 1, 3)
    assert (first_session['examples'], second_session['examples'], production['examples']) == (128, 64, 192)
    assert production['seconds'] == pytest.approx(first_session['seconds'] + second_session['seconds'])
    assert production['shard_seconds'] == pytest.approx(first_session['shard_seconds'] +
                                                         second_session['shard_seconds'])
    assert 0 < second_session['shard_seconds'] <= second_session['seconds']
    assert first_session['where'] == 'here' and first_session['machine']['cpu']
    assert produce(fmnist_root, made['teacher'], out, '--store', 'sampled', '--epochs', '0-1') == 0
    assert json.loads((out / 'manifest.json').read_text())['production'] == production  # nothing written: no session


@pytest.mark.parametrize('flags, extra, expected', [
    (['--store', 'huge'], {}, '--store: expected one of dense, topk, sampled'),
    (['--k', '3'], {}, '--k: a dense cache stores every logit'),
    (['--store', 'topk', '--k', '11'], {}, '--k: store \'topk\' needs k between 1 and the number of classes (10)'),
    (['--epochs', '3-1'], {}, '--epochs: expected epochs like 0-14'),
    ([], {'train_loader.in_memory': False}, 'train_loader: a teacher cache replays in-memory loaders only'),
    (['--teacher-model', '{"name": "convnet", "num_classes": 10, "in_channels": 1}'], {},
     '--teacher[0].checkpoint: the weights in'),
])
def test_bad_input_is_one_error_line_and_nothing_written(fmnist_root, made, tmp_path, capsys, flags, extra, expected):
    out = tmp_path / 'out'
    assert produce(fmnist_root, made['teacher'], out, *flags, **extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'error: {expected}') and '\n' not in err, err
    assert not out.exists()


def test_out_holding_another_cache_is_refused(fmnist_root, made, tmp_path, capsys):
    out = tmp_path / 'out'
    shutil.copytree(made['root'] / 'dense', out)
    assert produce(fmnist_root, made['teacher'], out, seed=18) == 2
    assert 'holds a cache of another run or storage (fingerprint differs)' in capsys.readouterr().err


def test_two_dask_workers_write_the_bytes_one_process_writes(fmnist_root, made, tmp_path):
    """Stretch: ``--dask local:2`` makes each shard a task; the shards are those of a plain run, byte for byte."""
    for store in ('dense', 'sampled'):
        one, two = tmp_path / f'{store}-one', tmp_path / f'{store}-two'
        assert produce(fmnist_root, made['teacher'], one, '--store', store, '--world-size', '2') == 0
        assert produce(fmnist_root, made['teacher'], two, '--store', store, '--world-size', '2',
                       '--dask', 'local:2') == 0
        names = sorted(p.name for p in one.glob('*.bin'))
        assert names == sorted(p.name for p in two.glob('*.bin')) and len(names) == 4  # 2 epochs x 2 ranks
        for name in names:
            assert (one / name).read_bytes() == (two / name).read_bytes(), (store, name)
        production = json.loads((two / 'manifest.json').read_text())['production']
        assert production['shards'] == 4 and production['sessions'][0]['where'] == 'dask local:2'
        assert production['shard_seconds'] > 0 and production['seconds'] > 0
