"""The KD report counts a teacher cache's cost (issue 24 item 4), on synthetic records with hand-computed answers:
a cached student's time-to-target without and with its share of the cache's production (amortised over the students
of the seed that read the same cache), the cache's teachers' training counted as any teacher's, 0 teacher forwards
per step, and a report without caches left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.core.analysis import analyse
from benchmarks.core.teacher_cost import CacheIndex
from benchmarks.kd.describe import cache_reads, kd_facts, teacher_forwards
from benchmarks.kd.report import build
from benchmarks.study.spec import load_study
from tests.helpers.run_records import ORIGINAL_ROOT, ckpt, write_run

STUDY = f"""
name: syn-cache
runs_root: {ORIGINAL_ROOT}
baseline: teacher-a
runs:
  - {{name: teacher-a, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, tags: [teacher, baseline]}}
  - {{name: teacher-b, recipe: yamls/fashion_mnist/teacher_lr0.4.yaml, tags: [teacher]}}
  - {{name: cache-a, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher-a]}}
  - {{name: cache-ab, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher-a, teacher-b]}}
  - {{name: kd-kl-2ep, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher-a], tags: [kd]}}
  - {{name: cached-kl-2ep, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [cache-a], tags: [cached]}}
  - {{name: cached-mse-2ep, recipe: yamls/fashion_mnist/kd_mse.yaml, teachers: [cache-a], tags: [cached]}}
  - {{name: cached-ens-2ep, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [cache-ab], tags: [cached]}}
"""


def write_cache(root: Path, key: str, teachers: list[str], seconds: float | None) -> None:
    """A teacher cache's manifest as recipes/teacher_cache.py leaves it (its shards are not records)."""
    manifest = {'format': 'teacher-cache/1', 'store': 'dense', 'k': None, 'bytes_per_example': 24,
                'teachers': [{'checkpoint': c, 'model': {'name': 'fast_cnn'}} for c in teachers]}
    if seconds is not None:  # a cache made before production was recorded has none
        manifest['production'] = {'seconds': seconds,
                                  'sessions': [{'seconds': seconds, 'machine': {'cpu': 'CacheCPU'}}]}
    (root / key).mkdir(parents=True)
    (root / key / 'manifest.json').write_text(json.dumps(manifest))


@pytest.fixture
def synthetic(tmp_path):
    root = tmp_path / 'records'
    write_run(root, 'teacher-a', [(25.0, 0.85), (50.0, 0.90)], duration='4ep', train_s=55.0)  # target 0.90 at 50 s
    write_run(root, 'teacher-b', [(26.0, 0.84), (52.0, 0.89)], duration='4ep', lr=0.4, train_s=52.0)
    write_run(root, 'kd-kl-2ep', [(12.0, 0.86), (24.0, 0.91)], teachers=[ckpt('teacher-a')])
    # the cache's teachers as its manifest names them: resolved paths elsewhere (the checkpoint a link pointed at)
    elsewhere = '/elsewhere/' + ORIGINAL_ROOT
    write_cache(root, 'cache-a', [f'{elsewhere}/teacher-a/checkpoints/ep4-ba40-rank0.pt'], seconds=12.0)
    write_cache(root, 'cache-ab', [f'{elsewhere}/teacher-a/checkpoints/ep4-ba40-rank0.pt',
                                   f'{elsewhere}/teacher-b/checkpoints/ep4-ba40-rank0.pt'], seconds=None)
    cache = [{'cache': f'{ORIGINAL_ROOT}/cache-a'}]
    write_run(root, 'cached-kl-2ep', [(10.0, 0.86), (20.0, 0.91)], teachers=cache)  # crosses at 18.0 s
    write_run(root, 'cached-mse-2ep', [(9.0, 0.90), (18.0, 0.92)], teachers=cache, kd={'kd_loss': 'mse'})  # 9.0 s
    write_run(root, 'cached-ens-2ep', [(10.0, 0.88), (20.0, 0.93)], teachers=[{'cache': f'{ORIGINAL_ROOT}/cache-ab'}])
    study = tmp_path / 'syn.yaml'
    study.write_text(STUDY)
    return root, study


