"""Layer-wise unstructured pruning (algorithms/pruning): masks, the Composer algorithms, checkpoints, measures."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from composer import Trainer
from composer.core import Callback, Event, State
from composer.loggers import InMemoryLogger, Logger
from composer.models import ComposerClassifier
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from algorithms.common.checkpoint_loading import safe_load
from algorithms.pruning import (FixedMaskTraining, MagnitudePruning, RandomSparseInit, apply_masks, count_macs,
                                count_parameters, layer_sparsity, magnitude_masks, magnitude_prune,
                                masks_from_checkpoint, prunable_layers, random_masks, time_forward)
from recipes.core.checkpoint_safety import use_weights_only_checkpoint_loading
from tests.helpers.algorithm_settings import tiny_net

README = Path(__file__).resolve().parents[2] / 'algorithms' / 'pruning' / 'README.md'


def small_net(seed: int = 0) -> ComposerClassifier:
    """Two convs and two linear layers (the seed's ConvNet in miniature); '7' is the classifier."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 3 * 3, 20), nn.ReLU(), nn.Linear(20, 3),
    )
    return ComposerClassifier(net, num_classes=3)


def loader(n: int = 48) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False)


def make_trainer(model, algorithm, max_duration='6ba', optimizer=None, **kwargs) -> Trainer:
    use_weights_only_checkpoint_loading()
    return Trainer(model=model, train_dataloader=loader(), max_duration=max_duration, algorithms=[algorithm],
                   optimizers=optimizer, progress_bar=False, device='cpu', seed=0, **kwargs)


def zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


class Recorder(Callback):
    """Records, after each batch's BATCH_END (algorithms run before callbacks), each layer's sparsity."""

    def __init__(self, layers: list[str]):
        self.layers = layers
        self.after_batch: list[dict[str, float]] = []

    def batch_end(self, state: State, logger: Logger) -> None:
        self.after_batch.append(layer_sparsity(state.model, self.layers))


def assert_state_equal(a: Any, b: Any, path: str = 'state') -> None:
    assert type(a) is type(b), path
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_state_equal(a[k], b[k], f'{path}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_state_equal(x, y, f'{path}[{i}]')
    else:
        assert a == b, path


# --- masks ---------------------------------------------------------------------------------------------------------
def test_prunable_layers_see_through_wrappers_and_leave_the_classifier_dense():
    model = small_net()
    assert list(prunable_layers(model)) == ['0', '2', '5']  # '7', the last Linear, is the classifier
    assert list(prunable_layers(model.module)) == ['0', '2', '5']
    assert list(prunable_layers(model, exclude=['module.0', '7'])) == ['2', '5']  # a wrapper prefix is accepted
    assert list(prunable_layers(model, exclude=[])) == ['0', '2', '5', '7']


@pytest.mark.parametrize('sparsity', [0.3, 0.45, 0.6, 0.75, 0.9])
def test_layerwise_sparsity_is_exact_in_every_layer_and_the_classifier_stays_dense(sparsity):
    model = small_net()
    classifier = model.module[7].weight.detach().clone()
    masks = magnitude_prune(model, sparsity)
    assert list(masks) == ['0', '2', '5']
    for name, layer in prunable_layers(model).items():
        assert zeros(layer.weight) == round(sparsity * layer.weight.numel()), name
        assert int((~masks[name]).sum()) == round(sparsity * layer.weight.numel()), name
    assert torch.equal(model.module[7].weight, classifier) and zeros(classifier) == 0
    measured = layer_sparsity(model, prunable_layers(model))
    assert measured == {n: round(sparsity * m.weight.numel()) / m.weight.numel()
                        for n, m in prunable_layers(model).items()}


def test_magnitude_masks_prune_the_smallest_weights_with_deterministic_ties():
    model = small_net()
    layers = prunable_layers(model)
    masks = magnitude_masks(model, 0.6, layers)
    for name, layer in layers.items():
        w = layer.weight.detach().abs()
        assert w[~masks[name]].max() <= w[masks[name]].min(), name
    # ties: a layer of equal magnitudes loses its lowest flat indices first, every time
    net = nn.Sequential(nn.Linear(5, 2), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.fill_(0.5)
        net[0].weight[1, 4] = -0.1
    mask = magnitude_masks(net, 0.4, ['0'])['0'].flatten()
    assert mask.tolist() == [False, False, False, True, True, True, True, True, True, False]
    assert torch.equal(magnitude_masks(net, 0.4, ['0'])['0'].flatten(), mask)


def test_later_rounds_keep_earlier_pruned_weights_pruned():
    model = small_net()
    first = magnitude_prune(model, 0.5)
    with torch.no_grad():  # training moves kept weights; make some tiny so a naive re-rank could revive pruned ones
        model.module[0].weight.mul_(1e-3)
    second = magnitude_masks(model, 0.7, prunable_layers(model), previous=first)
    for name in first:
        assert not (second[name] & ~first[name]).any(), name
        assert int((~second[name]).sum()) == round(0.7 * second[name].numel())


def test_random_masks_hit_the_sparsity_and_follow_the_seed():
    model = small_net()
    layers = prunable_layers(model)
    a = random_masks(model, 0.75, layers, torch.Generator().manual_seed(1))
    b = random_masks(model, 0.75, layers, torch.Generator().manual_seed(1))
    c = random_masks(model, 0.75, layers, torch.Generator().manual_seed(2))
    for name, layer in layers.items():
        assert int((~a[name]).sum()) == round(0.75 * layer.weight.numel())
        assert torch.equal(a[name], b[name]) and not torch.equal(a[name], c[name])


def test_apply_masks_zeroes_weights_and_optimizer_state_so_pruned_weights_stay_zero():
    for make_opt, keys in [
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3), ['momentum_buffer']),
        (lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True), ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq']),
    ]:
        model = small_net()
        opt = make_opt(model.parameters())
        x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
        masks = None
        for step in range(4):
            opt.zero_grad()
            model.loss(model((x, y)), (x, y)).backward()
            opt.step()
            if step == 1:
                masks = magnitude_masks(model, 0.5, prunable_layers(model))
            if masks:
                apply_masks(model, masks, opt)
        for name, layer in prunable_layers(model).items():
            assert (layer.weight[~masks[name]] == 0).all(), name
            for key in keys:
                assert (opt.state[layer.weight][key][~masks[name]] == 0).all(), (name, key)
                assert (opt.state[layer.weight][key][masks[name]] != 0).any(), (name, key)


