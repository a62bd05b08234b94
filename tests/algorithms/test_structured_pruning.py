"""Filter-wise structured pruning (algorithms/pruning/structured*.py, export.py): L1 filter masks, residual channel
groups, the export that removes pruned channels, AGP inside a Composer run, and bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from composer import Trainer
from composer.core import Callback, State
from composer.loggers import Logger
from torch import nn

from algorithms.pruning import (StructuredPruning, agp_sparsity, apply_channel_masks, channel_groups, count_macs,
                                count_parameters, export_pruned, filter_masks, filter_sparsity, load_exported,
                                save_exported)
from recipes import train
from recipes.models.architectures.cifar_resnet import resnet8
from recipes.models.architectures.convnet import convnet
from recipes.core.builders import prepare
from recipes.core.config import load_config
from recipes.core.errors import ConfigError
from recipes.models.registry import build_model
from tests.helpers.algorithm_settings import image_loader, tiny_net
from tests.conftest import tiny_overrides

REPO = Path(__file__).resolve().parents[2]
AGP_YAML = REPO / 'yamls' / 'fashion_mnist' / 'biased_agp45.yaml'


def pruned(mask: torch.Tensor) -> list[int]:
    return torch.nonzero(~mask).flatten().tolist()


def zero_filters(weight: torch.Tensor) -> list[int]:
    return torch.nonzero(weight.detach().flatten(1).abs().sum(1) == 0).flatten().tolist()


def hand_net(norms: list[float]) -> nn.Sequential:
    """Conv 1->4 (2x2 kernels, so 4 weights per filter) whose filter i has L1 norm ``norms[i]``, then BN, a head."""
    net = nn.Sequential(nn.Conv2d(1, 4, 2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    with torch.no_grad():
        for i, n in enumerate(norms):
            net[0].weight[i].fill_(-n / 4 if i % 2 else n / 4)  # the sign must not matter: |w| summed
        net[0].bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        net[1].weight.copy_(torch.tensor([1.5, 2.0, 2.5, 3.0]))  # BN scale and shift nonzero, so masking shows
        net[1].bias.copy_(torch.tensor([0.5, -0.5, 0.25, -0.25]))
    return net


EXAMPLE = torch.randn(1, 1, 4, 4)


def test_filter_masks_prune_the_smallest_l1_filters_and_their_batch_norm():
    net = hand_net([3.0, 1.0, 4.0, 2.0])
    groups = channel_groups(net, EXAMPLE)
    assert [(g.producers, g.norms, g.channels) for g in groups] == [(['0'], ['1'], 4)]  # the classifier '4' is kept
    masks = filter_masks(net, groups, 0.5)
    # round(0.5 * 4) = 2 channels; the two smallest L1 norms are 1 (filter 1) and 2 (filter 3)
    assert set(masks) == {'0', '1'}
    assert masks['0'].tolist() == [True, False, True, False] and masks['1'].tolist() == masks['0'].tolist()
    apply_channel_masks(net, masks)
    assert zero_filters(net[0].weight) == [1, 3]
    assert net[0].bias.tolist() == pytest.approx([0.1, 0.0, 0.3, 0.0])
    assert net[1].weight.tolist() == [1.5, 0.0, 2.5, 0.0] and net[1].bias.tolist() == [0.5, 0.0, 0.25, 0.0]
    assert filter_sparsity(net, masks) == {'0': 0.5}  # the BN '1' is no producer: not measured
    # the pruned channels carry exact zeros after the batch norm (eval: (x - mean) / std * 0 + 0)
    net.eval()
    out = net[1](net[0](torch.randn(3, 1, 4, 4)))
    assert torch.all(out[:, [1, 3]] == 0) and torch.all(out[:, [0, 2]] != 0)


def test_earlier_pruned_channels_stay_pruned_when_their_norm_grows():
    net = hand_net([3.0, 1.0, 4.0, 2.0])
    groups = channel_groups(net, EXAMPLE)
    first = filter_masks(net, groups, 0.5)
    apply_channel_masks(net, first)
    with torch.no_grad():
        net[0].weight[1].fill_(25.0)  # filter 1 regrows: L1 norms now [3, 100, 4, 0]
    # without memory the two smallest are filter 3 (0) and filter 0 (3) ...
    assert pruned(filter_masks(net, groups, 0.5)['0']) == [0, 3]
    # ... with it, 1 and 3 stay pruned
    assert pruned(filter_masks(net, groups, 0.5, previous=first)['0']) == [1, 3]
    # a later, higher round prunes the old ones first, then the smallest of the rest: filter 0 (3 < 4)
    later = filter_masks(net, groups, 0.75, previous=first)
    assert pruned(later['0']) == [0, 1, 3] and pruned(later['1']) == [0, 1, 3]


def test_ties_go_to_the_lower_channel_index_and_a_layer_keeps_one_channel():
    net = hand_net([2.0, 1.0, 2.0, 1.0])
    groups = channel_groups(net, EXAMPLE)
    assert pruned(filter_masks(net, groups, 0.25)['0']) == [1]  # round(1.0) = 1: filters 1 and 3 tie at 1
    assert pruned(filter_masks(net, groups, 0.5)['0']) == [1, 3]
    assert pruned(filter_masks(net, groups, 0.75)['0']) == [0, 1, 3]  # filters 0 and 2 tie at 2
    assert pruned(filter_masks(net, groups, 0.95)['0']) == [0, 1, 3]  # round(3.8) = 4, capped at 4 - 1


def group_of(groups, producer: str):
    return next(g for g in groups if producer in g.producers)


def test_residual_groups_lose_the_same_channels_in_every_producer():
    torch.manual_seed(0)
    net = resnet8(num_classes=10, in_channels=1)
    randomise_batch_norms(net)  # nonzero BN shifts, so that their masking shows
    groups = channel_groups(net, torch.randn(1, 1, 28, 28))
    stem = group_of(groups, 'conv1')
    # the stem's output is added, through layer1's identity shortcut, to layer1.0.conv2's output
    assert stem.producers == ['conv1', 'layer1.0.conv2'] and stem.norms == ['bn1', 'layer1.0.bn2']
    stage2 = group_of(groups, 'layer2.0.conv2')
    assert stage2.producers == ['layer2.0.conv2', 'layer2.0.downsample.0']
    assert stage2.norms == ['layer2.0.bn2', 'layer2.0.downsample.1']
    assert group_of(groups, 'layer3.0.conv2').producers == ['layer3.0.conv2', 'layer3.0.downsample.0']
    assert group_of(groups, 'layer1.0.conv1').producers == ['layer1.0.conv1']  # inside a block: on its own
    assert not any('fc' in g.producers for g in groups)  # the classifier's outputs stay
    assert len(groups) == 6

    s = 0.3
    modules = dict(net.named_modules())
    # importance: per channel, the sum of the L1 norms of the group's filters making it (computed here, by hand)
    expected = {}
    for g in groups:
        score = sum(modules[p].weight.detach().abs().flatten(1).sum(1).double() for p in g.producers)
        expected[g.root] = sorted(torch.argsort(score, stable=True)[:round(s * g.channels)].tolist())
    own = [sorted(torch.argsort(modules[p].weight.detach().abs().flatten(1).sum(1), stable=True)[:10].tolist())
           for p in stage2.producers]
    masks = filter_masks(net, groups, s)
    apply_channel_masks(net, masks)
    sparsity = filter_sparsity(net, masks)
    for g in groups:
        # 16 channels: round(4.8) = 5; 32: round(9.6) = 10; 64: round(19.2) = 19
        n = {16: 5, 32: 10, 64: 19}[g.channels]
        assert len(expected[g.root]) == n
        for p in g.producers:
            assert zero_filters(modules[p].weight) == expected[g.root], p
            assert sparsity[p] == pytest.approx(n / g.channels, abs=1e-7), p
        for b in g.norms:
            assert pruned(masks[b]) == expected[g.root], b
            assert zero_filters(modules[b].weight.view(-1, 1)) == expected[g.root], b
            assert zero_filters(modules[b].bias.view(-1, 1)) == expected[g.root], b
    # the test is not trivial: each stage-2 producer on its own (before masking) would have chosen other channels
    assert own[0] != own[1] and expected[stage2.root] not in own


def randomise_batch_norms(net: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)


MODELS = {'convnet': lambda: convnet(10, 1, 128), 'resnet8': lambda: resnet8(num_classes=10, in_channels=1)}


@pytest.mark.parametrize('name', list(MODELS))
def test_export_removes_the_pruned_channels_with_the_same_outputs(name, tmp_path):
    torch.manual_seed(0)
    net = MODELS[name]()
    randomise_batch_norms(net)
    net.eval()
    example = torch.randn(1, 1, 28, 28)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        dense = net(x)
    masks = filter_masks(net, channel_groups(net, example), 0.5)
    apply_channel_masks(net, masks)
    exported = export_pruned(net, masks, example).eval()
    assert exported is not net and exported.training is False
    with torch.no_grad():
        masked, out = net(x), exported(x)
    assert (masked - dense).abs().max() > 1e-3  # the pruning did something
    assert out.shape == (4, 10) and (out - masked).abs().max() < 1e-5
    assert masked.std() > 1e-3  # not a trivially constant output
    # the masked model keeps its shapes; the export is smaller
    assert net.conv1.weight.shape[0] in (16, 32) and exported.conv1.weight.shape[0] == net.conv1.weight.shape[0] // 2
    params, export_params = count_parameters(net)[0], count_parameters(exported)[0]
    macs, export_macs = count_macs(net, example)[0], count_macs(exported, example)[0]
    assert export_params < params and export_macs < macs
    if name == 'convnet':
        # conv1 1->32 5x5 (24x24 out), pool, conv2 32->64 5x5 (8x8 out), pool, fc1 1024->128, fc2 128->10
        assert params == (32 * 25 + 32) + (64 * 32 * 25 + 64) + (1024 * 128 + 128) + (128 * 10 + 10)
        assert macs == 576 * 32 * 25 + 64 * 64 * 32 * 25 + 1024 * 128 + 128 * 10
        # half of every conv and of fc1 go: 16, 32 and 64 remain; fc1 reads 32 * 4 * 4 inputs
        assert export_params == (16 * 25 + 16) + (32 * 16 * 25 + 32) + (512 * 64 + 64) + (64 * 10 + 10)
        assert export_macs == 576 * 16 * 25 + 64 * 32 * 16 * 25 + 512 * 64 + 64 * 10
        assert (exported.fc1.in_features, exported.fc1.out_features, exported.fc2.in_features) == (512, 64, 64)
    else:
        assert exported.layer2[0].downsample[0].out_channels == exported.layer2[0].conv2.out_channels == 16
        assert exported.layer1[0].conv2.in_channels == 8 and exported.fc.in_features == 32
        assert exported.fc.out_features == 10

    path = tmp_path / 'exported.pt'
    save_exported(exported, path)
    saved = torch.load(path, map_location='cpu', weights_only=True)
    assert set(saved) == {'state_dict', 'shapes'}
    fresh = load_exported(MODELS[name](), path).eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), out)
    assert count_parameters(fresh)[0] == export_params


class SparsityRecorder(Callback):
    """After each batch (algorithms run before callbacks): the algorithm's target and the measured zero filters."""

    def __init__(self, algorithm: StructuredPruning):
        self.algorithm = algorithm
        self.targets: list[float] = []
        self.zero: list[list[int]] = []

    def batch_end(self, state: State, logger: Logger) -> None:
        self.targets.append(self.algorithm.sparsity)
        self.zero.append(zero_filters(state.model.module[0].weight))


