"""Blockwise distillation: replaceable layers, prefixes, blocks, local training, assembly, craft order, tasks and
their scheduling on a local Dask cluster (a worker killed mid-task included)."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from algorithms.blockwise import (BLOCKS, LocalTrainingSettings, ScheduleSettings, TeacherPrefix, assemble, build_block,
                                  craft_sequential, find_replaceable, fit_block, freeze, load_block, local_loss,
                                  module_macs, run_block_task, run_tasks, run_until, spliced)
from algorithms.blockwise.blocks import ReplacementBlock
from algorithms.blockwise.prefix import materialised_parameters
from algorithms.blockwise.task import BlockTask, accuracy
from recipes.models.architectures.cifar_resnet import resnet8
from recipes.models.architectures.vgg import vgg16
from tests.helpers import blockwise_helpers as bh


def test_replaceable_layers_of_resnet8_pair_each_3x3_conv_with_its_norm():
    layers = find_replaceable(resnet8(in_channels=1), (1, 28, 28))
    assert [(l.conv, l.norm) for l in layers] == [
        ('conv1', 'bn1'), ('layer1.0.conv1', 'layer1.0.bn1'), ('layer1.0.conv2', 'layer1.0.bn2'),
        ('layer2.0.conv1', 'layer2.0.bn1'), ('layer2.0.conv2', 'layer2.0.bn2'),
        ('layer3.0.conv1', 'layer3.0.bn1'), ('layer3.0.conv2', 'layer3.0.bn2')]  # 1x1 shortcuts excluded
    l = layers[3]  # 16 -> 32, stride 2: 28x28 -> 14x14
    assert l.in_shape == (16, 28, 28) and l.out_shape == (32, 14, 14)
    assert l.macs == 14 * 14 * 32 * 16 * 9 and l.params == 32 * 16 * 9 + 2 * 32
    with pytest.raises(ValueError, match=r"'layer2.0.downsample.0' is not replaceable \(a 1x1 convolution\)"):
        find_replaceable(resnet8(in_channels=1), (1, 28, 28), names=['layer2.0.downsample.0'])


def test_trace_on_meta_costs_no_memory_and_matches():
    with torch.device('meta'):
        model = vgg16()
    layers = find_replaceable(model, (3, 32, 32))
    assert len(layers) == 13 and layers[1].conv == 'features.3' and layers[1].norm == 'features.4'
    assert layers[1].macs == 32 * 32 * 64 * 64 * 9  # 37,748,736


def test_prefix_holds_exactly_the_layers_up_to_the_target(tmp_path):
    torch.manual_seed(0)
    teacher = resnet8(in_channels=1).eval()
    path = tmp_path / 'teacher.pt'
    torch.save({'state': {'model': {f'module.{k}': v for k, v in teacher.state_dict().items()}}}, path)  # Composer
    layer = find_replaceable(teacher, (1, 28, 28), names=['layer2.0.conv2'])[0]
    prefix = TeacherPrefix(functools.partial(resnet8, in_channels=1), layer, path, (1, 28, 28))
    kept = ['conv1', 'bn1', 'layer1', 'layer2.0.downsample', 'layer2.0.conv1', 'layer2.0.bn1', 'layer2.0.conv2',
            'layer2.0.bn2']  # the shortcut runs first in BasicBlock.forward
    expected = sum(p.numel() for n in kept for p in teacher.get_submodule(n).parameters())
    assert materialised_parameters(prefix) == expected
    assert expected < sum(p.numel() for p in teacher.parameters()) / 3  # layer3 and fc never exist
    assert all(p.device.type == 'meta' for p in prefix.teacher.layer3.parameters())
    x = torch.randn(4, 1, 28, 28)
    inputs, target = prefix(x)
    want_in, want_out = run_until(teacher, 'layer2.0.conv2', 'layer2.0.bn2', x)
    torch.testing.assert_close(inputs, want_in)
    torch.testing.assert_close(target, want_out)


@pytest.mark.parametrize('name', list(BLOCKS))
def test_blocks_keep_shapes_and_cost_fewer_macs(name):
    model = vgg16()
    for layer in find_replaceable(model, (3, 32, 32))[1:]:
        block = build_block(name, model.get_submodule(layer.conv)).eval()
        assert block(torch.zeros(2, *layer.in_shape)).shape == (2, *layer.out_shape)
        assert module_macs(block, layer.in_shape) < layer.macs
    layer = find_replaceable(model, (3, 32, 32))[1]  # 64 -> 64 at 32x32
    if name == 'ds2':  # 2 x (depthwise 9*64 + pointwise 64*64) per position
        assert module_macs(build_block(name, model.features[3]), layer.in_shape) == 2 * 1024 * (9 * 64 + 64 * 64)


def test_local_training_reduces_the_local_loss():
    torch.manual_seed(0)
    teacher = bh.tiny_teacher().eval()
    layer = find_replaceable(teacher, bh.SHAPE)[1]
    data = [torch.randn(32, *bh.SHAPE) for _ in range(4)]
    pairs = lambda x: run_until(teacher, layer.conv, layer.output_module, x)  # noqa: E731
    block = build_block('ds2', teacher.get_submodule(layer.conv))
    with torch.no_grad():
        before = sum(local_loss(block.eval()(pairs(x)[0]), pairs(x)[1]).item() for x in data)
    settings = LocalTrainingSettings(epochs=30, check_every=30, lr=1e-2)
    result = fit_block(layer.conv, block, lambda: [(x,) for x in data], lambda b: pairs(b[0]), settings)
    with torch.no_grad():
        after = sum(local_loss(block(pairs(x)[0]), pairs(x)[1]).item() for x in data)
    assert result.accepted and after < 0.5 * before
    assert result.losses[-1] < result.losses[0]
    # the loss is the seed's: mean over examples of the squared L2 distance
    out, tgt = torch.ones(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    assert local_loss(out, tgt).item() == pytest.approx(12.0)


def test_threshold_rejects_a_block_and_keeps_the_best_check():
    block = nn.Linear(2, 2)
    scores = iter([50.0, 70.0, 60.0])
    settings = LocalTrainingSettings(epochs=3, check_every=1, max_drop=1.0)
    data = [(torch.randn(4, 2),)]
    result = fit_block('l', block, lambda: data, lambda b: (b[0], b[0]), settings, lambda _: next(scores), 80.0)
    assert result.checks == [(1, 50.0), (2, 70.0), (3, 60.0)]
    assert (result.best_accuracy, result.best_epoch, result.accepted) == (70.0, 2, False)  # 10 points below


def test_assembly_places_blocks_and_leaves_the_teacher_alone():
    torch.manual_seed(0)
    teacher = resnet8(in_channels=1).eval()
    layers = find_replaceable(teacher, (1, 28, 28))
    blocks = {l.conv: build_block('ds2', teacher.get_submodule(l.conv)) for l in layers[2:5]}
    student = assemble(teacher, layers, blocks)
    for l in layers:
        if l.conv in blocks:
            assert isinstance(student.get_submodule(l.conv), ReplacementBlock)
            assert isinstance(student.get_submodule(l.norm), nn.Identity)
            torch.testing.assert_close(student.get_submodule(l.conv).state_dict(), blocks[l.conv].state_dict())
        else:
            torch.testing.assert_close(student.get_submodule(l.conv).weight, teacher.get_submodule(l.conv).weight)
    assert all(isinstance(teacher.get_submodule(l.conv), nn.Conv2d) for l in layers)
    assert student.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    with spliced(teacher, layers[0], blocks[layers[2].conv]):
        assert teacher.conv1 is blocks[layers[2].conv]
    assert isinstance(teacher.conv1, nn.Conv2d) and isinstance(teacher.bn1, nn.BatchNorm2d)
    frozen = freeze(student, ['1x1', 'fc'])
    assert set(frozen) == {'layer2.0.downsample.0.weight', 'layer3.0.downsample.0.weight', 'fc.weight', 'fc.bias'}
    assert all(p.requires_grad for p in student.get_submodule(layers[2].conv).parameters())  # pointwise convs train
    with pytest.raises(KeyError, match="no module named 'head'"):
        freeze(student, ['head'])


def test_craft_orders_and_sources_of_inputs():
    torch.manual_seed(0)
    teacher = bh.tiny_teacher().eval()
    layers = find_replaceable(teacher, bh.SHAPE)[1:]
    data = [(torch.randn(16, *bh.SHAPE),)]
    settings = LocalTrainingSettings(epochs=2, check_every=2)
    make = lambda layer, conv: build_block('ds2', conv)  # noqa: E731
    student, results = craft_sequential(teacher, layers, 'top_down', make, data, settings)
    assert [r.layer for r in results] == ['7', '3']  # output side first
    assert isinstance(student[7], ReplacementBlock) and isinstance(student[3], ReplacementBlock)
    assert isinstance(teacher[7], nn.Conv2d)
    seen = []
    orig = run_until

    def spy(model, inp, out, x):
        seen.append((model is teacher, inp, out))
        return orig(model, inp, out, x)

    import algorithms.blockwise.craft as craft
    craft.run_until = spy
    try:
        _, results = craft_sequential(teacher, layers, 'bottom_up', make, data,
                                      LocalTrainingSettings(epochs=1, check_every=1))
    finally:
        craft.run_until = orig
    assert [r.layer for r in results] == ['3', '7']
    assert (False, '7', '7') in seen and (True, '7', '8') in seen  # student's input, teacher's target


def _task(tmp_path, layer, data=None, seed=0):
    ckpt = str(tmp_path / 'teacher.pt')
    return BlockTask(layer=layer, block='ds2', settings=LocalTrainingSettings(epochs=2, check_every=1, lr=5e-3),
                     build_teacher=bh.tiny_teacher, checkpoint=ckpt, input_shape=bh.SHAPE,
                     data=data or functools.partial(bh.tiny_data, ckpt), out_dir=str(tmp_path / 'blocks'),
                     reference=100.0, seed=seed, device='cpu')


def test_block_task_writes_its_result_and_a_rerun_skips_it(tmp_path, monkeypatch):
    teacher = bh.save_teacher(tmp_path / 'teacher.pt')
    layer = find_replaceable(teacher, bh.SHAPE)[1]
    summary = run_block_task(_task(tmp_path, layer))
    state, stored = load_block(tmp_path / 'blocks' / '3.pt')
    assert stored['status'] == 'trained' and stored['best_epoch'] in (1, 2)
    assert stored['block_macs'] < stored['layer_macs']
    assert stored['accepted'] == (100.0 - stored['best_accuracy'] <= 1.0)
    block = build_block('ds2', teacher[3])
    block.load_state_dict(state)
    train, val = bh.tiny_data(str(tmp_path / 'teacher.pt'))
    with spliced(teacher, layer, block):
        assert accuracy(teacher, val, torch.device('cpu')) == pytest.approx(stored['best_accuracy'])
    monkeypatch.setattr('algorithms.blockwise.task.fit_block', lambda *a, **k: pytest.fail('retrained'))
    assert run_block_task(_task(tmp_path, layer))['status'] == 'finished earlier'
    assert summary['prefix_params'] == sum(p.numel() for m in teacher[:5] for p in m.parameters())


def test_serial_executor_keeps_order():
    out = run_tasks([3, 1, 2], lambda t: t * 10, str, ScheduleSettings(policy='serial'))
    assert out.results == {'3': 30, '1': 10, '2': 20} and list(out.finished_at) == ['3', '1', '2']
    with pytest.raises(ValueError, match='bin_packing needs the time of every task'):
        run_tasks([1], str, str, ScheduleSettings(policy='bin_packing', workers=2, times={}))


def test_static_schedules_pin_tasks_to_their_workers():
    tasks = [0, 1, 2, 3, 4]
    out = run_tasks(tasks, bh.worker_name, str, ScheduleSettings(policy='round_robin', workers=2))
    assert out.assignment == [['0', '2', '4'], ['1', '3']]
    assert {k: v for k, v in out.results.items()} == {'0': 'slot0', '2': 'slot0', '4': 'slot0',
                                                      '1': 'slot1', '3': 'slot1'}
    times = {'0': 1.0, '1': 5.0, '2': 2.0, '3': 2.0, '4': 1.5}
    out = run_tasks(tasks, bh.worker_name, str, ScheduleSettings(policy='bin_packing', workers=2, times=times))
    # by hand: 1(5)->w0; 2(2)->w1 [0,2]; 3(2)->w1 [5,4]; 4(1.5)->w1 [5,5.5]; 0(1)->w0 [6,5.5]
    assert out.assignment == [['1', '0'], ['2', '3', '4']]
    assert all(out.results[k] == 'slot0' for k in ('1', '0')) and all(out.results[k] == 'slot1' for k in '234')


def test_a_worker_killed_mid_task_loses_nothing(tmp_path):
    teacher = bh.save_teacher(tmp_path / 'teacher.pt')
    layers = find_replaceable(teacher, bh.SHAPE)
    ckpt = str(tmp_path / 'teacher.pt')
    serial_dir = tmp_path / 'serial'
    serial = [_task(serial_dir.parent, l) for l in layers]
    for t in serial:
        t.out_dir = str(serial_dir)
    run_tasks(serial, run_block_task, lambda t: t.key,
              ScheduleSettings(policy='serial'))  # the reference, one thread as the workers
    marker = str(tmp_path / 'killed')
    tasks = [_task(tmp_path, l, data=functools.partial(bh.killing_data, ckpt, marker) if l.index == 1 else None)
             for l in layers]
    out = run_tasks(tasks, run_block_task, lambda t: t.key, ScheduleSettings(policy='work_stealing', workers=2))
    assert (tmp_path / 'killed').is_file()  # the worker did die
    assert set(out.results) == {l.conv for l in layers}
    for l in layers:
        got, _ = load_block(tmp_path / 'blocks' / f'{l.conv}.pt')
        want, _ = load_block(serial_dir / f'{l.conv}.pt')
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)  # same training, wherever it ran
    student = assemble(teacher, layers, {l.conv: build_block('ds2', teacher.get_submodule(l.conv)) for l in layers})
    assert student.eval()(torch.randn(2, *bh.SHAPE)).shape == (2, 4)


def test_method_card_example_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path
    readme = Path(__file__).resolve().parents[2] / 'algorithms' / 'blockwise' / 'README.md'
    blocks = re.findall(r'```python\n(.*?)```', readme.read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(readme), 'exec'), {'__name__': 'readme'})