# --- MagnitudePruning in Composer's loop ----------------------------------------------------------------------------
def test_iterative_pruning_follows_its_schedule_and_logs_the_measured_sparsity():
    model = small_net()
    layers = list(prunable_layers(model))
    recorder, memory = Recorder(layers), InMemoryLogger()
    algorithm = MagnitudePruning([('2ba', 0.5), ('4ba', 0.75)])
    trainer = make_trainer(model, algorithm, callbacks=[recorder], loggers=[memory])
    trainer.fit()
    expected = [0.0, 0.0, 0.5, 0.5, 0.75, 0.75]
    sizes = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
    for batch, target in enumerate(expected):
        for name in layers:
            assert recorder.after_batch[batch][name] == round(target * sizes[name]) / sizes[name], (batch, name)
    assert zeros(model.module[7].weight) == 0  # classifier dense
    assert algorithm.fired == [True, True] and algorithm.sparsity == 0.75
    logged = [v for _, v in memory.data['pruning/sparsity/0']]
    assert logged[0] == round(0.5 * 54) / 54 and logged[-1] == round(0.75 * 54) / 54
    assert 'pruning/global_sparsity' in memory.data


def test_pruned_weights_and_momentum_stay_exactly_zero_through_training():
    model = small_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    algorithm = MagnitudePruning([('1ba', 0.6)])

    class Check(Callback):  # after every step (BATCH_END) and before every forward (BEFORE_FORWARD)
        checked = 0

        def run_event(self, event: Event, state: State, logger: Logger) -> None:
            if event in (Event.BATCH_END, Event.BEFORE_FORWARD) and algorithm.masks:
                for name, layer in prunable_layers(state.model).items():
                    pruned = ~algorithm.masks[name]
                    assert (layer.weight[pruned] == 0).all(), (event, name)
                    buf = optimizer.state.get(layer.weight, {}).get('momentum_buffer')
                    if buf is not None:
                        assert (buf[pruned] == 0).all(), (event, name)
                self.checked += 1

    check = Check()
    make_trainer(model, algorithm, optimizer=optimizer, callbacks=[check]).fit()
    assert check.checked == 10  # 5 pruned batches x (before forward + after step)
    for name, layer in prunable_layers(model).items():
        buf = optimizer.state[layer.weight]['momentum_buffer']
        assert (buf[~algorithm.masks[name]] == 0).all() and (buf[algorithm.masks[name]] != 0).any()


