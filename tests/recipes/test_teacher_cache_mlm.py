"""A teacher cache of a masked LM at its masked positions (issue 24): the replay is the student's text loader (blocks,
order, masks, ranks) bit for bit, a cached KD run is the online one step for step (dense fp16 and top-k at k = C), the
rows are the masked positions in the order the sparse head and KD's mask take them, a cache of other masks or another
tokenizer is refused naming the field, and verify_every catches a corrupted shard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('transformers')


from algorithms.distillation import CachedTeacherPool, TeacherCache, TeacherCacheMismatch  # noqa: E402
from algorithms.distillation.cache_format import batch_digest, masked_counts, shard_name  # noqa: E402
from recipes import teacher_cache  # noqa: E402
from recipes.core.builders import prepare  # noqa: E402
from recipes.core.cache_replay import replay_samplers  # noqa: E402
from recipes.core.config import load_config  # noqa: E402
from recipes.core.errors import ConfigError  # noqa: E402
from recipes.data.registry import build_dataloader  # noqa: E402
from recipes.models import registry as models  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.helpers.kd_fit import fit  # noqa: E402
from tests.helpers.tiny_data import write_text_corpus, write_tokenizer  # noqa: E402

YAML = REPO / 'yamls' / 'sotu' / 'tiny_bert.yaml'
KD = 'algorithms.knowledge_distillation'


def overrides(text: Path, tok: Path, **extra) -> list[str]:
    """The tiny BERT recipe on the tiny corpus: blocks of 32 tokens, batch 4, 2 epochs."""
    base = {'train_loader.path': text, 'eval_loader.path': text, 'train_loader.tokenizer': tok,
            'eval_loader.tokenizer': tok, 'model.tokenizer': tok, 'train_loader.max_seq_len': 32,
            'eval_loader.max_seq_len': 32, 'eval_loader.subset': 8, 'global_train_batch_size': 4,
            'global_eval_batch_size': 8, 'max_duration': '2ep', 'eval_interval': '1ep', 'save_interval': '1ep',
            'progress_bar': False, 'callbacks': '{}', 'optimizer.lr': 1e-3, 'scheduler.t_warmup': '0ba'}
    base.update(extra)
    return [f'{k}={v}' for k, v in base.items()]


def teacher_model(root: Path) -> dict:
    """The teacher's model: bert-tiny with one layer (not the student's two), which the recipe's teachers list gives."""
    return {'name': 'bert_mlm', 'config': 'bert-tiny', 'tokenizer': str(root / 'tok'), 'num_hidden_layers': 1,
            'max_position_embeddings': 128}


def config(root: Path, run_dir: Path, teachers: list | None = None, **extra) -> dict:
    cfg = load_config(YAML, overrides(root / 'text', root / 'tok', run_dir=run_dir, **extra))
    if teachers is not None:
        cfg['algorithms'] = {'knowledge_distillation': {'teachers': teachers, 'kd_loss': 'kl', 'temperature': 2.0,
                                                        'kd_loss_weight': 1.0}}
    return cfg


def online(root: Path) -> list:
    return [{'checkpoint': str(root / 'teacher.pt'), 'model': teacher_model(root)}]


def produce(root: Path, out: Path, *flags: str, **extra) -> int:
    """The producer on the tiny recipe whose KD teachers list names the teacher and its model (no --teacher-model:
    the model is read from the recipe)."""
    model = ', '.join(f'{k}: {v}' for k, v in teacher_model(root).items())
    kd = [f'{KD}.teachers=[{{checkpoint: {root / "teacher.pt"}, model: {{{model}}}}}]', f'{KD}.temperature=2.0']
    return teacher_cache.main(['-f', str(YAML), '--teacher', str(root / 'teacher.pt'), '--out', str(out), *flags,
                               *overrides(root / 'text', root / 'tok', **extra), *kd])


