"""The study driver: study YAMLs, dependency order (teachers first), skipping finished runs, --only, failures,
--print-commands output, and the overrides it hands to recipes; runs are replaced by an injected runner, except one
end-to-end check on tiny data (2 batches per run)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.study import engine as driver
from benchmarks.study.spec import REPO, StudyError, load_study, stages
from recipes.core.config import load_config
from recipes.matryoshka import load_spec
from tests.helpers.study_runs import FakeRunner, finish, tiny_overrides
from tests.helpers.tiny_data import write_fashion_mnist

SPEC = """
name: tiny-mat
student_recipe: yamls/fashion_mnist/pool_random_1.yaml
generations: 2
overrides: {max_duration: 5ep}
pool:
  - {checkpoint: runs/x/checkpoints/latest-rank0.pt, overrides: {optimizer.lr: 0.02}}
  - {checkpoint: runs/y/checkpoints/latest-rank0.pt, overrides: {optimizer.lr: 0.4}}
"""


def tiny_study(tmp_path: Path, extra: str = '') -> Path:
    """A study with a student listed before its teacher, a baseline and a Matryoshka entry of 2 x 1 students."""
    (tmp_path / 'spec.yaml').write_text(SPEC)
    path = tmp_path / 'tiny.yaml'
    path.write_text(f"""