def test_masks_survive_checkpoint_and_resume(tmp_path):
    schedule = [('2ba', 0.5), ('4ba', 0.75)]
    full_algo = MagnitudePruning(schedule)
    full = make_trainer(small_net(), full_algo, save_folder=str(tmp_path / 'full'), save_interval='1ba')
    full.fit()
    resumed_algo = MagnitudePruning(schedule)
    resumed = make_trainer(small_net(), resumed_algo, save_folder=str(tmp_path / 'resumed'), save_interval='1ba',
                           load_path=str(tmp_path / 'full' / 'ep0-ba3-rank0.pt'))
    assert int(resumed.state.timestamp.batch) == 3 and resumed_algo.fired == [True, False]
    resumed.fit()
    for k, v in full.state.model.state_dict().items():
        torch.testing.assert_close(resumed.state.model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert_state_equal(resumed_algo.state_dict(), full_algo.state_dict())
    assert resumed_algo.fired == [True, True]


# --- re-initialisation and random sparse initialisation -------------------------------------------------------------
def test_reinit_keeps_the_mask_and_changes_every_kept_weight(tmp_path):
    pruning = MagnitudePruning([('2ba', 0.6)])
    make_trainer(small_net(0), pruning, save_folder=str(tmp_path / 'pruned'), save_interval='6ba').fit()
    path = tmp_path / 'pruned' / 'ep0-ba6-rank0.pt'
    masks, source = masks_from_checkpoint(path)
    assert source == 'algorithm' and masks.keys() == pruning.masks.keys()
    ckpt_model = safe_load(path)['state']['model']
    pruned_weights = {n: ckpt_model[f'module.{n}.weight'] for n in masks}

    reinit = FixedMaskTraining.from_checkpoint(path)  # reinit=True
    student = small_net(seed=1)  # a fresh initialisation
    make_trainer(student, reinit, max_duration='3ba').fit()
    for name, layer in prunable_layers(student).items():
        assert torch.equal(reinit.masks[name], pruning.masks[name])
        assert (layer.weight[~masks[name]] == 0).all(), name
        assert (layer.weight[masks[name]] != pruned_weights[name][masks[name]]).all(), name

    # Without the algorithm's state (a plain state dict), the masks are the weights' zero pattern.
    torch.save(ckpt_model, tmp_path / 'plain.pt')
    from_zeros = FixedMaskTraining.from_checkpoint(tmp_path / 'plain.pt')
    assert from_zeros.source == 'zeros'
    student = small_net(seed=2)
    make_trainer(student, from_zeros, max_duration='1ba').fit()
    assert from_zeros.masks.keys() == masks.keys()
    for name in masks:
        assert torch.equal(from_zeros.masks[name], masks[name]), name

    # reinit=False: the pruned weights are the starting point (fine-tuning with the mask fixed).
    finetune = FixedMaskTraining.from_checkpoint(path, reinit=False)
    seen = {}

    class AtStart(Callback):
        def fit_start(self, state: State, logger: Logger) -> None:
            seen.update({n: m.weight.detach().clone() for n, m in prunable_layers(state.model).items()})

    full = make_trainer(small_net(seed=3), finetune, max_duration='3ba', callbacks=[AtStart()],
                        save_folder=str(tmp_path / 'finetune'), save_interval='1ba')
    full.fit()
    for name in masks:
        assert torch.equal(seen[name], pruned_weights[name]), name
    assert finetune.state_dict()['weights_loaded'] is True
    # Resumed, it must not copy the pruned weights in again: it ends where the uninterrupted run ends.
    again = FixedMaskTraining.from_checkpoint(path, reinit=False)
    resumed = make_trainer(small_net(seed=3), again, max_duration='3ba',
                           load_path=str(tmp_path / 'finetune' / 'ep0-ba2-rank0.pt'))
    resumed.fit()
    for k, v in full.state.model.state_dict().items():
        torch.testing.assert_close(resumed.state.model.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_random_sparse_init_hits_the_sparsity_per_layer_and_differs_by_seed():
    results = {}
    for seed in (0, 0, 1):
        model = small_net()
        algorithm = RandomSparseInit(0.75, seed=seed)
        make_trainer(model, algorithm, max_duration='2ba').fit()
        for name, layer in prunable_layers(model).items():
            assert zeros(layer.weight) == round(0.75 * layer.weight.numel()), name
            assert int((~algorithm.masks[name]).sum()) == round(0.75 * layer.weight.numel())
        assert zeros(model.module[7].weight) == 0
        results.setdefault(seed, []).append(algorithm.state_dict()['masks'])
    assert_state_equal(results[0][0], results[0][1])
    assert all(not torch.equal(results[0][0][n], results[1][0][n]) for n in results[0][0])


# --- measures -------------------------------------------------------------------------------------------------------
def test_count_macs_and_parameters_on_a_hand_computed_net():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3),                                   # 1x5x5 -> 2x3x3: 9 positions x 18 weights = 162
        nn.Conv2d(2, 4, 3, padding=1, stride=2, groups=2),   # 2x3x3 -> 4x2x2: 4 positions x 36 weights = 144
        nn.Flatten(), nn.Linear(16, 5),                       # 16 x 5 = 80
    )
    x = torch.randn(1, 1, 5, 5)
    assert count_macs(net, x) == (162 + 144 + 80, 162 + 144 + 80)
    assert count_macs(net, torch.randn(3, 1, 5, 5)) == (3 * 386, 3 * 386)  # the batch counts
    masks = {'0': (torch.arange(18) < 9).view(2, 1, 3, 3), '1': (torch.arange(36) % 4 == 0).view(4, 1, 3, 3)}
    assert count_macs(net, x, masks) == (386, 9 * 9 + 4 * 9 + 80)
    apply_masks(net, masks)
    assert count_macs(net, x) == (386, 9 * 9 + 4 * 9 + 80)  # measured from the zeros when no masks are given
    dense = 18 + 2 + 36 + 4 + 80 + 5
    assert count_parameters(net, masks) == (dense, dense - 9 - 27)
    assert count_parameters(ComposerClassifier(net, num_classes=5), masks) == (dense, dense - 9 - 27)
    assert count_macs(ComposerClassifier(net, num_classes=5), x) == (386, 197)  # the wrapped network is called
    assert time_forward(net, x, repeats=3, warmup=1) > 0


