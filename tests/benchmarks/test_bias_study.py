"""The bias study (a study of training runs with ``family: bias``, run by the study engine): each compressed run
starts from, and distils from, the original of its seed; a bad entry is one error line before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmarks.bias.describe import run_config
from benchmarks.study import engine
from benchmarks.study.spec import StudyError, load_study

REPO = Path(__file__).resolve().parents[2]
FROM_ORIGINAL = {'load_from': 'original', 'teachers': ['original']}


def study(tmp_path: Path) -> dict:
    return {'name': 'b', 'runs_root': str(tmp_path / 'r'), 'family': 'bias', 'run_folder': '{run}/seed{seed}',
            'run_name': '{name}-{run}-s{seed}', 'seeds': [0, 1],
            'runs': [{'name': 'original', 'recipe': str(REPO / 'yamls/fashion_mnist/biased_convnet.yaml')},
                     {'name': 'at_kd', 'recipe': str(REPO / 'yamls/fashion_mnist/biased_agp45_at_kd.yaml'),
                      **FROM_ORIGINAL},
                     {'name': 'prune_s60', 'recipe': str(REPO / 'yamls/fashion_mnist/biased_agp45.yaml'),
                      'overrides': {'algorithms.structured_pruning.final_sparsity': 0.6}, 'load_from': 'original',
                      'phase': 2}],
            'overrides': {'train_loader.num_workers': 0}, 'compare': {'layers': ['conv1']}}


def replica(tmp_path: Path, seed: int):
    path = tmp_path / 'study.yaml'
    path.write_text(yaml.safe_dump(study(tmp_path)))
    return load_study(path).replicas()[seed]


def test_compressed_runs_start_from_and_distil_from_their_seeds_original(tmp_path):
    s = replica(tmp_path, 1)
    original = tmp_path / 'r' / 'original' / 'seed1' / 'checkpoints' / 'latest-rank0.pt'
    cfg = run_config(s, s.run('at_kd'))
    assert cfg['seed'] == 1 and cfg['run_dir'] == str(tmp_path / 'r' / 'at_kd' / 'seed1')
    assert cfg['load_path'] == str(original) and cfg['load_weights_only'] is True
    teachers = [a['teachers'] for a in cfg['algorithms'].values() if isinstance(a, dict) and 'teachers' in a]
    assert len(teachers) == 2 and all(t == [str(original)] for t in teachers)  # KD and AT both
    assert cfg['train_loader']['num_workers'] == 0 and cfg['autoresume'] is True and cfg['run_name'] == 'b-at_kd-s1'
    orig = run_config(replica(tmp_path, 0), s.run('original'))
    assert orig['load_path'] is None and orig['algorithms'] == {}


def test_method_entries_may_override_the_recipe(tmp_path):
    s = replica(tmp_path, 0)
    cfg = run_config(s, s.run('prune_s60'))
    assert cfg['algorithms']['structured_pruning']['final_sparsity'] == 0.6
    assert cfg['load_path'] == str(tmp_path / 'r' / 'original' / 'seed0' / 'checkpoints' / 'latest-rank0.pt')
    bad = study(tmp_path)
    bad['runs'].append({'name': 'bad', 'overrides': {}})
    (tmp_path / 'bad.yaml').write_text(yaml.safe_dump(bad))
    with pytest.raises(StudyError, match='recipe: expected a YAML path'):
        load_study(tmp_path / 'bad.yaml')


def test_phases_run_every_seed_of_phase_1_first(tmp_path):
    path = tmp_path / 'study.yaml'
    path.write_text(yaml.safe_dump(study(tmp_path)))
    order = [(p.phase, p.seed, r.name) for p in load_study(path).passes() for r in engine.selected_runs(p)]
    assert order == [(1, 0, 'original'), (1, 0, 'at_kd'), (1, 1, 'original'), (1, 1, 'at_kd'),
                     (2, 0, 'prune_s60'), (2, 1, 'prune_s60')]


def test_bad_method_entry_is_one_error_line_before_anything_runs(tmp_path, capsys):
    s = study(tmp_path)
    s['runs'].append({'name': 'bad', 'overrides': {}, 'phase': 2})
    path = tmp_path / 'study.yaml'
    path.write_text(yaml.safe_dump(s))
    assert engine.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'runs[3] (bad).recipe: expected a YAML path' in err and err.count('\n') == 1
    assert not (tmp_path / 'r').exists()
    s['runs'][-1] = {'name': 'gone', 'recipe': str(tmp_path / 'none.yaml'), 'phase': 2}  # every recipe is resolved
    path.write_text(yaml.safe_dump(s))                                                    # before the first run trains
    assert engine.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'none.yaml' in err and err.count('\n') == 1
    assert not (tmp_path / 'r').exists()


def test_study_yaml_may_extend_a_base(tmp_path):
    base = tmp_path / 'base.yaml'
    base.write_text(yaml.safe_dump(study(tmp_path)))
    (tmp_path / 'small.yaml').write_text(yaml.safe_dump({'base': 'base.yaml', 'seeds': [0],
                                                          'overrides': {'max_duration': '1ep'}}))
    s = load_study(tmp_path / 'small.yaml')
    assert s.seeds == [0] and [r.name for r in s.runs] == ['original', 'at_kd', 'prune_s60']
    assert s.overrides == {'train_loader.num_workers': 0, 'max_duration': '1ep'}  # mappings merged key by key


def test_committed_bias_studies_load_with_the_old_folders(tmp_path):
    s = load_study(REPO / 'benchmarks/studies/bias_fashion_mnist.yaml')
    r = s.replicas()[2]
    assert r.run_dir('kd') == 'runs/bias-study/kd/seed2' and r.run_name('kd') == 'bias-fashion-mnist-kd-s2'
    assert r.runs_root == 'runs/bias-study'  # records/ and machine.json stay at the root
    for name in ('bias_cifar100', 'bias_cifar100_full'):
        assert load_study(REPO / f'benchmarks/studies/{name}.yaml').family == 'bias'