@pytest.fixture(scope='module')
def made(tmp_path_factory):
    """A tiny corpus and tokenizer, a bert-tiny teacher, its dense and top-k (k = C) caches of 2 epochs, and an
    online and two cached KD runs."""
    root = tmp_path_factory.mktemp('mlm-cache')
    write_text_corpus(root / 'text', n_docs=8, words=80)
    write_tokenizer(root / 'tok')
    torch.manual_seed(5)
    model = models.build_model(**teacher_model(root))
    torch.save(model.state_dict(), root / 'teacher.pt')
    vocab = int(model.model.config.vocab_size)
    assert produce(root, root / 'dense') == 0
    assert produce(root, root / 'topk', '--store', 'topk', '--k', str(vocab)) == 0
    online_run = fit(config(root, root / 'online', online(root)))
    cached = fit(config(root, root / 'cached', [{'cache': str(root / 'dense'), 'verify_every': 2}]))
    topk = fit(config(root, root / 'topk-run', [{'cache': str(root / 'topk')}]))
    return {'root': root, 'vocab': vocab, 'online': online_run, 'cached': cached, 'topk': topk}


def test_replay_is_the_student_text_loader_bit_for_bit(made, monkeypatch):
    """Blocks, order and masks of each epoch, for one rank and for each of two ranks."""
    from composer.utils import dist

    cfg = config(made['root'], made['root'] / 'unused')
    for world in (1, 2):
        dataset, samplers = replay_samplers(cfg, world)
        for rank in range(world):
            monkeypatch.setattr(dist, 'get_world_size', lambda: world)
            monkeypatch.setattr(dist, 'get_global_rank', lambda: rank)
            loader = build_dataloader(cfg['train_loader'], 4 // world, 'train_loader', seed=cfg['seed'])
            for epoch in (0, 1):
                loader.sampler.set_epoch(epoch)
                samplers[rank].set_epoch(epoch)
                ours, theirs = [dataset[key] for key in samplers[rank]], list(loader)
                assert len(ours) == len(theirs) > 2
                for a, b in zip(ours, theirs):
                    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        monkeypatch.undo()


def test_the_rows_are_the_masked_positions_of_each_example(made):
    """The header's offsets count each example's masked positions (the student loader's labels), the digests are
    its batches', and the dense rows are the teacher's logits at those positions, in row-major order."""
    root = made['root']
    cfg = config(root, root / 'unused')
    loader = build_dataloader(cfg['train_loader'], 4, 'train_loader', seed=cfg['seed'])
    cache = TeacherCache(root / 'dense')
    assert cache.rows == 'masked' and cache.epochs() == [0, 1]
    teacher = models.build_model(**teacher_model(root))
    teacher.load_state_dict(torch.load(root / 'teacher.pt'))
    assert cache.manifest['teachers'][0]['model']['num_hidden_layers'] == 1  # the recipe's model for that teacher
    teacher.eval()
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        fields = cache.arrays(epoch)
        batches = list(loader)
        counts = torch.cat([masked_counts(b) for b in batches]).numpy()
        assert np.array_equal(np.diff(np.array(fields['offsets'][:, 0])), counts)
        assert np.array_equal(np.array(fields['digest'][:, 0]), torch.cat([batch_digest(b)[0] for b in batches]))
        start = 0
        for b in batches[:2]:
            n = len(b['input_ids'])
            logits, _ = cache.read(epoch, 0, start, start + n)
            with torch.no_grad():
                live = teacher(b).logits
            assert logits.shape == live.shape == (int(masked_counts(b).sum()), made['vocab'])
            assert torch.allclose(logits, live, atol=2e-3, rtol=2e-3)
            start += n
    sizes = [(root / 'dense' / shard_name(e, 0)).stat().st_size for e in (0, 1)]
    manifest = json.loads((root / 'dense' / 'manifest.json').read_text())
    assert manifest['bytes_per_example'] == pytest.approx(sum(sizes) / (2 * cache.rows_per_rank), abs=0.1)
    assert manifest['bytes_per_row'] == 2 * made['vocab']


def test_cached_mlm_kd_equals_online_kd_step_by_step(made):
    (online, kd_online), (cached, kd_cached) = made['online'], made['cached']
    steps = sorted(kd_online)
    assert steps == sorted(kd_cached) and len(steps) >= 8
    for step in steps:
        assert kd_cached[step] == pytest.approx(kd_online[step], rel=2e-3, abs=1e-5), step
    pool = cached.state.algorithms[0].pool
    assert isinstance(pool, CachedTeacherPool) and pool.reads == len(steps) and pool.verified == len(steps[::2])
    assert cached.state.algorithms[0].teacher_forwards == 0
    assert kd_online[steps[-1]] != kd_online[steps[0]]


def test_topk_at_k_equal_c_trains_as_the_dense_cache(made):
    """Step 0 (same weights) agrees to float32 rounding of two differently ordered sums over the 120-token vocabulary
    (1.4e-5 relative seen on an AMD EPYC under a full suite, 0 alone); later steps within what training amplifies."""
    _, kd_dense = made['cached']
    _, kd_topk = made['topk']
    assert kd_topk[0] == pytest.approx(kd_dense[0], rel=1e-4, abs=1e-7)
    for step in sorted(kd_dense)[1:]:
        assert kd_topk[step] == pytest.approx(kd_dense[step], rel=1e-3, abs=1e-6), step


def test_a_student_with_the_head_on_every_position_reads_the_same_rows(made, tmp_path):
    """``sparse_head: false`` gives [N, L, V] logits; KD's mask keeps the masked positions, which are the cache's
    rows: the same kd as the sparse head's run."""
    cfg = config(made['root'], tmp_path / 'dense-head', [{'cache': str(made['root'] / 'dense')}],
                 max_duration='2ba')
    cfg['model']['sparse_head'] = False
    _, kd = fit(cfg)
    _, kd_sparse = made['cached']
    for step in (0, 1):
        assert kd[step] == pytest.approx(kd_sparse[step], rel=1e-4), step


@pytest.mark.parametrize('change, field', [
    ({'train_loader.mlm_probability': 0.2}, 'mlm_probability'),
    ({'train_loader.max_seq_len': 24}, 'max_seq_len'),
    ('other tokenizer', 'tokenizer_files'),
    ({'seed': 3}, 'seed'),
])
def test_a_cache_of_other_masks_or_blocks_is_refused_naming_the_field(made, tmp_path, change, field):
    root = made['root']
    extra = change if isinstance(change, dict) else {}
    cfg = config(root, tmp_path / 'run', [{'cache': str(root / 'dense')}], **extra)
    if change == 'other tokenizer':  # the same files, two word pieces swapped: other ids for the same text
        tok = tmp_path / 'tok'
        shutil.copytree(root / 'tok', tok)
        data = json.loads((tok / 'tokenizer.json').read_text())
        vocab = data['model']['vocab']
        a, b = sorted(vocab, key=vocab.get)[-2:]
        vocab[a], vocab[b] = vocab[b], vocab[a]
        (tok / 'tokenizer.json').write_text(json.dumps(data))
        cfg['train_loader']['tokenizer'] = str(tok)
    with pytest.raises(ConfigError, match=rf'{KD}\.teachers\[0\]\.cache: .* was made for another run: {field} is '):
        prepare(cfg)
    assert not (tmp_path / 'run').exists()


def test_verify_every_catches_a_corrupted_masked_shard(made, tmp_path):
    bad = tmp_path / 'bad'
    shutil.copytree(made['root'] / 'dense', bad)
    cache = TeacherCache(bad)
    layout = cache.layout(0)
    offset, dtype, shape = layout.fields['logits']
    first_of_batch_1 = int(cache.arrays(0)['offsets'][4, 0])
    del cache
    logits = np.memmap(bad / shard_name(0, 0), dtype=dtype, mode='r+', offset=offset, shape=shape)
    logits[first_of_batch_1, 7] += 1.0
    logits.flush()
    del logits
    cfg = config(made['root'], tmp_path / 'run', [{'cache': str(bad), 'verify_every': 1}])
    with pytest.raises(TeacherCacheMismatch, match='disagrees with the live teacher at epoch 0, rows 4-7'):
        fit(cfg)