def test_agp_schedule_inside_training_prunes_whole_filters_and_keeps_them_zero():
    algorithm = StructuredPruning(final_sparsity=0.5, initial_sparsity=0.25, start='0ba', end='4ba', interval='2ba')
    recorder = SparsityRecorder(algorithm)
    model = tiny_net(0)  # conv '0' 1->4 with BN '1'; the classifier '5' is kept
    trainer = Trainer(model=model, train_dataloader=image_loader(), max_duration='6ba', algorithms=[algorithm],
                      callbacks=[recorder], optimizers=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                      progress_bar=False, device='cpu', seed=0)
    trainer.fit()
    # by hand: t=0,1 -> 0.25 (1 of 4 filters); t=2,3 -> 0.5 + (0.25 - 0.5)(1 - 2/4)^3 = 0.46875 -> round(1.875) = 2;
    # t>=4 -> 0.5 (2 filters)
    hand = [0.25, 0.25, 0.46875, 0.46875, 0.5, 0.5]
    assert [agp_sparsity(t, 0.5, 0.25, 0, 4, 2) for t in range(6)] == hand
    assert recorder.targets == hand
    counts = [len(z) for z in recorder.zero]
    assert counts == [round(s * 4) for s in hand] == [1, 1, 2, 2, 2, 2]
    assert set(recorder.zero[0]) <= set(recorder.zero[2]) and recorder.zero[2:] == [recorder.zero[2]] * 4
    # held at the final sparsity after `end`, not reset
    assert agp_sparsity(100, 0.5, 0.25, 0, 4, 2) == 0.5 and algorithm.target(trainer.state) == 0.5
    net = model.module
    gone = recorder.zero[-1]
    assert pruned(algorithm.masks['0']) == gone and pruned(algorithm.masks['1']) == gone
    assert torch.all(net[0].weight[gone] == 0) and torch.all(net[0].bias[gone] == 0)
    assert torch.all(net[1].weight[gone] == 0) and torch.all(net[1].bias[gone] == 0)
    kept = [i for i in range(4) if i not in gone]
    assert torch.all(net[0].weight[kept].flatten(1).abs().sum(1) > 0) and torch.all(net[1].weight[kept] != 0)
    momentum = trainer.state.optimizers[0].state[net[0].weight]['momentum_buffer']
    assert torch.all(momentum[gone] == 0)
    trainer.close()
    # the trained model (wrapper and all) exports to 2 channels with the same outputs
    x = image_loader().dataset.tensors[0]
    exported = export_pruned(model, algorithm.masks, x[:1]).eval()
    assert exported[0].out_channels == 2 and exported[1].num_features == 2 and exported[5].in_features == 8
    with torch.no_grad():
        assert (exported(x) - net.eval()(x)).abs().max() < 1e-5