name: tiny
runs_root: R
baseline: base
overrides: {{train_loader.num_workers: 0}}
runs:
  - name: student
    recipe: yamls/fashion_mnist/kd_kl.yaml
    teachers: [teacher]
    overrides: {{max_duration: 2ep, algorithms.knowledge_distillation.end: 0.5dur}}
    tags: [kd]
  - {{name: base, recipe: yamls/fashion_mnist/resnet8.yaml, overrides: {{max_duration: 1ep}}, tags: [baseline]}}
  - {{name: teacher, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, tags: [teacher]}}
  - {{name: teacher2, recipe: yamls/fashion_mnist/teacher_lr0.4.yaml, tags: [teacher]}}
  - {{name: mat, kind: matryoshka, spec: {tmp_path / 'spec.yaml'}, teachers: [teacher, teacher2], generations: 1}}
{extra}""")
    return path


@pytest.fixture
def study(tmp_path):
    return load_study(tiny_study(tmp_path), runs_root=str(tmp_path / 'runs'))


def test_stages_put_teachers_first(study):
    assert [[r.name for r in s] for s in stages(study)] == [['teacher', 'teacher2', 'base'], ['student', 'mat']]


def test_run_study_trains_in_dependency_order_and_records_the_machine(study, tmp_path):
    runner = FakeRunner(study)
    status = driver.run_study(study, runner=runner)
    assert [name for name, _ in runner.calls] == ['teacher', 'teacher2', 'base', 'student', 'mat']
    assert set(status.values()) == {'trained'}
    machine = json.loads((tmp_path / 'runs' / 'machine.json').read_text())
    assert machine['sessions'][0]['runs'] == ['teacher', 'teacher2', 'base', 'student', 'mat']
    assert 'torch' in machine['sessions'][0] and 'date' in machine['sessions'][0]


def test_finished_runs_are_skipped_and_unfinished_ones_resumed(study, tmp_path):
    finish(tmp_path / 'runs' / 'teacher')
    finish(tmp_path / 'runs' / 'base', finished=False)  # interrupted: runs again (with autoresume=true)
    runner = FakeRunner(study)
    status = driver.run_study(study, runner=runner)
    assert [name for name, _ in runner.calls] == ['teacher2', 'base', 'student', 'mat']
    assert status['teacher'] == 'finished earlier'
    assert all('autoresume=true' in args for name, args in runner.calls if name != 'mat')
    runner2 = FakeRunner(study)
    assert set(driver.run_study(study, runner=runner2).values()) == {'finished earlier'}
    assert runner2.calls == []


def test_matryoshka_entry_is_finished_only_with_its_manifest_and_every_student(study, tmp_path):
    mat = study.run('mat')
    finish(tmp_path / 'runs' / 'mat' / 'g1' / 'm0')
    finish(tmp_path / 'runs' / 'mat' / 'g1' / 'm1')
    assert not driver.run_finished(study, mat)  # no manifest yet
    (tmp_path / 'runs' / 'mat' / 'manifest.json').write_text('{}')
    assert driver.run_finished(study, mat)
    finish(tmp_path / 'runs' / 'mat' / 'g1' / 'm1', finished=False)
    assert not driver.run_finished(study, mat)


def test_only_adds_the_unfinished_teachers_it_needs(study, tmp_path):
    runner = FakeRunner(study)
    driver.run_study(study, only=['student'], runner=runner)
    assert [name for name, _ in runner.calls] == ['teacher', 'student']
    runner = FakeRunner(study)
    driver.run_study(study, only=['mat'], runner=runner)  # teacher finished above: only teacher2 is added
    assert [name for name, _ in runner.calls] == ['teacher2', 'mat']


def test_a_failed_run_blocks_its_students_but_not_the_others(study, tmp_path):
    runner = FakeRunner(study, fail=('teacher',))
    status = driver.run_study(study, runner=runner)
    assert status == {'teacher': 'failed', 'teacher2': 'trained', 'base': 'trained', 'student': 'blocked',
                      'mat': 'blocked'}
    assert driver.main([str(tiny_study(tmp_path)), '--runs-root', str(tmp_path / 'runs2')],
                       runner=FakeRunner(load_study(tiny_study(tmp_path), runs_root=str(tmp_path / 'runs2')),
                                         fail=('base',))) == 1


def test_print_commands_exact_output(tmp_path, capsys):
    path = tiny_study(tmp_path)
    finish(tmp_path / 'R' / 'base')  # printed commented out
    assert driver.main([str(path), '--print-commands', '--runs-root', str(tmp_path / 'R')]) == 0
    R, spec = tmp_path / 'R', tmp_path / 'spec.yaml'
    teacher = f'{R}/teacher/checkpoints/latest-rank0.pt'
    common = 'train_loader.num_workers=0'
    expected = [
        '# study tiny: 5 runs in 2 stages, from the repository root. A stage needs the checkpoints of the stages '
        'before it; the runs within a stage are independent.',
        '# stage 1 of 2: 3 runs',
        f'composer recipes/train.py -f yamls/fashion_mnist/teacher_lr0.1.yaml {common} run_name=tiny-teacher '
        f'run_dir={R}/teacher save_folder={R}/teacher/checkpoints autoresume=true',
        f'composer recipes/train.py -f yamls/fashion_mnist/teacher_lr0.4.yaml {common} run_name=tiny-teacher2 '
        f'run_dir={R}/teacher2 save_folder={R}/teacher2/checkpoints autoresume=true',
        f'# finished: composer recipes/train.py -f yamls/fashion_mnist/resnet8.yaml {common} max_duration=1ep '
        f'run_name=tiny-base run_dir={R}/base save_folder={R}/base/checkpoints autoresume=true',
        '# stage 2 of 2: 2 runs',
        f'composer recipes/train.py -f yamls/fashion_mnist/kd_kl.yaml {common} max_duration=2ep '
        f'algorithms.knowledge_distillation.end=0.5dur \'algorithms.knowledge_distillation.teachers=["{teacher}"]\' '
        f'run_name=tiny-student run_dir={R}/student save_folder={R}/student/checkpoints autoresume=true',
        f'composer recipes/matryoshka.py -f {spec} name=tiny-mat out_dir={R}/mat generations=1 '
        f'\'pool=[{{"checkpoint": "{teacher}", "overrides": {{"optimizer.lr": 0.02}}}}, '
        f'{{"checkpoint": "{R}/teacher2/checkpoints/latest-rank0.pt", "overrides": {{"optimizer.lr": 0.4}}}}]\' '
        '\'overrides={"train_loader.num_workers": 0}\'',
    ]
    assert capsys.readouterr().out.splitlines() == expected
    assert driver.main([str(path), '--print-commands', '--launcher', 'composer -n 8', '--only', 'base']) == 0
    assert capsys.readouterr().out.splitlines()[2].startswith('composer -n 8 recipes/train.py -f ')


def test_overrides_make_configs_that_point_at_the_study(study, tmp_path):
    runs = str(tmp_path / 'runs')
    cfg = load_config(REPO / 'yamls/fashion_mnist/kd_kl.yaml', driver.run_overrides(study, study.run('student')))
    assert cfg['run_dir'] == f'{runs}/student' and cfg['save_folder'] == f'{runs}/student/checkpoints'
    assert cfg['autoresume'] is True and cfg['run_name'] == 'tiny-student' and cfg['max_duration'] == '2ep'
    kd = cfg['algorithms']['knowledge_distillation']
    assert kd['teachers'] == [f'{runs}/teacher/checkpoints/latest-rank0.pt'] and kd['end'] == '0.5dur'
    assert cfg['train_loader']['num_workers'] == 0
    spec = load_spec(tmp_path / 'spec.yaml', driver.run_overrides(study, study.run('mat')))
    assert spec['out_dir'] == f'{runs}/mat' and spec['generations'] == 1 and spec['name'] == 'tiny-mat'
    assert spec['pool'] == [
        {'checkpoint': f'{runs}/teacher/checkpoints/latest-rank0.pt', 'overrides': {'optimizer.lr': 0.02}},
        {'checkpoint': f'{runs}/teacher2/checkpoints/latest-rank0.pt', 'overrides': {'optimizer.lr': 0.4}}]
    assert spec['overrides'] == {'max_duration': '5ep', 'train_loader.num_workers': 0}


@pytest.mark.parametrize('extra, message', [
    ('  - {name: bad, recipe: x.yaml, teachers: [nobody]}', "'nobody' is not a run of this study"),
    ('  - {name: base, recipe: x.yaml}', 'duplicate names: base'),
    ('  - {name: c, recipe: x.yaml, tags: [kd, "two words"]}', "tags: expected words"),
    ('  - {name: c, recipe: x.yaml, teachers: [mat]}', "'mat' is a matryoshka entry"),
    ('  - {name: c1, recipe: x.yaml, teachers: [c2]}\n  - {name: c2, recipe: x.yaml, teachers: [c1]}',
     'circular teachers'),
    ('  - {name: c, recipe: x.yaml, colour: red}', "unknown key 'runs[5].colour'"),
    ('  - {name: c/d, recipe: x.yaml}', 'folder-safe name'),
    ('  - {name: c, kind: blockwise, spec: x.yaml, teachers: [teacher, teacher2]}',
     'runs[5] (c).teachers: a blockwise run learns from at most 1 teacher'),
    ('  - {name: c, kind: glue, spec: x.yaml, teachers: [teacher, teacher2]}',
     'runs[5] (c).teachers: a glue run learns from at most 1 teacher'),
    ('  - {name: c, recipe: x.yaml, generations: 2}', 'runs[5] (c).generations: only for kind matryoshka'),
    ('  - {name: c, kind: glue, spec: x.yaml, load_from: teacher}', 'runs[5] (c).load_from: only for kind train'),
    ('  - {name: c, recipe: x.yaml, phase: 0}', 'runs[5] (c).phase: expected a positive int, got 0'),
    ('  - {name: c, recipe: x.yaml, seeds: [0, 0]}', 'runs[5] (c).seeds: expected a list of distinct ints, got [0, 0]'),
    ('  - {name: c, recipe: x.yaml, teachers: teacher}', "runs[5].teachers: expected list, got str 'teacher'"),
])
def test_bad_studies_are_refused_with_a_message(tmp_path, extra, message, capsys):
    path = tiny_study(tmp_path, extra)
    with pytest.raises(StudyError, match=re.escape(message)):
        load_study(path)
    assert driver.main([str(path), '--print-commands']) == 2
    assert message in capsys.readouterr().err


def test_a_study_may_extend_a_base_and_refuses_unknown_keys_in_one_line(tmp_path, capsys):
    base = tiny_study(tmp_path)
    small = tmp_path / 'small.yaml'
    small.write_text(yaml.safe_dump({'base': base.name, 'name': 'small', 'runs_root': 'runs/${name}', 'seeds': [0],
                                     'overrides': {'progress_bar': False}}))
    s = load_study(small)
    assert s.name == 'small' and s.runs_root == 'runs/small' and s.seeds == [0] and s.baseline == 'base'
    assert s.overrides == {'train_loader.num_workers': 0, 'progress_bar': False}  # mappings merged key by key
    assert [r.name for r in s.runs] == ['student', 'base', 'teacher', 'teacher2', 'mat']
    for extra, key in (({'colour': 'red'}, 'colour'),
                       ({'runs': [{'name': 'a', 'recipe': 'x.yaml', 'colour': 'red'}]}, 'runs[0].colour')):
        small.write_text(yaml.safe_dump({'base': base.name, **extra}))
        assert driver.main([str(small), '--print-commands']) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: unknown key '{key}'; allowed: ") and f'(in {small})' in err
        assert err.count('\n') == 1
    small.write_text(yaml.safe_dump({'name': 'no-runs'}))
    with pytest.raises(StudyError, match=f"missing required key 'runs' \\(in {small}\\)"):
        load_study(small)
    with pytest.raises(StudyError, match='study: YAML file not found'):
        load_study(tmp_path / 'none.yaml')


def test_the_long_study_loads_and_every_config_resolves():
    study = load_study(REPO / 'benchmarks/studies/fashion_mnist_long.yaml')  # the study run on this project's CPU
    assert study.seeds == [0, 1, 2] and study.baseline == 'teacher-lr0.1'
    assert {t for r in study.runs for t in r.tags} == {
        'teacher', 'baseline', 'kd', 'early_stop', 'teacher_choice', 'pool', 'matryoshka'}
    replica = study.replicas()[2]
    assert [r.name for r in stages(replica)[0]][:4] == ['teacher-lr0.1', 'teacher-lr0.02', 'teacher-lr0.05',
                                                         'teacher-lr0.4']
    for r in replica.runs:
        if r.kind == 'train':
            cfg = load_config(driver.resolve_yaml(r.recipe), driver.run_overrides(replica, r))
            assert cfg['run_dir'] == f'runs/study-long/seed2/{r.name}' and cfg['seed'] == 2
            assert cfg['model']['name'] == 'fast_cnn' and cfg['train_loader']['subset'] == 8000
            for t in (cfg['algorithms'].get('knowledge_distillation') or {}).get('teachers', []):
                assert t.startswith('runs/study-long/seed2/teacher-lr')
        else:
            spec = load_spec(driver.resolve_yaml(r.recipe), driver.run_overrides(replica, r))
            assert [m['checkpoint'] for m in spec['pool']] == [replica.checkpoint(t) for t in r.teachers]
            assert spec['overrides']['max_duration'] == '232ba' and spec['overrides']['seed'] == 2


def test_end_to_end_on_tiny_data(tmp_path, fmnist_root: Any):
    """Really trains a teacher, a student and a one-student Matryoshka generation for 2 batches each, then reports
    on their records."""
    from benchmarks.kd.report import build
    overrides = tiny_overrides(fmnist_root)
    (tmp_path / 'spec.yaml').write_text(SPEC.split('  - {checkpoint: runs/y')[0])  # a pool of one
    path = tmp_path / 'e2e.yaml'
    path.write_text(f"""
