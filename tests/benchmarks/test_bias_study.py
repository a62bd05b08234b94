"""The bias study driver's configs: each compressed run starts from, and distils from, the original of its seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmarks.bias import study as bias_study
from benchmarks.study.spec import StudyError

REPO = Path(__file__).resolve().parents[2]


def study(tmp_path: Path) -> dict:
    return {'name': 'b', 'runs_root': str(tmp_path / 'r'), 'seeds': [0, 1], 'original':
            str(REPO / 'yamls/fashion_mnist/biased_convnet.yaml'),
            'methods': {'at_kd': str(REPO / 'yamls/fashion_mnist/biased_agp45_at_kd.yaml'),
                        'prune_s60': {'recipe': str(REPO / 'yamls/fashion_mnist/biased_agp45.yaml'),
                                      'overrides': {'algorithms.structured_pruning.final_sparsity': 0.6}}},
            'overrides': {'train_loader.num_workers': 0}, 'compare': {'layers': ['conv1']}}


def test_compressed_runs_start_from_and_distil_from_their_seeds_original(tmp_path):
    s = study(tmp_path)
    original = tmp_path / 'r' / 'original' / 'seed1' / 'checkpoints' / 'latest-rank0.pt'
    cfg = bias_study.run_config(s, 'at_kd', s['methods']['at_kd'], 1)
    assert cfg['seed'] == 1 and cfg['run_dir'] == str(tmp_path / 'r' / 'at_kd' / 'seed1')
    assert cfg['load_path'] == str(original) and cfg['load_weights_only'] is True
    teachers = [a['teachers'] for a in cfg['algorithms'].values() if isinstance(a, dict) and 'teachers' in a]
    assert len(teachers) == 2 and all(t == [str(original)] for t in teachers)  # KD and AT both
    assert cfg['train_loader']['num_workers'] == 0 and cfg['autoresume'] is True
    orig = bias_study.run_config(s, 'original', s['original'], 0)
    assert orig['load_path'] is None and orig['algorithms'] == {}


def test_method_entries_may_override_the_recipe(tmp_path):
    s = study(tmp_path)
    cfg = bias_study.run_config(s, 'prune_s60', s['methods']['prune_s60'], 0)
    assert cfg['algorithms']['structured_pruning']['final_sparsity'] == 0.6
    with pytest.raises(StudyError, match='recipe path'):
        bias_study.method_spec({'overrides': {}})


def test_bad_method_entry_is_one_error_line_before_anything_runs(tmp_path, capsys):
    s = study(tmp_path)
    s['extra_methods'] = {'bad': {'overrides': {}}}
    path = tmp_path / 'study.yaml'
    path.write_text(yaml.safe_dump(s))
    assert bias_study.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'extra_methods.bad: expected a recipe path' in err and err.count('\n') == 1
    assert not (tmp_path / 'r').exists()
    s['extra_methods'] = {'gone': str(tmp_path / 'none.yaml')}  # every recipe is resolved before the first run trains
    path.write_text(yaml.safe_dump(s))
    assert bias_study.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'none.yaml' in err and err.count('\n') == 1
    assert not (tmp_path / 'r').exists()


def test_study_yaml_may_extend_a_base(tmp_path):
    base = tmp_path / 'base.yaml'
    base.write_text(yaml.safe_dump(study(tmp_path)))
    (tmp_path / 'small.yaml').write_text(yaml.safe_dump({'base': 'base.yaml', 'seeds': [0],
                                                          'overrides': {'max_duration': '1ep'}}))
    s = bias_study.load_study(str(tmp_path / 'small.yaml'))
    assert s['seeds'] == [0] and s['methods'] == study(tmp_path)['methods']
    assert s['overrides'] == {'train_loader.num_workers': 0, 'max_duration': '1ep'}  # mappings merged key by key