@pytest.mark.parametrize('bad', [1.2, 0, 1.0, -0.1])
def test_final_sparsity_outside_the_open_interval_is_rejected(bad):
    with pytest.raises(ValueError, match='final_sparsity'):
        StructuredPruning(bad)


def agp_config(fmnist_root: Path, tmp_path: Path, *overrides: str) -> dict:
    cfg = load_config(AGP_YAML, [f'run_dir={tmp_path / "run"}', 'save_folder=null', 'autoresume=false',
                                 'callbacks={}', *overrides])
    for key in ('train_loader', 'eval_loader'):
        cfg[key].update(path=str(fmnist_root), num_workers=0)
    init = tmp_path / 'init.pt'  # a trained original of the same architecture, as a Composer checkpoint holds it
    torch.save({'state': {'model': build_model(**cfg['model']).state_dict()}}, init)
    cfg['load_path'] = str(init)
    return cfg


def test_the_agp_recipe_prepares_on_tiny_data(fmnist_root, tmp_path):
    run = prepare(agp_config(fmnist_root, tmp_path))
    (algorithm,) = [a for a in run.trainer_kwargs['algorithms'] if isinstance(a, StructuredPruning)]
    assert algorithm.final_sparsity == 0.45 and algorithm.initial_sparsity == 0.1