name: e2e
runs_root: {tmp_path / 'runs'}
baseline: teacher
overrides: {json.dumps(overrides)}
runs:
  - {{name: student, recipe: yamls/fashion_mnist/kd_mse.yaml, teachers: [teacher], tags: [kd]}}
  - {{name: teacher, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, tags: [teacher, baseline]}}
  - {{name: mat, kind: matryoshka, spec: {tmp_path / 'spec.yaml'}, teachers: [teacher], generations: 1}}
""")
    assert driver.main([str(path)]) == 0
    for name in ('teacher', 'student'):
        summary = json.loads((tmp_path / 'runs' / name / 'summary.json').read_text())
        assert summary['finished'] and summary['step'] == 2 and summary['n_evals'] >= 1
    numbers = build(str(tmp_path / 'runs'), str(path), str(tmp_path / 'out'))
    teacher_s = json.loads((tmp_path / 'runs' / 'teacher' / 'summary.json').read_text())['train_wct_s']
    assert numbers['runs']['student']['teacher_s'] == [pytest.approx(teacher_s)]
    assert numbers['runs']['student']['teachers'] == ['teacher']
    assert numbers['runs']['mat/g1/m0']['teacher_s'] == [pytest.approx(teacher_s)]
    assert numbers['runs']['mat/g1/m0']['series'] == 'Matryoshka g1'
    manifest = json.loads((tmp_path / 'runs' / 'mat' / 'manifest.json').read_text())
    assert manifest['generations'][0][0]['checkpoint'] == f"{tmp_path / 'runs'}/teacher/checkpoints/latest-rank0.pt"
    assert manifest['generations'][1][0]['checkpoint'] == f"{tmp_path / 'runs'}/mat/g1/m0/checkpoints/latest-rank0.pt"
    assert (tmp_path / 'out' / 'report.md').is_file()
    assert set(driver.run_study(load_study(path)).values()) == {'finished earlier'}


# --- the driver kinds: prune_pipeline, blockwise, glue -----------------------------------------------------------
PRUNING = 'yamls/pipelines/fashion_mnist/pruning_convnet.yaml'


def blockwise_spec(tmp_path: Path, data: Path) -> str:
    """The ResNet-8 blockwise spec with its teacher reading the tiny data (the study checks the fine-tuning run's
    data before the first run trains, and CI has no ``data/``)."""
    path = tmp_path / 'blockwise.yaml'
    path.write_text(f"""base: {REPO / 'yamls/pipelines/fashion_mnist/blockwise_resnet8.yaml'}
