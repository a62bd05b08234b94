"""The pruning pipeline (recipes/prune_pipeline.py) end to end on tiny Fashion-MNIST: stages, exact sparsity, shared
masks, skipping finished stages, resuming an interrupted one, and spec errors before anything starts."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
import yaml

from algorithms.common.checkpoint_loading import safe_load
from algorithms.pruning import masks_from_checkpoint
from recipes import prune_pipeline
from tests.conftest import REPO

CONVNET = REPO / 'yamls' / 'fashion_mnist' / 'convnet.yaml'
SPARSITIES = [0.3, 0.6]
STAGES = ['original', 'magnitude-s0.3', 'magnitude-s0.6', 'reinit-s0.3', 'reinit-s0.6', 'random-s0.3',
          'random-s0.6', 'iterative']
PRUNABLE = ['conv1', 'conv2', 'fc1']  # the classifier fc2 stays dense


def write_spec(path: Path, data: Path, out: Path, **changes) -> Path:
    spec = {
        'name': 'tiny-pruning', 'recipe': str(CONVNET), 'out_dir': str(out), 'seed': 0,
        'sparsities': SPARSITIES, 'methods': ['magnitude', 'reinit', 'random', 'iterative'],
        'overrides': {
            'train_loader.path': str(data), 'eval_loader.path': str(data), 'train_loader.num_workers': 0,
            'eval_loader.num_workers': 0, 'global_train_batch_size': 16, 'global_eval_batch_size': 32,
            'model.hidden': 16, 'max_duration': '2ep', 'progress_bar': False, 'callbacks': {},
        },
        'finetune': {'max_duration': '2ep'},
        'scratch': {},
        'iterative': {'schedule': [['2ba', 0.5], ['5ba', 0.7]], 'max_duration': '2ep'},
        'save_every_epoch': True,
    }
    spec.update(changes)
    path.write_text(yaml.safe_dump(spec))
    return path


def weights(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    return {k.removeprefix('module.'): v for k, v in safe_load(checkpoint)['state']['model'].items()}


def mtimes(out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in out.rglob('*.pt') if not p.is_symlink()}


@pytest.fixture(scope='module')
def pipeline(fmnist_root, tmp_path_factory):
    root = tmp_path_factory.mktemp('pipeline')
    spec = write_spec(root / 'spec.yaml', fmnist_root, root / 'out')
    assert prune_pipeline.main(['-f', str(spec)]) == 0
    return spec, root / 'out'


def test_every_stage_runs_and_is_in_the_manifest(pipeline):
    _, out = pipeline
    manifest = json.loads((out / 'manifest.json').read_text())
    assert [e['stage'] for e in manifest['stages']] == STAGES
    assert [e['method'] for e in manifest['stages']] == ['original', 'magnitude', 'magnitude', 'reinit', 'reinit',
                                                         'random', 'random', 'iterative']
    for e in manifest['stages']:
        assert e['status'] == 'ran'
        assert e['run_dir'] == str(out / e['stage'])
        assert Path(e['checkpoint']).is_file()
        assert e['train_wct_s'] > 0 and e['step'] == 8
        assert 'eval/MulticlassAccuracy' in e['metrics']
    by_stage = {e['stage']: e for e in manifest['stages']}
    original = str(out / 'original' / 'checkpoints' / 'latest-rank0.pt')
    assert by_stage['magnitude-s0.3']['from'] == by_stage['iterative']['from'] == original
    assert by_stage['reinit-s0.6']['from'] == by_stage['magnitude-s0.6']['checkpoint']
    assert len(by_stage['magnitude-s0.3']['epoch_checkpoints']) == 2  # save_every_epoch: one per epoch
    # Seeds: the spec's seed everywhere, the from-scratch stages a fresh initialisation (seed + 1 by default).
    seeds = {s: yaml.safe_load((out / s / 'config.yaml').read_text())['seed'] for s in STAGES}
    assert seeds == {s: 1 if s.startswith(('reinit', 'random')) else 0 for s in STAGES}


def test_magnitude_stages_have_exact_layerwise_sparsity(pipeline):
    _, out = pipeline
    for s in SPARSITIES:
        w = weights(out / f'magnitude-s{s}' / 'checkpoints' / 'latest-rank0.pt')
        for layer in PRUNABLE:
            weight = w[f'{layer}.weight']
            assert int((weight == 0).sum()) == round(s * weight.numel()), (s, layer)
        assert int((w['fc2.weight'] == 0).sum()) == 0  # the classifier is dense
    w = weights(out / 'iterative' / 'checkpoints' / 'latest-rank0.pt')  # the last round of its schedule
    assert all(int((w[f'{n}.weight'] == 0).sum()) == round(0.7 * w[f'{n}.weight'].numel()) for n in PRUNABLE)
    w = weights(out / 'random-s0.6' / 'checkpoints' / 'latest-rank0.pt')
    assert all(int((w[f'{n}.weight'] == 0).sum()) == round(0.6 * w[f'{n}.weight'].numel()) for n in PRUNABLE)


def test_reinit_shares_the_magnitude_masks_not_the_weights(pipeline):
    _, out = pipeline
    for s in SPARSITIES:
        magnitude = out / f'magnitude-s{s}' / 'checkpoints' / 'latest-rank0.pt'
        reinit = out / f'reinit-s{s}' / 'checkpoints' / 'latest-rank0.pt'
        m_masks, _ = masks_from_checkpoint(magnitude)
        r_masks, _ = masks_from_checkpoint(reinit)
        assert sorted(m_masks) == sorted(r_masks) == PRUNABLE
        assert all(torch.equal(m_masks[n], r_masks[n]) for n in PRUNABLE)
        w_mag, w_re = weights(magnitude), weights(reinit)
        assert all(torch.equal(w_re[f'{n}.weight'] != 0, m_masks[n]) for n in PRUNABLE)
        assert not torch.equal(w_mag['conv1.weight'], w_re['conv1.weight'])
    random_masks, _ = masks_from_checkpoint(out / 'random-s0.3' / 'checkpoints' / 'latest-rank0.pt')
    assert not torch.equal(random_masks['conv2'], masks_from_checkpoint(
        out / 'magnitude-s0.3' / 'checkpoints' / 'latest-rank0.pt')[0]['conv2'])


def test_running_again_trains_nothing(pipeline, caplog):
    spec, out = pipeline
    before = mtimes(out)
    caplog.set_level(logging.INFO, logger='recipes.prune_pipeline')
    assert prune_pipeline.main(['-f', str(spec)]) == 0
    assert mtimes(out) == before
    skipped = [r.message for r in caplog.records if 'finished earlier, skipped' in r.message]
    assert len(skipped) == len(STAGES)
    manifest = json.loads((out / 'manifest.json').read_text())
    assert {e['status'] for e in manifest['stages']} == {'skipped'}


def test_an_interrupted_stage_resumes_from_its_checkpoint(pipeline, caplog):
    """Roll the last stage back to its epoch-1 checkpoint, as if killed during epoch 2: only it runs again, from
    there, and ends with the weights of the uninterrupted run."""
    spec, out = pipeline
    last = out / STAGES[-1]
    folder = last / 'checkpoints'
    ep1, ep2 = json.loads((out / 'manifest.json').read_text())['stages'][-1]['epoch_checkpoints']
    final = weights(ep2)
    (last / 'summary.json').unlink()
    Path(ep2).unlink()
    (folder / 'latest-rank0.pt').unlink()
    os.symlink(Path(ep1).name, folder / 'latest-rank0.pt')
    others = {k: v for k, v in mtimes(out).items() if not k.startswith(str(last))}
    ep1_stamp = Path(ep1).stat().st_mtime_ns
    caplog.set_level(logging.INFO)
    assert prune_pipeline.main(['-f', str(spec)]) == 0
    assert {k: v for k, v in mtimes(out).items() if not k.startswith(str(last))} == others
    assert Path(ep1).stat().st_mtime_ns == ep1_stamp and Path(ep2).is_file()
    assert any(r.message == f'{STAGES[-1]}: running' for r in caplog.records)
    assert sum('finished earlier, skipped' in r.message for r in caplog.records) == len(STAGES) - 1
    assert any('Autoresuming training from checkpoint' in r.getMessage() for r in caplog.records)
    summary = json.loads((last / 'summary.json').read_text())
    assert summary['finished'] and summary['step'] == 8
    resumed = weights(folder / 'latest-rank0.pt')
    assert all(torch.equal(final[k], resumed[k]) for k in final)


@pytest.mark.parametrize('changes, expected', [
    ({'sparsities': [0.3, 1.5]}, 'error: sparsities[1]: expected a number strictly between 0 and 1'),
    ({'methods': ['magnitude', 'prune']}, "error: methods[1]: unknown method 'prune'; expected one of"),
    ({'exclude': ['fc9']}, "error: exclude: no layer named 'fc9' in"),
    ({'finetune': {'optimizer.lrr': 0.1}}, "error: stage magnitude-s0.3: unknown key 'optimizer.lrr'"),
    ({'iterative': {'schedule': [['1ep', 0.7], ['2ep', 0.6]]}}, 'error: iterative.schedule: schedule[1] sparsity'),
    ({'iterative': {'schedule': [['1ep', 0.6], ['2ep', 0.7]], 'max_duration': '2ep'}},
     "error: iterative.schedule[1]: 2ep is not before the iterative stage's max_duration 2ep"),
    ({'recipe': 'yamls/none.yaml'}, 'error: recipe: YAML file not found: yamls/none.yaml'),
    ({'seeds': 3}, "error: unknown key 'seeds'"),
])
def test_bad_spec_exits_2_with_one_line_and_no_folder(fmnist_root, tmp_path, capsys, changes, expected):
    spec = write_spec(tmp_path / 'spec.yaml', fmnist_root, tmp_path / 'out', **changes)
    assert prune_pipeline.main(['-f', str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected), err
    assert err.count('\n') == 1
    assert not (tmp_path / 'out').exists()


def test_pruning_study_runs_pipelines_by_seed_and_measures_them(fmnist_root, tmp_path):
    """A pruning study (``prune_pipeline`` runs, ``family: pruning``) run by the study engine on a tiny spec: the
    pipeline runs per seed, analysis.json measures every stage; a second run skips it (finished)."""
    from benchmarks.study import engine

    spec = write_spec(tmp_path / 'spec.yaml', fmnist_root, tmp_path / 'unused', methods=['magnitude', 'reinit'],
                      sparsities=[0.6])
    study = tmp_path / 'study.yaml'
    study.write_text(yaml.safe_dump({
        'name': 'tiny', 'runs_root': str(tmp_path / 'runs'), 'family': 'pruning', 'run_folder': '{run}/seed{seed}',
        'seeds': [0, 1], 'runs': [{'name': 'convnet', 'kind': 'prune_pipeline', 'spec': str(spec), 'overrides': {}}],
        'compare': {'layers': {'convnet': ['conv1', 'fc1', 'fc2']}, 'images': 32, 'max_datapoints': 200},
    }))
    assert engine.main([str(study)]) == 0
    for seed in (0, 1):
        analysis = json.loads((tmp_path / 'runs' / 'convnet' / f'seed{seed}' / 'analysis.json').read_text())
        stages = {s['method']: s for s in analysis['stages']}
        assert set(stages) == {'magnitude', 'reinit'}
        for stage in stages.values():
            assert all(v == pytest.approx(0.6, abs=1e-3) for v in stage['layer_sparsity'].values())
            assert set(stage['layer_sparsity']) == set(PRUNABLE)  # the classifier is not counted: it stays dense
            dense, nonzero = stage['params']
            assert nonzero < dense and stage['macs'][1] < stage['macs'][0]
            assert set(stage['similarity']) == {'conv1', 'fc1', 'fc2'}
            assert all(0.0 <= v <= 1.0 + 1e-6 for v in stage['similarity'].values())
        assert sorted(e['epoch'] for e in analysis['epochs'] if e['method'] == 'reinit') == [1, 2]
        assert analysis['latency']['dense_ms'] > 0
    manifests = [json.loads((tmp_path / 'runs' / 'convnet' / f'seed{s}' / 'manifest.json').read_text()) for s in (0, 1)]
    assert [m['seed'] for m in manifests] == [0, 1]
    replicas = engine.load_study(study).replicas()
    assert all(engine.run_finished(r, r.run('convnet')) for r in replicas)
    assert engine.run_study(replicas[1]) == {'convnet': 'finished earlier'}


@pytest.mark.parametrize('run, layers, expected', [
    ({'name': 'convnet', 'kind': 'prune_pipeline', 'spec': 'x.yaml'}, {'convnet': ['conv1']},
     'runs (convnet).spec: YAML file not found: x.yaml'),
    ({'name': 'convnet', 'kind': 'prune_pipeline', 'spec': 'yamls/pipelines/fashion_mnist/pruning_convnet.yaml',
      'seeds': 0}, {}, 'runs[0].seeds: expected list or null, got int 0'),
    ({'name': 'convnet', 'kind': 'prune_pipeline', 'spec': 'yamls/pipelines/fashion_mnist/pruning_convnet.yaml',
      'seeds': [0]}, {}, "compare.layers: expected the layers of pipeline 'convnet'"),
    ({'name': 'convnet', 'kind': 'prune_pipeline', 'spec': 'yamls/pipelines/fashion_mnist/pruning_convnet.yaml',
      'overrides': {'sparsity': 0.5}}, {'convnet': ['conv1']}, "runs (convnet): unknown key 'sparsity'"),
])
def test_pruning_study_bad_yaml_is_one_error_line_before_anything_runs(tmp_path, capsys, run, layers, expected):
    from benchmarks.study import engine

    study = tmp_path / 'study.yaml'
    study.write_text(yaml.safe_dump({'name': 'tiny', 'runs_root': str(tmp_path / 'runs'), 'family': 'pruning',
                                     'run_folder': '{run}/seed{seed}', 'seeds': [0],
                                     'compare': {'layers': layers}, 'runs': [run]}))
    assert engine.main([str(study)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and expected in err, err
    assert err.count('\n') == 1 and not (tmp_path / 'runs').exists()