# --- errors ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('bad', [0, 1, 1.5, -0.1, float('nan'), True])
def test_sparsity_outside_the_open_interval_is_rejected_naming_the_argument(bad):
    model = small_net()
    for call in (lambda: magnitude_masks(model, bad, ['0']),
                 lambda: random_masks(model, bad, ['0'], torch.Generator()),
                 lambda: magnitude_prune(model, bad),
                 lambda: RandomSparseInit(bad)):
        with pytest.raises(ValueError, match='sparsity'):
            call()
    with pytest.raises(ValueError, match=re.escape('schedule[1] sparsity')):
        MagnitudePruning([('1ba', 0.5), ('2ba', bad)])


def test_bad_schedules_are_rejected():
    with pytest.raises(ValueError, match='cannot decrease'):
        MagnitudePruning([('1ba', 0.7), ('2ba', 0.6)])
    with pytest.raises(ValueError, match='not after'):
        MagnitudePruning([('4ba', 0.5), ('2ba', 0.6)])
    with pytest.raises(ValueError, match=r"schedule\[0\] time: malformed duration"):
        MagnitudePruning([('2 epochs', 0.5)])
    with pytest.raises(ValueError, match='pair'):
        MagnitudePruning([0.5])


def test_unknown_layer_names_the_closest_ones():
    model = small_net()
    with pytest.raises(KeyError, match=r"'module\.9'.*closest: .*0"):
        magnitude_masks(model, 0.5, ['module.9'])
    with pytest.raises(KeyError, match='closest'):
        prunable_layers(model, exclude=['classifier'])
    with pytest.raises(KeyError, match='closest'):
        apply_masks(model, {'5x': torch.ones(20, 72, dtype=torch.bool)})
    with pytest.raises(KeyError, match='closest'):
        make_trainer(model, MagnitudePruning([('1ba', 0.5)], exclude=['8']))


def test_a_misshaped_mask_is_rejected_naming_the_layer_and_both_shapes():
    model = small_net()
    with pytest.raises(ValueError, match=re.escape("layer '5' has shape (72, 20)") + '.*' + re.escape('(20, 72)')):
        apply_masks(model, {'5': torch.ones(72, 20, dtype=torch.bool)})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = make_trainer(model, FixedMaskTraining({'module.2': torch.ones(8, 6, 2, 2, dtype=torch.bool)}))
    with pytest.raises(ValueError, match=re.escape("layer '2' has shape (8, 6, 2, 2)")):
        trainer.fit()
    assert int(trainer.state.timestamp.batch) == 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing touched


def test_readme_code_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r'```python\n(.*?)```', README.read_text(), flags=re.S)
    assert len(blocks) == 4
    namespace = {'__name__': 'readme'}  # the unstructured card's blocks run in order, as one script
    for block in blocks[:3]:
        exec(compile(block, str(README), 'exec'), namespace)
    assert namespace['layer_sparsity'](namespace['model'], ['0', '3', '7'])['0'] == 65 / 72
    structured = {'__name__': 'readme'}  # the structured card's block (it asserts its own results)
    exec(compile(blocks[3], str(README), 'exec'), structured)
    assert structured['costs']['params']['exported'] < structured['costs']['params']['masked']
