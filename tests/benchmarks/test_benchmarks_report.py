"""The report on synthetic run records with hand-computed answers: crossing times, speedups with and without the
teachers' time, teacher cost counted once and recursively, Pareto front, tables, findings, files written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.core.analysis import analyse
from benchmarks.kd.describe import kd_facts, teacher_forwards
from benchmarks.core.records import copy_records, load_runs
from benchmarks.kd.report import build, main
from benchmarks.core.speedup import best_within, crossing_time, pareto_front, speedup
from benchmarks.study.spec import load_study
from benchmarks.core.teacher_cost import TeacherIndex
from tests.helpers.run_records import ORIGINAL_ROOT, ckpt, write_run


# --- the pure rules -------------------------------------------------------------------------------------------
def test_crossing_time_interpolates_linearly_between_evaluations():
    # 0.86 at 12 s, 0.91 at 24 s; target 0.90 is 4/5 of the way: 12 + 0.8 * 12 = 21.6 s
    assert crossing_time([(12.0, 0.86), (24.0, 0.91)], 0.90) == pytest.approx(21.6)
    # the first evaluation at or above the target counts, not a later higher one
    assert crossing_time([(10, 0.5), (20, 0.7), (30, 0.6), (40, 0.9)], 0.6) == pytest.approx(15.0)
    # exactly on the target at an evaluation: that evaluation's time
    assert crossing_time([(10, 0.5), (20, 0.6)], 0.6) == pytest.approx(20.0)
    # already above at the first evaluation: nothing is known before it
    assert crossing_time([(7.0, 0.95), (14.0, 0.97)], 0.9) == pytest.approx(7.0)


def test_candidate_that_never_reaches_the_target_has_no_time_and_no_speedup():
    assert crossing_time([(10, 0.80), (20, 0.89)], 0.90) is None
    assert crossing_time([], 0.5) is None
    assert speedup(50.0, None) is None
    assert speedup(50.0, None, extra_s=10.0) is None


def test_speedup_with_and_without_extra_time():
    assert speedup(50.0, 21.6) == pytest.approx(50 / 21.6)
    assert speedup(50.0, 21.6, extra_s=55.0) == pytest.approx(50 / 76.6)


def test_pareto_front_of_known_points():
    points = [(10, 0.80, 'a'), (20, 0.85, 'b'), (15, 0.79, 'c'), (30, 0.85, 'd'), (40, 0.90, 'e'),
              (20, 0.84, 'f'), (5, 0.70, 'g'), (40, 0.88, 'h')]
    front = pareto_front(points)
    assert [p[2] for p in front] == ['g', 'a', 'b', 'e']
    assert best_within(front, 25) == 0.85
    assert best_within(front, 4) is None
    assert pareto_front([]) == []


# --- synthetic records ----------------------------------------------------------------------------------------
STUDY = f"""
name: syn
runs_root: {ORIGINAL_ROOT}
baseline: teacher-a
runs:
  - {{name: teacher-a, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, tags: [teacher, baseline]}}
  - {{name: teacher-b, recipe: yamls/fashion_mnist/teacher_lr0.4.yaml, tags: [teacher]}}
  - {{name: baseline-1ep, recipe: yamls/fashion_mnist/resnet8.yaml, tags: [baseline]}}
  - {{name: baseline-2ep, recipe: yamls/fashion_mnist/resnet8.yaml, tags: [baseline, early_stop]}}
  - {{name: kd-kl-1ep, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher-a], tags: [kd]}}
  - {{name: kd-mse-1ep, recipe: yamls/fashion_mnist/kd_mse.yaml, teachers: [teacher-a], tags: [kd]}}
  - {{name: kd-kl-2ep, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher-a], tags: [kd]}}
  - name: kd-mse-2ep
    recipe: yamls/fashion_mnist/kd_mse.yaml
    teachers: [teacher-a]
    tags: [kd, early_stop, teacher_choice, pool]
  - {{name: kd-mse-2ep-stop50, recipe: yamls/fashion_mnist/kd_early_stop.yaml, teachers: [teacher-a],
      tags: [early_stop]}}
  - {{name: kd-mse-2ep-from-b, recipe: yamls/fashion_mnist/kd_mse.yaml, teachers: [teacher-b],
      tags: [teacher_choice]}}
  - {{name: pool-all, recipe: yamls/fashion_mnist/pool_all.yaml, teachers: [teacher-a, teacher-b], tags: [pool]}}
  - {{name: pool-random1, recipe: yamls/fashion_mnist/pool_random_1.yaml, teachers: [teacher-a, teacher-b],
      tags: [pool]}}
  - {{name: mat, kind: matryoshka, spec: yamls/pipelines/fashion_mnist/matryoshka.yaml, teachers: [teacher-a, teacher-b],
      generations: 2, tags: [matryoshka]}}
  - {{name: never-run, recipe: yamls/fashion_mnist/resnet8.yaml}}