teacher:
  overrides: {{train_loader.path: '{data}', eval_loader.path: '{data}'}}
""")
    return str(path)


def kinds_study(tmp_path: Path, extra: str = '') -> Path:
    """A pipeline, a blockwise reference and a bin-packing run that reuses it, a BERT pre-training and its GLUE."""
    write_fashion_mnist(tmp_path / 'data')
    blockwise = blockwise_spec(tmp_path, tmp_path / 'data')
    path = tmp_path / 'kinds.yaml'
    path.write_text(f"""
name: kinds
runs_root: {tmp_path / 'R'}
run_name: '{{run}}'
runs:
  - {{name: bp2, kind: blockwise, spec: {blockwise}, teachers: [w1],
     overrides: {{schedule.policy: bin_packing, schedule.workers: 2, fine_tune: null}}}}
  - {{name: w1, kind: blockwise, spec: {blockwise}, overrides: {{schedule.workers: 1}}}}
  - {{name: prune, kind: prune_pipeline, spec: {PRUNING}, overrides: {{sparsities: [0.5], methods: [magnitude]}}}}
  - {{name: bert, recipe: yamls/sotu/tiny_bert.yaml}}
  - {{name: glue, kind: glue, spec: yamls/pipelines/glue/tiny_local.yaml, teachers: [bert]}}
{extra}""")
    return path


class DriverRunner(FakeRunner):
    """Writes what each driver writes when it finishes (instead of running it)."""

    def __call__(self, run, overrides: list[str]) -> None:
        self.calls.append((run.name, overrides))
        folder = Path(self.study.run_dir(run.name))
        if run.kind == 'train':
            finish(folder)
        elif run.kind == 'blockwise':
            folder.mkdir(parents=True)
            (folder / 'blockwise.json').write_text('{}')
        elif run.kind == 'prune_pipeline':
            from recipes.prune_pipeline import load_spec as load_pruning, stage_configs
            for stage in stage_configs(load_pruning(REPO / PRUNING, overrides)):
                finish(Path(stage['cfg']['run_dir']))
                (Path(stage['cfg']['run_dir']) / 'checkpoints').mkdir()
                (Path(stage['cfg']['run_dir']) / 'checkpoints' / 'latest-rank0.pt').write_bytes(b'')
            (folder / 'manifest.json').write_text('{}')
        else:
            for seed in (17, 18, 19):
                (folder / 'sst2' / f'seed{seed}').mkdir(parents=True)
                (folder / 'sst2' / f'seed{seed}' / 'glue.json').write_text('{}')
            (folder / 'glue_results.json').write_text('{}')


def test_driver_kinds_print_their_commands(tmp_path, capsys):
    assert driver.main([str(kinds_study(tmp_path)), '--print-commands']) == 0
    blockwise = tmp_path / 'blockwise.yaml'
    R = tmp_path / 'R'
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == '# stage 1 of 2: 3 runs' and lines[5] == '# stage 2 of 2: 2 runs'
    assert lines[2] == (f'composer recipes/blockwise.py -f {blockwise} schedule.workers=1 run_name=w1 '
                        f'run_dir={R}/w1')
    assert lines[3].startswith('composer recipes/train.py -f yamls/sotu/tiny_bert.yaml run_name=bert ')
    assert lines[4] == (f"composer recipes/prune_pipeline.py -f {PRUNING} 'sparsities=[0.5]' "
                        f"'methods=[\"magnitude\"]' out_dir={R}/prune")
    assert lines[6] == (f'composer recipes/blockwise.py -f {blockwise} schedule.policy=bin_packing schedule.workers=2 '
                        f'fine_tune=null run_name=bp2 run_dir={R}/bp2 '
                        f'teacher.checkpoint={R}/w1/teacher/checkpoints/latest-rank0.pt '
                        f'schedule.times={R}/w1/task_times.json')
    assert lines[7] == (f'composer recipes/glue.py -f yamls/pipelines/glue/tiny_local.yaml name=glue out_dir={R}/glue '
                        f'pretrained={R}/bert/checkpoints/latest-rank0.pt')


def test_driver_kinds_run_once_then_are_skipped_as_their_drivers_tell(tmp_path):
    study = load_study(kinds_study(tmp_path))
    runner = DriverRunner(study)
    assert set(driver.run_study(study, runner=runner).values()) == {'trained'}
    assert [name for name, _ in runner.calls] == ['w1', 'bert', 'prune', 'bp2', 'glue']
    assert all(driver.run_finished(study, r) for r in study.runs)
    again = DriverRunner(study)
    assert set(driver.run_study(study, runner=again).values()) == {'finished earlier'} and again.calls == []
    (tmp_path / 'R' / 'bp2' / 'blockwise.json').unlink()  # a blockwise run without its report is not finished
    (tmp_path / 'R' / 'glue' / 'sst2' / 'seed18' / 'glue.json').unlink()  # nor a GLUE run with a (task, seed) left
    stage = next((tmp_path / 'R' / 'prune').glob('magnitude-*'))
    (stage / 'checkpoints' / 'latest-rank0.pt').unlink()  # nor a pipeline with a stage's checkpoint missing
    assert [r.name for r in study.runs if not driver.run_finished(study, r)] == ['bp2', 'prune', 'glue']


def test_only_a_driver_run_adds_the_unfinished_run_it_learns_from(tmp_path):
    study = load_study(kinds_study(tmp_path))
    runner = DriverRunner(study)
    driver.run_study(study, only=['bp2'], runner=runner)
    assert [name for name, _ in runner.calls] == ['w1', 'bp2']
    runner = DriverRunner(study)
    driver.run_study(study, only=['glue'], runner=runner)
    assert [name for name, _ in runner.calls] == ['bert', 'glue']


@pytest.mark.parametrize('override', ['max_durration: 1ep', 'optimizer.lrr: 0.1', 'algorithms.label_smoothing.alpah: 0.1'])
def test_every_run_is_checked_before_the_first_trains(tmp_path, capsys, override):
    """The 2nd run's bad override key (top level, or inside a section its builder checks) is found before the 1st
    run trains: one error line, exit 2, no folder."""
    path = tmp_path / 'bad.yaml'
    path.write_text(f"""