def test_recipe_final_sparsity_out_of_range_is_a_one_line_config_error(fmnist_root, tmp_path):
    cfg = agp_config(fmnist_root, tmp_path, 'algorithms.structured_pruning.final_sparsity=1.5')
    with pytest.raises(ConfigError) as e:
        prepare(cfg)
    message = str(e.value)
    assert message.startswith('algorithms.structured_pruning: final_sparsity') and '1.5' in message
    assert '\n' not in message
    assert not (tmp_path / 'run').exists()


def test_recipe_excluding_an_unknown_layer_is_a_config_error_naming_it(fmnist_root, tmp_path):
    cfg = agp_config(fmnist_root, tmp_path)
    cfg['algorithms']['structured_pruning']['exclude'] = ['nonexistent']
    with pytest.raises(ConfigError, match="exclude: no module named 'nonexistent'") as e:
        prepare(cfg)
    assert '\n' not in str(e.value)


def test_through_the_training_script_final_sparsity_is_one_line_and_nothing_written(fmnist_root, tmp_path, capsys):
    init = tmp_path / 'init.pt'
    torch.save({'state': {'model': build_model('convnet', num_classes=10, in_channels=1, hidden=128).state_dict()}},
               init)
    run_dir = tmp_path / 'run'
    argv = ['-f', str(AGP_YAML), *tiny_overrides(fmnist_root, run_dir), f'load_path={init}', 'save_folder=null',
            'algorithms.structured_pruning.final_sparsity=1.5']
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: algorithms.structured_pruning: final_sparsity must be a number strictly between '
                          '0 and 1') and err.endswith('got 1.5') and '\n' not in err, err
    assert not run_dir.exists()
