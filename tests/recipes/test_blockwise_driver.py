"""The blockwise trainer from YAML (recipes/blockwise.py): every blockwise YAML validates on tiny data, bad input is
one line before anything runs, and a tiny run goes teacher -> blocks -> fine-tune -> report, resumes, and keeps
what finished."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from algorithms.blockwise import build_block
from algorithms.common.checkpoint_loading import safe_load
from recipes import blockwise
from recipes.pipelines.blockwise_config import load_blockwise
from recipes.core.config import load_config, load_mapping
from recipes.models.registry import build_module
from tests.helpers.tiny_data import write_cifar, write_fashion_mnist

REPO = Path(__file__).resolve().parents[2]
BLOCKWISE_YAMLS = sorted((REPO / 'yamls').rglob('blockwise_*.yaml'))


def tiny_yaml(tmp_path: Path, data: Path, base: Path, **sections) -> Path:
    """A YAML over ``base`` that points the teacher's recipe at the tiny data and shrinks everything."""
    cfg = {
        'base': str(base), 'run_dir': str(tmp_path / 'run'),
        'teacher': {'overrides': {
            'train_loader.path': str(data), 'eval_loader.path': str(data), 'train_loader.num_workers': 0,
            'eval_loader.num_workers': 0, 'train_loader.subset': None, 'max_duration': '2ba', 'eval_interval': '2ba',
            'global_train_batch_size': 8, 'global_eval_batch_size': 16, 'progress_bar': False, 'callbacks': {},
            'save_interval': '2ba', 'device_train_microbatch_size': None, 'precision': 'fp32'}},
        'blockwise': {'epochs': 1, 'check_every': 1, 'val_size': 16, 'train_subset': 32, 'batch_size': 8,
                      'eval_batch_size': 16, 'max_drop': 100.0},
        'schedule': {'policy': 'serial', 'workers': 1},
        'fine_tune': {'overrides': {'max_duration': '2ba'}},
    }
    for key, value in sections.items():
        cfg[key] = {**(cfg.get(key) or {}), **value} if isinstance(value, dict) else value
    path = tmp_path / 'tiny.yaml'
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize('path', BLOCKWISE_YAMLS, ids=lambda p: str(p.relative_to(REPO / 'yamls')))
def test_every_blockwise_yaml_validates_and_finds_its_layers(path, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # recipe paths in the YAMLs are relative to the repository root
    dataset = load_config(load_mapping(path)['teacher']['recipe'])['train_loader']['dataset']
    root = tmp_path / 'data'
    write_fashion_mnist(root, 40, 8) if dataset == 'fashion_mnist' else write_cifar(root, dataset, 40, 8)
    over = tmp_path / 'over.yaml'
    over.write_text(yaml.safe_dump({'base': str(path), 'blockwise': {'val_size': 8}, 'teacher': {'overrides': {
        'train_loader.path': str(root), 'eval_loader.path': str(root)}}}))
    cfg = load_blockwise(over, [])  # the recipe, the trainer's sections and the fine-tuning run are all checked
    layers = blockwise.Blockwise(cfg).layers()
    assert layers and all(l.macs > 0 for l in layers)
    if dataset != 'fashion_mnist':  # paper scale: the seed's settings
        assert cfg['blockwise']['epochs'] == 30 and cfg['blockwise']['check_every'] == 2
        assert cfg['fine_tune']['overrides']['max_duration'] == '20ep'


@pytest.mark.parametrize('override, message', [
    ('blockwise.bogus=1', "unknown key 'blockwise.bogus'; allowed:"),
    ('blockwise.block=ds9', "blockwise.block: unknown block 'ds9'; allowed: ds2, ds3, ds2_skip, ds3_skip"),
    ('blockwise.epochs=0', 'blockwise.epochs: expected a number >= 1, got 0'),
    ('schedule.policy=fastest', 'schedule.policy: expected one of serial, round_robin, bin_packing, work_stealing'),
    ('schedule.workers=2', "schedule.workers: the 'serial' policy runs in the driver's process; got 2"),
    ('schedule.policy=bin_packing', 'schedule.times: bin_packing needs the task times of an earlier run'),
    ('teacher.checkpoint=/nowhere.pt', 'teacher.checkpoint: file not found: /nowhere.pt'),
    ('teacher.recipe=/nowhere.yaml', 'teacher.recipe: file not found: /nowhere.yaml'),
    ('blockwise.mode=top_down', None),  # valid with the serial policy
])
def test_bad_input_is_one_line_before_anything_runs(override, message, tmp_path, fmnist_root, capsys):
    path = tiny_yaml(tmp_path, fmnist_root, REPO / 'yamls/pipelines/fashion_mnist/blockwise_resnet8.yaml')
    if message is None:
        assert load_blockwise(path, [override])['blockwise']['mode'] == 'top_down'
        return
    assert blockwise.main(['-f', str(path), override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and message in err[0], err
    assert not (tmp_path / 'run').exists()  # nothing written


def test_craft_modes_need_the_serial_policy(tmp_path, fmnist_root, capsys):
    path = tiny_yaml(tmp_path, fmnist_root, REPO / 'yamls/pipelines/fashion_mnist/blockwise_resnet8.yaml')
    assert blockwise.main(['-f', str(path), 'blockwise.mode=bottom_up', 'schedule.policy=work_stealing']) == 2
    assert "replaces layers one after another; set schedule.policy: serial" in capsys.readouterr().err


def test_tiny_run_end_to_end_resumes_and_keeps_finished_blocks(tmp_path, fmnist_root):
    path = tiny_yaml(tmp_path, fmnist_root, REPO / 'yamls/pipelines/fashion_mnist/blockwise_resnet8.yaml')
    assert blockwise.main(['-f', str(path)]) == 0
    run = tmp_path / 'run'
    report = json.loads((run / 'blockwise.json').read_text())
    rows = {r['layer']: r for r in report['layers']}
    assert not rows['conv1']['kept'] and 'would cost more MACs' in rows['conv1']['reason']  # 1 -> 16 channels
    tasks = json.loads((run / 'tasks.json').read_text())['tasks']
    assert set(tasks) == set(rows) - {'conv1'} and all(r['kept'] for n, r in rows.items() if n != 'conv1')
    teacher = build_module('cifar_resnet8', num_classes=10, in_channels=1)
    for name, row in rows.items():  # params after = the block's, counted on a fresh block
        if row['kept']:
            block = build_block('ds2', teacher.get_submodule(name))
            assert row['params_after'] == sum(p.numel() for p in block.parameters()) < row['params_before']
    models = report['models']
    saved = sum(r['params_before'] - r['params_after'] for r in rows.values())
    assert models['assembled']['params'] == models['teacher']['params'] - saved
    assert models['assembled']['macs'] < models['teacher']['macs']
    assert 0 <= models['student']['test_accuracy'] <= 100
    # the fine-tuning froze the 1x1 shortcut convs and the classifier, and trained the blocks
    tuned = safe_load(run / 'fine_tune' / 'checkpoints' / 'latest-rank0.pt')['state']['model']
    first = safe_load(run / 'teacher' / 'checkpoints' / 'latest-rank0.pt')['state']['model']
    torch.testing.assert_close(tuned['module.fc.weight'], first['module.fc.weight'], rtol=0, atol=0)
    torch.testing.assert_close(tuned['module.layer2.0.downsample.0.weight'],
                               first['module.layer2.0.downsample.0.weight'], rtol=0, atol=0)
    state, _ = torch.load(run / 'blocks' / 'layer1.0.conv1.pt', weights_only=True).values()
    key = 'layers.0.1.weight'  # the first pointwise conv of the block
    assert not torch.equal(tuned[f'module.layer1.0.conv1.{key}'], state[key])
    # an interrupted blocks stage: one block missing -> only it is trained again
    (run / 'blocks' / 'layer2.0.conv1.pt').unlink()
    (run / 'tasks.json').unlink()
    assert blockwise.main(['-f', str(path)]) == 0
    status = {k: v['status'] for k, v in json.loads((run / 'tasks.json').read_text())['tasks'].items()}
    assert status.pop('layer2.0.conv1') == 'trained' and set(status.values()) == {'finished earlier'}
    # a block that missed the threshold: the teacher's layer stays there, and the report says so
    path_block = run / 'blocks' / 'layer3.0.conv2.pt'
    saved_block = torch.load(path_block, weights_only=True)
    saved_block['summary']['accepted'] = False
    torch.save(saved_block, path_block)
    assert blockwise.main(['-f', str(path)]) == 0
    rows = {r['layer']: r for r in json.loads((run / 'blockwise.json').read_text())['layers']}
    row = rows['layer3.0.conv2']
    assert not row['kept'] and row['reason'].startswith('teacher layer stays')
    assert row['params_after'] == row['params_before']
    student = blockwise.Blockwise(load_blockwise(path, [])).student()
    assert isinstance(student.get_submodule('layer3.0.conv2'), torch.nn.Conv2d)
    assert isinstance(student.get_submodule('layer3.0.bn2'), torch.nn.BatchNorm2d)
    assert not isinstance(student.get_submodule('layer3.0.conv1'), torch.nn.Conv2d)


def test_craft_mode_from_yaml(tmp_path, fmnist_root):
    path = tiny_yaml(tmp_path, fmnist_root, REPO / 'yamls/pipelines/fashion_mnist/blockwise_resnet8.yaml',
                     blockwise={'mode': 'top_down'}, fine_tune=None)
    assert blockwise.main(['-f', str(path)]) == 0
    run = tmp_path / 'run'
    tasks = json.loads((run / 'tasks.json').read_text())
    assert tasks['mode'] == 'top_down' and list(tasks['tasks'])[0] == 'layer3.0.conv2'  # output side first
    report = json.loads((run / 'blockwise.json').read_text())
    assert 'student' not in report['models'] and not (run / 'fine_tune').exists()
    assert report['models']['assembled']['macs'] < report['models']['teacher']['macs']


@pytest.mark.parametrize('case', ['val_size', 'teacher_architecture'])
def test_late_errors_are_checked_before_anything_is_written(case, tmp_path, fmnist_root, capsys):
    """A teacher checkpoint of another architecture used to fail after the data cache was written, and a val_size
    larger than the data was a traceback; both are one line before the run folder exists."""
    path = tiny_yaml(tmp_path, fmnist_root, REPO / 'yamls/pipelines/fashion_mnist/blockwise_resnet8.yaml')
    if case == 'val_size':
        override, message = 'blockwise.val_size=64', 'blockwise.val_size: 64 leaves no training images'
    else:
        other = tmp_path / 'other.pt'
        torch.save(torch.nn.Linear(3, 2).state_dict(), other)
        override, message = f'teacher.checkpoint={other}', f'teacher.checkpoint: the weights in {other} do not fit'
    assert blockwise.main(['-f', str(path), override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and message in err[0], err
    assert not (tmp_path / 'run').exists()  # nothing written