name: bad
runs_root: {tmp_path / 'R'}
runs:
  - {{name: good, recipe: yamls/fashion_mnist/resnet8.yaml}}
  - {{name: typo, recipe: yamls/fashion_mnist/resnet8.yaml, overrides: {{{override}}}}}
""")
    runner = FakeRunner(None)
    assert driver.main([str(path)], runner=runner) == 2
    err = capsys.readouterr().err
    bad_key = override.split(':')[0].split('.')[-1]
    assert err.startswith('error: runs (typo): ') and bad_key in err and err.count('\n') == 1, err
    assert runner.calls == [] and not (tmp_path / 'R').exists()
    assert driver.main([str(kinds_study(tmp_path, '  - {name: p2, kind: prune_pipeline, spec: ' + PRUNING +
                                         ', overrides: {methods: [prune]}}'))], runner=runner) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: runs (p2): methods[0]: unknown method') and err.count('\n') == 1
    assert runner.calls == [] and not (tmp_path / 'R').exists()


def test_family_describes_every_finished_run_once(tmp_path, monkeypatch):
    """``family: pruning`` calls benchmarks.pruning.describe.describe after every finished run (trained now or
    earlier); its ``check`` runs first."""
    from benchmarks.pruning import describe as pruning

    seen = []
    monkeypatch.setattr(pruning, 'describe', lambda study, run: seen.append((study.seed, run.name)))
    path = tmp_path / 'fam.yaml'
    path.write_text(f"""
name: fam
runs_root: {tmp_path / 'R'}
family: pruning
run_folder: '{{run}}/seed{{seed}}'
seeds: [0, 1]
runs:
  - {{name: prune, kind: prune_pipeline, spec: {PRUNING}, overrides: {{sparsities: [0.5], methods: [magnitude]}}}}
compare: {{layers: {{prune: [conv1]}}}}
""")
    runs = []
    for replica in load_study(path).replicas():
        runner = DriverRunner(replica)
        assert set(driver.run_study(replica, runner=runner).values()) == {'trained'}
        runs += runner.calls
    assert seen == [(0, 'prune'), (1, 'prune')] and [o[-1] for _, o in runs] == [
        f'out_dir={tmp_path}/R/prune/seed0', f'out_dir={tmp_path}/R/prune/seed1']
    assert driver.main([str(path)]) == 0 and seen[2:] == [(0, 'prune'), (1, 'prune')]  # finished: described again
    path.write_text(path.read_text().replace('layers: {prune: [conv1]}', 'layers: {}'))
    assert driver.main([str(path)]) == 2
