"""Distillation from recipes: teachers from real run checkpoints, their cost and scores, errors, Matryoshka."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from algorithms.callbacks import checkpoint_record, read_records
from recipes import matryoshka
from recipes.core.builders import launch, prepare
from recipes.core.errors import ConfigError
from tests.conftest import REPO, tiny_config, tiny_overrides

KD_MSE = REPO / 'yamls' / 'fashion_mnist' / 'kd_mse.yaml'
POOL = REPO / 'yamls' / 'fashion_mnist' / 'pool_greedy_topk.yaml'


def fit(cfg):
    trainer = launch(prepare(cfg))
    trainer.fit()
    trainer.close()
    return trainer


@pytest.fixture(scope='module')
def teacher_runs(fmnist_root, tmp_path_factory) -> list[Path]:
    """Two real 1-epoch teacher runs at different learning rates."""
    root = tmp_path_factory.mktemp('teachers')
    runs = []
    for lr in (0.05, 0.2):
        run_dir = root / f'lr{lr}'
        fit(tiny_config(fmnist_root, run_dir, max_duration='1ep', **{'optimizer.lr': lr}))
        runs.append(run_dir)
    return runs


def ckpt(run_dir: Path) -> str:
    return str(run_dir / 'checkpoints' / 'latest-rank0.pt')


def test_checkpoint_carries_its_training_cost_and_metrics(teacher_runs):
    summary = json.loads((teacher_runs[0] / 'summary.json').read_text())
    record = checkpoint_record(ckpt(teacher_runs[0]))
    assert record['step'] == summary['step'] == 4
    assert 0 < record['train_wct_s'] <= summary['train_wct_s']
    assert record['metrics'] == read_records(teacher_runs[0])[-1]['metrics']


def test_student_distils_from_recipe_teachers(fmnist_root, teacher_runs, tmp_path):
    cfg = tiny_config(fmnist_root, tmp_path / 'student', yaml=KD_MSE, max_duration='4ba')
    cfg['algorithms']['knowledge_distillation']['teachers'] = [ckpt(r) for r in teacher_runs]
    trainer = fit(cfg)
    algo = trainer.state.algorithms[0]
    assert algo.teacher_forwards == 4 * 2  # pool mode 'all' of kd_mse.yaml's parent: both teachers every step
    assert {'total', 'ce', 'kd'} <= set(trainer.state.loss)
    teacher = algo.teachers[0]
    assert not any(p.requires_grad for p in teacher.parameters())
    opt_params = {id(p) for g in trainer.state.optimizers[0].param_groups for p in g['params']}
    assert not opt_params & {id(p) for p in teacher.parameters()}


def test_greedy_scores_come_from_the_teachers_records(fmnist_root, teacher_runs, tmp_path):
    cfg = tiny_config(fmnist_root, tmp_path / 'greedy', yaml=POOL, max_duration='2ba')
    cfg['algorithms']['knowledge_distillation']['teachers'] = [ckpt(r) for r in teacher_runs]
    cfg['algorithms']['knowledge_distillation']['k'] = 1
    run = prepare(cfg)
    algo = run.trainer_kwargs['algorithms'][0]
    accs = [checkpoint_record(ckpt(r))['metrics']['eval/MulticlassAccuracy'] for r in teacher_runs]
    assert algo.pool.select() == [max(range(2), key=lambda i: accs[i])]


@pytest.mark.parametrize('teachers, expected', [
    (['/no/such.pt'], 'algorithms.knowledge_distillation.teachers[0].checkpoint: teacher checkpoint not found'),
    ([{'checkpoint': 'TEACHER', 'model': {'name': 'convnet', 'num_classes': 10, 'in_channels': 1}}],
     'algorithms.knowledge_distillation.teachers[0].checkpoint: the weights in'),
    ([{'checkpoint': 'TEACHER', 'weight': 2}], "unknown key 'algorithms.knowledge_distillation.teachers[0].weight'"),
    ([], 'algorithms.knowledge_distillation.teachers: expected at least one teacher'),
])
def test_teacher_errors_name_the_key(fmnist_root, teacher_runs, tmp_path, teachers, expected):
    teachers = json.loads(json.dumps(teachers).replace('TEACHER', ckpt(teacher_runs[0])))
    cfg = tiny_config(fmnist_root, tmp_path / 'bad', yaml=KD_MSE)
    cfg['algorithms']['knowledge_distillation']['teachers'] = teachers
    with pytest.raises(ConfigError, match=expected.replace('[', r'\[').replace(']', r'\]')):
        prepare(cfg)
    assert not (tmp_path / 'bad').exists()


def test_matryoshka_generations_manifest_and_resume(fmnist_root, teacher_runs, tmp_path, caplog):
    overrides = dict(item.split('=', 1) for item in tiny_overrides(fmnist_root, tmp_path / 'unused'))
    overrides.pop('run_dir')
    overrides.update({'max_duration': '1ep', 'save_interval': '1ep', 'callbacks': {}})
    spec_file = tmp_path / 'spec.yaml'
    spec_file.write_text(yaml.safe_dump({
        'name': 'tiny-matryoshka', 'student_recipe': str(REPO / 'yamls/fashion_mnist/pool_random_1.yaml'),
        'generations': 2, 'out_dir': str(tmp_path / 'out'), 'overrides': overrides,
        'pool': [{'checkpoint': ckpt(r), 'overrides': {'optimizer.lr': lr}}
                 for r, lr in zip(teacher_runs, (0.05, 0.2))],
    }))
    manifest = matryoshka.run(matryoshka.load_spec(spec_file))
    gens = manifest['generations']
    assert [len(g) for g in gens] == [2, 2, 2]
    assert [e['checkpoint'] for e in gens[0]] == [ckpt(r) for r in teacher_runs]
    assert all(e['teachers'] == [x['checkpoint'] for x in gens[1]] for e in gens[2])
    assert all(e['train_wct_s'] > 0 and 'eval/MulticlassAccuracy' in e['metrics'] for g in gens for e in g)
    member1 = yaml.safe_load((tmp_path / 'out' / 'g1' / 'm1' / 'config.yaml').read_text())
    assert member1['optimizer']['lr'] == 0.2  # each student takes its pool member's hyper-parameters
    assert member1['algorithms']['knowledge_distillation']['teachers'] == [ckpt(r) for r in teacher_runs]
    on_disk = json.loads((tmp_path / 'out' / 'manifest.json').read_text())
    assert on_disk == manifest
    stamp = Path(gens[2][0]['checkpoint']).resolve().stat().st_mtime_ns
    caplog.set_level('INFO', logger='recipes.matryoshka')
    again = matryoshka.run(matryoshka.load_spec(spec_file))  # everything finished: nothing is trained again
    assert Path(gens[2][0]['checkpoint']).resolve().stat().st_mtime_ns == stamp
    assert sum('finished earlier, skipped' in r.message for r in caplog.records) == 4
    assert again['generations'] == manifest['generations']


def test_matryoshka_spec_errors(tmp_path):
    spec_file = tmp_path / 'spec.yaml'
    spec_file.write_text(yaml.safe_dump({'name': 'x', 'student_recipe': 'yamls/fashion_mnist/kd_mse.yaml',
                                         'generations': 0, 'pool': [{'checkpoint': 'a.pt'}]}))
    with pytest.raises(ConfigError, match='generations: expected a positive int'):
        matryoshka.load_spec(spec_file)
    spec_file.write_text(yaml.safe_dump({'name': 'x', 'student_recipe': 'yamls/fashion_mnist/kd_mse.yaml',
                                         'generations': 1, 'pool': [{'ckpt': 'a.pt'}]}))
    with pytest.raises(ConfigError, match=r"unknown key 'pool\[0\].ckpt'"):
        matryoshka.load_spec(spec_file)


def test_matryoshka_refuses_bad_pool_checkpoints_in_one_line(tmp_path, capsys):
    """A crafted, random, empty or truncated pool checkpoint is one error line naming pool[i].checkpoint, exit 2,
    told apart as 'unsafe' or 'not a checkpoint' (it was a torch traceback), and nothing is written."""
    from tests.helpers.bad_checkpoints import EXPECTED, write_bad_checkpoints

    for kind, path in write_bad_checkpoints(tmp_path / 'bad').items():
        spec_file = tmp_path / 'spec.yaml'
        spec_file.write_text(yaml.safe_dump({
            'name': 'x', 'student_recipe': str(REPO / 'yamls/fashion_mnist/pool_random_1.yaml'), 'generations': 1,
            'out_dir': str(tmp_path / 'out'), 'pool': [{'checkpoint': str(path)}]}))
        assert matryoshka.main(['-f', str(spec_file)]) == 2, kind
        err = capsys.readouterr().err.strip()
        assert err.startswith(f'error: pool[0].checkpoint: {path} ') and EXPECTED[kind] in err, err
        assert '\n' not in err and not (tmp_path / 'out').exists()
