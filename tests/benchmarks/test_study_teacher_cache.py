"""The study engine's ``teacher_cache`` kind: its command (exact ``--print-commands`` lines, the teachers' model
passed when it is not the recipe's), students that read it (``teachers: [<cache run>]`` -> ``[{cache: <folder>}]``),
dependency order, ``--only``, when a cache run is finished, and the YAML errors; runs replaced by FakeRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from algorithms.distillation.teacher_cache import shard_name
from benchmarks.study import engine as driver
from benchmarks.study.spec import REPO, load_study, stages
from recipes.core.config import load_config
from recipes.teacher_cache import load_command
from tests.helpers.study_runs import FakeRunner, finish_cache

RUNS = """
  - {name: teacher, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml}
  - {name: teacher2, recipe: yamls/fashion_mnist/teacher_lr0.4.yaml}
  - {name: wide, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, overrides: {model.widths: [32, 64, 128, 256]}}
  - {name: cache-pair, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher, teacher2],
     cache: {store: dense}}
  - {name: cache-wide, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [wide]}
  - {name: student, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [cache-pair], overrides: {max_duration: 1ep}}
  - {name: student-wide, recipe: yamls/fashion_mnist/kd_mse.yaml, teachers: [cache-wide]}
"""


def cache_study(tmp_path: Path, runs: str = RUNS) -> Path:
    path = tmp_path / 'cached.yaml'
    path.write_text(f"""
name: cached
runs_root: R
baseline: teacher
overrides: {{model.name: fast_cnn, train_loader.num_workers: 0}}
runs:{runs}""")
    return path


@pytest.fixture
def study(tmp_path):
    return load_study(cache_study(tmp_path), runs_root=str(tmp_path / 'runs'))


def test_print_commands_exact_lines_of_a_cache_and_its_student(tmp_path, capsys):
    R = tmp_path / 'R'
    assert driver.main([str(cache_study(tmp_path)), '--print-commands', '--runs-root', str(R),
                        '--launcher', 'composer -n 8']) == 0
    lines = capsys.readouterr().out.splitlines()
    common = 'model.name=fast_cnn train_loader.num_workers=0'
    assert lines[0].startswith('# study cached: 7 runs in 3 stages')
    assert lines[5] == '# stage 2 of 3: 2 runs'
    # not a distributed program: python, whatever the launcher; its teachers' checkpoints, its folder, its options
    assert lines[6] == (f'python recipes/teacher_cache.py -f yamls/fashion_mnist/kd_kl.yaml '
                        f'--teacher {R}/teacher/checkpoints/latest-rank0.pt '
                        f'--teacher {R}/teacher2/checkpoints/latest-rank0.pt --out {R}/cache-pair --store dense '
                        f'{common}')
    wide_model = {'name': 'fast_cnn', 'num_classes': 10, 'in_channels': 1, 'widths': [32, 64, 128, 256]}
    assert lines[7] == (f'python recipes/teacher_cache.py -f yamls/fashion_mnist/kd_kl.yaml '
                        f'--teacher {R}/wide/checkpoints/latest-rank0.pt --out {R}/cache-wide '
                        f"--teacher-model '{json.dumps(wide_model)}' {common}")
    assert lines[9] == (f'composer -n 8 recipes/train.py -f yamls/fashion_mnist/kd_kl.yaml {common} max_duration=1ep '
                        f'\'algorithms.knowledge_distillation.teachers=[{{"cache": "{R}/cache-pair"}}]\' '
                        f'run_name=cached-student run_dir={R}/student save_folder={R}/student/checkpoints '
                        'autoresume=true')


def test_the_student_reads_the_cache_folder_and_the_cache_command_gets_the_study_keys(study, tmp_path):
    runs = tmp_path / 'runs'
    cfg = load_config(REPO / 'yamls/fashion_mnist/kd_mse.yaml', driver.run_overrides(study, study.run('student-wide')))
    assert cfg['algorithms']['knowledge_distillation']['teachers'] == [{'cache': f'{runs}/cache-wide'}]
    cache_cfg = load_command(REPO / 'yamls/fashion_mnist/kd_kl.yaml',
                             driver.run_overrides(study, study.run('cache-pair')))
    assert cache_cfg['model']['name'] == 'fast_cnn' and cache_cfg['train_loader']['num_workers'] == 0


def test_caches_come_between_their_teachers_and_their_students(study):
    assert [[r.name for r in s] for s in stages(study)] == [
        ['teacher', 'teacher2', 'wide'], ['cache-pair', 'cache-wide'], ['student', 'student-wide']]
    runner = FakeRunner(study)
    assert set(driver.run_study(study, runner=runner).values()) == {'trained'}
    assert [n for n, _ in runner.calls] == ['teacher', 'teacher2', 'wide', 'cache-pair', 'cache-wide', 'student',
                                            'student-wide']
    assert set(driver.run_study(study, runner=FakeRunner(study)).values()) == {'finished earlier'}


def test_only_adds_the_unfinished_cache_and_its_teacher(study):
    runner = FakeRunner(study)
    driver.run_study(study, only=['student-wide'], runner=runner)
    assert [n for n, _ in runner.calls] == ['wide', 'cache-wide', 'student-wide']


def test_a_cache_run_is_finished_when_every_planned_shard_is_there(study, tmp_path):
    run, folder = study.run('cache-wide'), tmp_path / 'runs' / 'cache-wide'
    assert not driver.run_finished(study, run)  # nothing yet
    finish_cache(folder, epochs=(0, 1, 2), ranks=2)
    assert driver.run_finished(study, run)
    (folder / shard_name(2, 1)).unlink()  # a shard the manifest plans is missing: production must resume
    assert not driver.run_finished(study, run)
    (folder / shard_name(2, 1)).write_bytes(b'\0' * 7)  # a torn shard is not whole either
    assert not driver.run_finished(study, run)


def test_a_cache_of_teachers_trained_outside_the_study(tmp_path, capsys):
    """``cache: {teacher: PATH or [PATHS]}``: checkpoints from elsewhere, after the study's own teachers; their model
    is the command's to find (no --teacher-model derived without study teachers)."""
    runs = ('\n  - {name: teacher, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml}'
            '\n  - {name: c1, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, '
            'cache: {teacher: elsewhere/a.pt, store: dense}}'
            '\n  - {name: c2, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher], '
            'cache: {teacher: [elsewhere/a.pt, elsewhere/b.pt]}}')
    R = tmp_path / 'R'
    assert driver.main([str(cache_study(tmp_path, runs)), '--print-commands', '--runs-root', str(R)]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith('python recipes/teacher_cache.py')]
    common = 'model.name=fast_cnn train_loader.num_workers=0'
    assert lines[0] == (f'python recipes/teacher_cache.py -f yamls/fashion_mnist/kd_kl.yaml --teacher elsewhere/a.pt '
                        f'--out {R}/c1 --store dense {common}')
    assert lines[1] == (f'python recipes/teacher_cache.py -f yamls/fashion_mnist/kd_kl.yaml '
                        f'--teacher {R}/teacher/checkpoints/latest-rank0.pt --teacher elsewhere/a.pt '
                        f'--teacher elsewhere/b.pt --out {R}/c2 {common}')