def test_a_cached_student_carries_its_share_of_the_production(synthetic):
    root, study = synthetic
    a = analyse(load_study(study), str(root), describe=kd_facts)
    kl, mse = a.results['cached-kl-2ep'], a.results['cached-mse-2ep']
    assert kl.time_to_target == pytest.approx(18.0) and kl.speedup == pytest.approx(50 / 18.0)
    # 12 s of production shared by its 2 readers: 6 s each
    assert a.caches['cache-a'].readers == ['cached-kl-2ep', 'cached-mse-2ep'] and a.caches['cache-a'].share == 6.0
    assert kl.cache_s == pytest.approx(6.0) and kl.time_to_target_with_cache == pytest.approx(24.0)
    assert kl.speedup_with_cache == pytest.approx(50 / 24.0)
    assert mse.time_to_target_with_cache == pytest.approx(9.0 + 6.0)
    # the cache's teacher is counted as an online student's teacher is: its whole training, in its own column
    assert kl.teachers == ['teacher-a'] and kl.teacher_s == pytest.approx(55.0)
    assert kl.speedup_with_teachers == pytest.approx(50 / (18.0 + 55.0))
    # an online student and the baseline have no cache to add
    online = a.results['kd-kl-2ep']
    assert online.caches == [] and online.time_to_target_with_cache == online.time_to_target == pytest.approx(21.6)
    assert online.speedup_with_cache == online.speedup
    # an averaged pool's cache: both teachers' training; no production record: no time with the cache
    ens = a.results['cached-ens-2ep']
    assert ens.teachers == ['teacher-a', 'teacher-b'] and ens.teacher_s == pytest.approx(55.0 + 52.0)
    assert ens.time_to_target == pytest.approx(10 + 0.02 / 0.05 * 10) and ens.cache_s is None  # 14 s
    assert ens.time_to_target_with_cache is None and ens.speedup_with_cache is None


def test_a_cached_student_runs_no_teacher(synthetic):
    root, study = synthetic
    r = analyse(load_study(study), str(root), describe=kd_facts).results
    assert (r['cached-kl-2ep'].series, r['cached-ens-2ep'].series, r['kd-kl-2ep'].series) == \
        ('cached KD-KL', 'cached KD-KL', 'KD-KL')
    assert (teacher_forwards(r['cached-kl-2ep']), cache_reads(r['cached-kl-2ep'])) == (0, 1)
    assert (teacher_forwards(r['kd-kl-2ep']), cache_reads(r['kd-kl-2ep'])) == (1, 0)


def test_a_cache_folder_is_found_by_its_longest_known_suffix():
    index = CacheIndex({'cache-a': {'format': 'teacher-cache/1', 'production': {'seconds': 3.0}},
                        'sub/cache-a': {'format': 'teacher-cache/1', 'production': {'seconds': 4.0}},
                        'mat': {'generations': []}})  # a Matryoshka manifest is not a cache
    assert index.find('runs/x/sub/cache-a').seconds == 4.0 and index.find('/abs/cache-a').seconds == 3.0
    unknown = index.find('runs/other')
    assert unknown.seconds is None and index.find('runs/other') is unknown and 'mat' not in index.infos


def test_the_report_shows_the_cache_columns_and_its_readers(synthetic, tmp_path):
    root, study = synthetic
    out = tmp_path / 'report'
    numbers = build(str(root), str(study), str(out))
    text = (out / 'report.md').read_text()
    head = next(line for line in text.splitlines() if line.startswith('| run |'))
    assert '| speedup | time-to-target incl. cache (s) | speedup incl. cache | speedup incl. teachers |' in head
    row = next(line for line in text.splitlines() if line.startswith('| cached-kl-2ep |'))
    assert '| 18.0 (1 run) | 2.78 (1 run)x | 24.0 (1 run) | 2.08 (1 run)x | 0.68 (1 run)x |' in row  # 50/18, /24, /73
    ens = next(line for line in text.splitlines() if line.startswith('| cached-ens-2ep |'))
    assert '| n/a (production time unknown) | n/a |' in ens
    cache_row = next(line for line in text.splitlines() if '| `cache-a` |' in line)
    assert '| 12.0 | CacheCPU | 2 | `cached-kl-2ep`, `cached-mse-2ep` | 6.0 | dense | 24 | 1 |' in cache_row
    assert '**Teacher caches**: A student that read a teacher cache' in text
    best = next(f for f in numbers['findings'] if 'teacher cache' in f['claim'])
    # the best with production: cached-mse-2ep, 50 / (9 + 6) = 3.33x; 50 / 9 = 5.56x without it
    assert '`cached-mse-2ep` 3.33 (1 run)x with its share of the production (5.56 (1 run)x without it' in \
        best['evidence']
    assert best['verdict'] == 'within noise'  # one seed: no interval to decide by
    assert numbers['runs']['cached-kl-2ep']['time_to_target_with_cache'] == [pytest.approx(24.0)]
    # fidelity: the one cached student with an online twin (KD-KL of teacher-a, same duration) ends where it does;
    # the MSE student has no online twin, the averaged pool's cache no single-teacher one
    twin = next(f for f in numbers['findings'] if "online twin's" in f['claim'])
    assert twin['evidence'] == '`cached-kl-2ep` - `kd-kl-2ep`: 0.00 (1 run) points.'
    assert twin['verdict'] == 'within noise'
    assert 'speedup_with_cache' not in numbers['runs']['kd-kl-2ep']  # summary.json as before for online runs