"""


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, Path]:
    """Records of a small study (the runs root is tmp_path/records) and its study YAML.

    target = 0.90 (teacher-a's final accuracy), baseline time = 50 s (its last evaluation; its summary says 55 s of
    training in all, which is what it costs as a teacher). teacher-b costs 52 s.
    """
    root = tmp_path / 'records'
    a, b = ckpt('teacher-a'), ckpt('teacher-b')
    write_run(root, 'teacher-a', [(10, .80), (20, .85), (30, .88), (40, .89), (50, .90)], duration='5ep',
              train_s=55.0)
    write_run(root, 'teacher-b', [(10, .70), (20, .74), (30, .77), (40, .79), (50, .80)], duration='5ep', lr=0.4,
              train_s=52.0)
    write_run(root, 'baseline-1ep', [(10, .83)], duration='1ep')
    write_run(root, 'baseline-2ep', [(10, .82), (20, .86)])
    write_run(root, 'kd-kl-1ep', [(12, .84)], duration='1ep', teachers=[a])
    write_run(root, 'kd-mse-1ep', [(12, .85)], duration='1ep', teachers=[a], kd={'kd_loss': 'mse'})
    # 0.86 -> 0.91 between 12 s and 24 s: reaches 0.90 at 21.6 s
    write_run(root, 'kd-kl-2ep', [(12, .86), (24, .91)], teachers=[a])
    write_run(root, 'kd-mse-2ep', [(12, .87), (24, .89)], teachers=[a], kd={'kd_loss': 'mse'})  # never reaches
    write_run(root, 'kd-mse-2ep-stop50', [(11, .86), (21, .88)], teachers=[a], kd={'kd_loss': 'mse', 'end': '0.5dur'})
    # the same teacher named twice (as a path and as a dict) counts once
    write_run(root, 'kd-mse-2ep-from-b', [(12, .87), (24, .895)], teachers=[b, {'checkpoint': b}],
              kd={'kd_loss': 'mse'})
    # 0.88 -> 0.92 between 20 s and 40 s: 0.90 at 30 s
    write_run(root, 'pool-all', [(20, .88), (40, .92)], teachers=[a, b], kd={'kd_loss': 'mse', 'pool_mode': 'all'})
    write_run(root, 'pool-random1', [(13, .89), (26, .905)], teachers=[a, b],
              kd={'kd_loss': 'mse', 'pool_mode': 'random_1'})
    # Matryoshka: g1 learns from {a, b}; g2 from the two g1 students; student clocks 60, 61 (g1), 62, 63 (g2)
    g1 = [ckpt('mat/g1/m0'), ckpt('mat/g1/m1')]
    write_run(root, 'mat/g1/m0', [(30, .89), (60, .905)], duration='5ep', teachers=[a, b],
              kd={'pool_mode': 'random_1'})
    write_run(root, 'mat/g1/m1', [(30, .88), (61, .90)], duration='5ep', lr=0.4, teachers=[a, b],
              kd={'pool_mode': 'random_1'})
    write_run(root, 'mat/g2/m0', [(30, .90), (62, .915)], duration='5ep', teachers=g1, kd={'pool_mode': 'random_1'})
    write_run(root, 'mat/g2/m1', [(30, .89), (63, .91)], duration='5ep', lr=0.4, teachers=g1,
              kd={'pool_mode': 'random_1'})
    manifest = {'name': 'syn-mat', 'generations': [
        [{'generation': 0, 'member': i, 'checkpoint': c, 'teachers': [], 'train_wct_s': s}
         for i, (c, s) in enumerate([(a, 55.0), (b, 52.0)])],
        [{'generation': 1, 'member': i, 'checkpoint': c, 'teachers': [a, b], 'train_wct_s': 60.0 + i}
         for i, c in enumerate(g1)],
    ]}
    (root / 'mat' / 'manifest.json').write_text(json.dumps(manifest))
    (root / 'machine.json').write_text(json.dumps({'sessions': [{'date': '2024-01-02 03:04 UTC', 'cpu': 'TestCPU',
                                                                 'device': 'CPU only (no GPU)', 'runs': ['x']}]}))
    study = tmp_path / 'syn.yaml'
    study.write_text(STUDY)
    return root, study


def test_time_to_target_and_speedups_from_records(synthetic):
    root, study = synthetic
    a = analyse(load_study(study), str(root), describe=kd_facts)
    assert a.target == pytest.approx(0.90) and a.baseline_s == pytest.approx(50.0)
    r = a.results
    assert r['teacher-a'].speedup == pytest.approx(1.0)
    assert r['kd-kl-2ep'].time_to_target == pytest.approx(21.6)
    assert r['kd-kl-2ep'].speedup == pytest.approx(50 / 21.6)
    assert r['kd-kl-2ep'].teacher_s == pytest.approx(55.0)  # the teacher's whole training, from its summary
    assert r['kd-kl-2ep'].speedup_with_teachers == pytest.approx(50 / (21.6 + 55.0))
    never = r['kd-mse-2ep']
    assert never.time_to_target is None and never.speedup is None and never.speedup_with_teachers is None
    assert never.best_acc == pytest.approx(0.89)
    assert r['pool-all'].time_to_target == pytest.approx(30.0)
    assert r['pool-all'].speedup_with_teachers == pytest.approx(50 / (30 + 55 + 52))
    assert teacher_forwards(r['pool-all']) == 2 and teacher_forwards(r['pool-random1']) == 1
    assert r['kd-mse-2ep-stop50'].facts['kd_fraction'] == pytest.approx(0.5)
    assert r['baseline-2ep'].facts['kd_fraction'] == 0.0 and r['kd-mse-2ep'].facts['kd_fraction'] == 1.0
    assert (r['baseline-2ep'].series, r['kd-mse-2ep'].series, r['pool-all'].series) == ('plain', 'KD-MSE', 'pool all')
    assert analyse(load_study(study), str(root)).results['kd-mse-2ep'].series == ''  # the core knows no KD
    assert a.missing == ['never-run']


def test_teacher_cost_counts_each_teacher_run_once(synthetic):
    root, study = synthetic
    a = analyse(load_study(study), str(root))
    r = a.results['kd-mse-2ep-from-b']
    assert r.teacher_s == pytest.approx(52.0)  # b named twice, counted once
    assert r.teacher_runs == ['teacher-b']
    assert a.results['pool-random1'].teacher_s == pytest.approx(55.0 + 52.0)


def test_teacher_cost_of_a_matryoshka_generation_is_its_whole_chain(synthetic):
    root, study = synthetic
    a = analyse(load_study(study), str(root))
    # g1: the sweep pool a + b; g2: the g1 students (60 + 61) and, once, their shared teachers a + b
    assert a.results['mat/g1/m0'].teacher_s == pytest.approx(55 + 52)
    assert a.results['mat/g2/m0'].teacher_s == pytest.approx(60 + 61 + 55 + 52)
    assert sorted(a.results['mat/g2/m1'].teacher_runs) == ['mat/g1/m0', 'mat/g1/m1', 'teacher-a', 'teacher-b']
    assert a.matryoshka['mat'] == [['teacher-a', 'teacher-b'], ['mat/g1/m0', 'mat/g1/m1'],
                                   ['mat/g2/m0', 'mat/g2/m1']]
    # g2 m0 reaches 0.90 at its first evaluation (30 s): speedup 50/30, with its chain 50/(30+228)
    assert a.results['mat/g2/m0'].speedup_with_teachers == pytest.approx(50 / (30 + 228))


def test_teacher_index_falls_back_to_manifests_and_reports_unknown_teachers():
    entry = {'generation': 0, 'member': 0, 'checkpoint': 'x/t/checkpoints/a.pt', 'teachers': [], 'train_wct_s': 7.0}
    index = TeacherIndex.build({}, [{'generations': [[entry]]}])
    cost = index.cost(['x/t/checkpoints/a.pt', 'x/t/checkpoints/b.pt', 'elsewhere/u/checkpoints/latest-rank0.pt'])
    assert cost.seconds == pytest.approx(7.0)  # two checkpoints of one run: one run's training
    assert cost.missing == ['elsewhere/u'] and not cost.complete


def test_report_of_a_study_without_seeds_writes_plots_numbers_and_copies_records(synthetic, tmp_path):
    root, study = synthetic
    (root / 'teacher-a' / 'checkpoints').mkdir()
    (root / 'teacher-a' / 'checkpoints' / 'latest-rank0.pt').write_bytes(b'not copied')
    out = tmp_path / 'out'
    assert main([str(root), '--study', str(study), '--out', str(out)]) == 0
    md = (out / 'report.md').read_text()
    assert f'benchmarks.kd.report {out}/runs --study {study} --out {out}' in md  # the regeneration command
    assert 'interpolated linearly' in md and '## Findings' in md and '1 seeds' in md
    assert 'TestCPU' in md  # the machine the study driver recorded
    assert '(1 run)' in md  # one seed: no interval
    for png in ('accuracy_vs_time.png', 'accuracy_vs_time_with_teachers.png', 'speedup_vs_duration.png'):
        data = (out / png).read_bytes()
        assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 10_000
    numbers = json.loads((out / 'summary.json').read_text())
    assert numbers['target']['mean'] == pytest.approx(0.90)
    assert numbers['runs']['kd-kl-2ep']['time_to_target'] == [pytest.approx(21.6)]
    assert numbers['runs']['kd-kl-2ep']['speedup'] == [pytest.approx(50 / 21.6)]
    assert numbers['runs']['mat/g2/m1']['teacher_s'] == [pytest.approx(60 + 61 + 55 + 52)]
    assert (out / 'runs' / 'mat' / 'g2' / 'm1' / 'record.jsonl').is_file()
    assert (out / 'runs' / 'mat' / 'manifest.json').is_file() and (out / 'runs' / 'machine.json').is_file()
    assert not (out / 'runs' / 'teacher-a' / 'checkpoints').exists()
    again = build(str(out / 'runs'), str(study), str(tmp_path / 'out2'))  # from the copies: the same numbers
    assert again['runs'] == numbers['runs'] and again['findings'] == numbers['findings']


def test_copy_records_skips_checkpoints(synthetic, tmp_path):
    root, _ = synthetic
    (root / 'teacher-a' / 'checkpoints').mkdir()
    (root / 'teacher-a' / 'checkpoints' / 'ep1.pt').write_bytes(b'x')
    n = copy_records(root, tmp_path / 'copy')
    assert n == 16 * 3 + 2  # 16 runs x (config, record, summary) + manifest + machine
    assert set(load_runs(tmp_path / 'copy')) == set(load_runs(root))