@pytest.mark.parametrize('runs, message', [
    ('\n  - {name: t, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml}\n'
     '  - {name: c, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml}',
     'runs[1] (c).teachers: a teacher_cache run caches the outputs of at least one study run (or of the '
     'checkpoints in cache.teacher)'),
    ('\n  - {name: c, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, cache: {teacher: [1, 2]}}',
     'runs[0] (c).cache.teacher: expected a checkpoint path or a list of them'),
    ('\n  - {name: t, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, cache: {store: dense}}',
     'runs[0] (t).cache: only for kind teacher_cache'),
    ('\n  - {name: t, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml}\n'
     '  - {name: c, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [t], cache: {colour: 1}}',
     'runs[1] (c).cache.colour: expected one of store, k, epochs'),
    ('\n  - {name: t, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml}\n'
     '  - {name: c, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [t]}\n'
     '  - {name: s, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [c, t]}',
     'runs (s).teachers: give teacher_cache runs or trained runs, not both'),
    ('\n  - {name: t, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml}\n'
     '  - {name: c, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [t]}\n'
     '  - {name: c2, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [c]}',
     "runs (c2).teachers: 'c' is a teacher_cache entry, not a trained run"),
])
def test_bad_cache_entries_are_one_error_line(tmp_path, capsys, runs, message):
    assert driver.main([str(cache_study(tmp_path, runs)), '--print-commands']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'error: {message}') and '\n' not in err, err


def test_end_to_end_a_cache_and_its_students_on_tiny_data(tmp_path, fmnist_root):
    """Really trains a teacher (2 batches), produces its cache through the printed command's code, trains two
    students from it and reports: each student carries half the cache's recorded production time."""
    from benchmarks.kd.report import build
    from tests.helpers.study_runs import tiny_overrides

    path, runs = tmp_path / 'e2e.yaml', tmp_path / 'runs'
    path.write_text(f"""
name: e2e
runs_root: {runs}
baseline: teacher
overrides: {json.dumps(tiny_overrides(fmnist_root))}
runs:
  - {{name: teacher, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, tags: [teacher, baseline]}}
  - {{name: cache, kind: teacher_cache, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher]}}
  - {{name: kl, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [cache]}}
  - {{name: mse, recipe: yamls/fashion_mnist/kd_mse.yaml, teachers: [cache]}}
""")
    assert driver.main([str(path)]) == 0
    manifest = json.loads((runs / 'cache' / 'manifest.json').read_text())
    assert manifest['epochs'] == [0] and manifest['production']['shards'] == 1
    assert driver.run_finished(load_study(path), load_study(path).run('cache'))
    numbers = build(str(runs), str(path), str(tmp_path / 'out'))
    teacher_s = json.loads((runs / 'teacher' / 'summary.json').read_text())['train_wct_s']
    for name in ('kl', 'mse'):
        assert json.loads((runs / name / 'summary.json').read_text())['finished']
        student = numbers['runs'][name]
        assert student['series'] == f'cached KD-{name.upper()}' and student['teachers'] == ['teacher']
        assert student['cache_s'] == [pytest.approx(manifest['production']['seconds'] / 2)]
        assert student['teacher_s'] == [pytest.approx(teacher_s)]