def test_a_report_without_caches_has_no_cache_column(synthetic, tmp_path):
    root, study = synthetic
    for name in ('cached-kl-2ep', 'cached-mse-2ep', 'cached-ens-2ep'):
        for f in (root / name).iterdir():
            f.unlink()
        (root / name).rmdir()
    text = (build(str(root), str(study), str(tmp_path / 'report')) and (tmp_path / 'report' / 'report.md').read_text())
    assert 'incl. cache' not in text and 'Teacher caches' not in text


SEEDED = f"""
name: syn-gain
runs_root: {ORIGINAL_ROOT}
baseline: baseline
seeds: [0, 1, 2]
runs:
  - {{name: teacher-a, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, tags: [teacher]}}
  - {{name: baseline, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, tags: [baseline]}}
  - {{name: cache-top, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher-a]}}
  - {{name: cache-smp, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher-a]}}
  - {{name: kd-kl-t1-4of4, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher-a], tags: [kd]}}
  - {{name: kd-kl-4of4, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher-a], tags: [kd]}}
  - {{name: cached-top-kd-kl-4of4, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [cache-top], tags: [cached]}}
  - {{name: cached-smp-kd-kl-4of4, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [cache-smp], tags: [cached]}}
"""


def test_a_sparse_caches_students_keep_a_share_of_online_kds_gain(tmp_path):
    """Issue 24's rule on synthetic finals over 3 seeds: margin (cached - base) - 0.9 (online - base) per seed."""
    root = tmp_path / 'records'
    base, online = [0.80, 0.81, 0.82], [0.82, 0.84, 0.845]  # online gains 2.0, 3.0, 2.5 points
    top = [0.819, 0.838, 0.844]  # gains 1.9, 2.8, 2.4: margins +0.1, +0.1, +0.15 points
    smp = [0.805, 0.82, 0.82]  # gains 0.5, 1.0, 0.0: margins -1.3, -1.7, -2.25 points
    for s in range(3):
        seed = root / f'seed{s}'
        write_run(seed, 'teacher-a', [(50.0, 0.9)], duration='4ep')
        write_run(seed, 'baseline', [(40.0, base[s])], duration='4ep')
        write_run(seed, 'kd-kl-4of4', [(50.0, online[s])], duration='4ep', teachers=[ckpt('teacher-a')])
        # another temperature: not the cached students' twin, though first in the study's order
        write_run(seed, 'kd-kl-t1-4of4', [(50.0, 0.7)], duration='4ep', teachers=[ckpt('teacher-a')],
                  kd={'temperature': 1.0})
        for key, store, finals in (('top', 'topk', top), ('smp', 'sampled', smp)):
            (seed / f'cache-{key}').mkdir(parents=True)
            (seed / f'cache-{key}' / 'manifest.json').write_text(json.dumps({
                'format': 'teacher-cache/1', 'store': store, 'k': 64, 'bytes_per_example': 100,
                'teachers': [{'checkpoint': f'{ORIGINAL_ROOT}/teacher-a/checkpoints/ep4-ba40-rank0.pt'}],
                'production': {'seconds': 5.0, 'sessions': [{'seconds': 5.0}]}}))
            write_run(seed, f'cached-{key}-kd-kl-4of4', [(42.0, finals[s])], duration='4ep',
                      teachers=[{'cache': f'{ORIGINAL_ROOT}/cache-{key}'}])
    study = tmp_path / 'syn.yaml'
    study.write_text(SEEDED)
    numbers = build(str(root), str(study), str(tmp_path / 'report'))
    found = {f['claim'].split('`')[1]: f for f in numbers['findings'] if 'of online KD' in f['claim']}
    assert sorted(found) == ['cached-smp-kd-kl-4of4', 'cached-top-kd-kl-4of4']
    top_f, smp_f = found['cached-top-kd-kl-4of4'], found['cached-smp-kd-kl-4of4']
    assert top_f['verdict'] == 'holds' and smp_f['verdict'] == 'does not hold'
    assert '(topk cache) keeps >= 90%' in top_f['claim'] and '(sampled cache)' in smp_f['claim']
    assert '(`kd-kl-4of4` - `baseline`)' in top_f['claim']  # the twin of the same temperature, the plain run as long
    assert top_f['evidence'].startswith('gain online 2.50 [')  # mean of 2.0, 3.0, 2.5 points
    assert 'cached 2.37 [' in top_f['evidence'] and 'margin (cached gain - 0.9 x online gain) 0.12 [' in \
        top_f['evidence']  # (0.1 + 0.1 + 0.15) / 3
    assert 'the mean cached gain is 95% of the mean online gain' in top_f['evidence']  # 2.367 / 2.5
    assert 'the mean cached gain is 20% of the mean online gain' in smp_f['evidence']  # 0.5 / 2.5
