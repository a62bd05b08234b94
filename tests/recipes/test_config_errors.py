"""Bad input: one line naming the key and what was expected, exit status 2, nothing read or written."""

from __future__ import annotations

from pathlib import Path

import pytest

from recipes import train
from tests.conftest import DEFAULT_YAML, tiny_overrides
from tests.helpers.bad_checkpoints import EXPECTED, write_bad_checkpoints


def run_main(tmp_path: Path, fmnist_root: Path, capsys, *overrides: str, yaml: Path = DEFAULT_YAML) -> str:
    run_dir = tmp_path / 'run'
    argv = ['-f', str(yaml), *tiny_overrides(fmnist_root, run_dir), *overrides]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and '\n' not in err, err
    assert not run_dir.exists(), 'a folder was written before the error'
    return err


@pytest.mark.parametrize('override, expected', [
    ('colour=blue', "unknown key 'colour'; allowed:"),
    ('optimizer.lrr=0.1', "unknown key 'optimizer.lrr'; allowed:"),
    ('train_loader.shufle=true', 'train_loader.shufle'),
    ('model.depth=3', 'model.depth'),
    ('scheduler.warmup=1ep', "unknown key 'scheduler.warmup'"),
    ('callbacks.speed_monitor.window=3', "unknown key 'callbacks.speed_monitor.window'"),
    ('seed=abc', "seed: expected int, got str 'abc'"),
    ('autoresume=3', 'autoresume: expected bool, got int 3'),
    ('optimizer.lr=fast', 'optimizer.lr: expected float'),
    ('train_loader.num_workers=two', 'train_loader.num_workers: expected int'),
    ('model.name=resnet9', "model.name: unknown model 'resnet9'"),
    ('optimizer.name=lion', "optimizer.name: unknown name 'lion'"),
    ('algorithms.warp_drive={}', "algorithms: unknown name 'warp_drive'"),
    ('callbacks.telepathy={}', "callbacks: unknown name 'telepathy'"),
    ('loggers.carrier_pigeon={}', "loggers: unknown name 'carrier_pigeon'"),
    ('train_loader.dataset=mnist_fancy', 'train_loader.dataset'),
    ('max_duration=90epochs', "max_duration: malformed duration '90epochs'"),
    ('scheduler.t_warmup=soon', "scheduler.t_warmup: malformed duration 'soon'"),
    ('precision=fp8', 'precision: expected one of fp32, amp_fp16, amp_bf16'),
    ('load_path=/no/such/ckpt.pt', 'load_path: checkpoint file not found'),
])
def test_bad_key_or_value_is_one_line_naming_the_key(tmp_path, fmnist_root, capsys, override, expected):
    assert expected in run_main(tmp_path, fmnist_root, capsys, override)


def test_missing_data_directory_names_the_path_key(tmp_path, fmnist_root, capsys):
    err = run_main(tmp_path, fmnist_root, capsys, f'train_loader.path={tmp_path / "nowhere"}')
    assert 'train_loader.path' in err and 'nowhere' in err


def test_missing_yaml(tmp_path, fmnist_root, capsys):
    err = run_main(tmp_path, fmnist_root, capsys, yaml=tmp_path / 'absent.yaml')
    assert 'YAML file not found' in err and 'absent.yaml' in err


def test_missing_required_key(tmp_path, fmnist_root, capsys):
    yaml = tmp_path / 'partial.yaml'
    yaml.write_text(DEFAULT_YAML.read_text().replace('run_name: fmnist-resnet8\n', ''))
    assert "missing required key 'run_name'" in run_main(tmp_path, fmnist_root, capsys, yaml=yaml)


def test_batch_size_not_divisible_by_ranks(tmp_path, fmnist_root, capsys, monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '3')
    err = run_main(tmp_path, fmnist_root, capsys)
    assert 'global_train_batch_size: 16 is not a positive multiple of the number of ranks (3)' in err


def test_cli_exit_status_and_message(tmp_path, fmnist_root):
    """The real entry point, as a user runs it: status 2 and one line on stderr."""
    import subprocess
    import sys
    argv = [sys.executable, str(Path(train.__file__)), 'max_duration=1fortnight', f'run_dir={tmp_path / "r"}',
            f'train_loader.path={fmnist_root}', f'eval_loader.path={fmnist_root}']
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: max_duration: malformed duration '1fortnight'")
    assert '\n' not in proc.stderr.strip()
    assert not (tmp_path / 'r').exists()


# --- the four bad inputs found when tried as a new user (issue 8) ---------------------------------------------------
def test_yaml_syntax_error_is_one_line_with_its_position(tmp_path, fmnist_root, capsys):
    yaml = tmp_path / 'broken.yaml'
    yaml.write_text('run_name: x\nmodel: {name: cifar_resnet8\noptimizer: [\n')
    err = run_main(tmp_path, fmnist_root, capsys, yaml=yaml)
    assert 'broken.yaml:' in err and 'YAML syntax error' in err


@pytest.mark.parametrize('duration', ['0ep', '0ba', '0dur'])
def test_zero_max_duration_is_refused_before_the_run_folder(tmp_path, fmnist_root, capsys, duration):
    err = run_main(tmp_path, fmnist_root, capsys, f'max_duration={duration}')
    assert err.startswith(f"error: max_duration: '{duration}' must be positive")


@pytest.mark.parametrize('override, expected', [
    ('model.num_classes=100', "model.num_classes: 100 does not fit train_loader.dataset 'fashion_mnist', which has 10"),
    ('model.in_channels=3', "model.in_channels: 3 does not fit train_loader.dataset 'fashion_mnist', which has 1"),
])
def test_model_that_does_not_fit_the_data(tmp_path, fmnist_root, capsys, override, expected):
    assert expected in run_main(tmp_path, fmnist_root, capsys, override)


class Boom:
    """Unpickling this runs code: weights_only loading must refuse it."""

    def __reduce__(self):
        import os
        return (os.system, ('echo pwned',))


@pytest.mark.parametrize('key', ['load_path', 'teacher'])
def test_unsafe_checkpoint_is_refused_in_one_line(tmp_path, fmnist_root, capsys, key):
    import torch
    evil = tmp_path / 'evil.pt'
    torch.save({'state': {'model': {}}, 'payload': Boom()}, evil)
    if key == 'load_path':
        err = run_main(tmp_path, fmnist_root, capsys, f'load_path={evil}')
        assert err.startswith(f'error: load_path: {evil} was refused as unsafe by weights_only loading')
    else:
        yaml = Path(__file__).resolve().parents[2] / 'yamls' / 'fashion_mnist' / 'kd_kl.yaml'
        err = run_main(tmp_path, fmnist_root, capsys, f'algorithms.knowledge_distillation.teachers=[{evil}]',
                       yaml=yaml)
        assert err.startswith('error: algorithms.knowledge_distillation.teachers[0].checkpoint: ')
        assert 'refused as unsafe by weights_only loading' in err


@pytest.mark.parametrize('override, expected', [
    ('algorithms.magnitude_pruning={schedule: [[1ep, 1.5]]}', 'sparsity'),
    ('algorithms.magnitude_pruning={schedule: [[1ep, 0.5]], exclude: [fc9]}', "'fc9'"),
    ('algorithms.random_sparse_init={sparsity: 0.0}', 'sparsity'),
])
def test_pruning_arguments_that_do_not_fit_are_refused_before_training(tmp_path, fmnist_root, capsys, override,
                                                                       expected):
    err = run_main(tmp_path, fmnist_root, capsys, override)
    assert expected in err and 'algorithms' in err


@pytest.mark.parametrize('override, expected', [
    ('algorithms.attention_transfer.student_features=[layer9]', "'layer9'"),
    ('algorithms.attention_transfer.teacher_features=[layer1, layer2, layer7]', "'layer7'"),
    ('algorithms.structured_pruning={final_sparsity: 1.0}', 'final_sparsity'),
    ('algorithms.crd={teachers: [TEACHER], student_feature: avgpool}', 'train_loader.indices'),
    ('algorithms.crd={teachers: [TEACHER], student_feature: avgpol}', "'avgpol'"),
])
def test_feature_distillation_and_structured_pruning_refused_before_training(tmp_path, fmnist_root, capsys, override,
                                                                           expected):
    """A feature name matching no module, a sparsity outside (0, 1), CRD without sample indices: one line."""
    import torch

    from recipes.models.registry import build_model
    teacher = tmp_path / 'teacher.pt'
    torch.save({'state': {'model': build_model('cifar_resnet8', num_classes=10, in_channels=1).state_dict()}}, teacher)
    yaml = Path(__file__).resolve().parents[2] / 'yamls' / 'fashion_mnist' / 'at_kd.yaml'
    err = run_main(tmp_path, fmnist_root, capsys, f'algorithms.knowledge_distillation.teachers=[{teacher}]',
                   f'algorithms.attention_transfer.teachers=[{teacher}]', override.replace('TEACHER', str(teacher)),
                   yaml=yaml)
    assert expected in err, err


@pytest.mark.parametrize('kind', sorted(EXPECTED))
@pytest.mark.parametrize('key', ['load_path', 'teacher'])
def test_bad_checkpoint_files_are_told_apart_in_one_line(tmp_path, fmnist_root, capsys, key, kind):
    """Empty, random and truncated files are 'not a checkpoint' (with the file and its size), never 'unsafe'; only a
    pickle that weights_only refuses is called unsafe. An empty file used to end in IndexError."""
    path = write_bad_checkpoints(tmp_path / 'files')[kind]
    if key == 'load_path':
        err = run_main(tmp_path, fmnist_root, capsys, f'load_path={path}')
        assert err.startswith(f'error: load_path: {path} ')
    else:
        yaml = Path(__file__).resolve().parents[2] / 'yamls' / 'fashion_mnist' / 'kd_kl.yaml'
        err = run_main(tmp_path, fmnist_root, capsys, f'algorithms.knowledge_distillation.teachers=[{path}]',
                       yaml=yaml)
        assert err.startswith(f'error: algorithms.knowledge_distillation.teachers[0].checkpoint: {path} ')
    assert EXPECTED[kind] in err
    assert ('unsafe' in err) == kind.startswith('crafted'), err


@pytest.mark.parametrize('case, expected', [
    ('crafted', 'was refused as unsafe by weights_only loading'),
    ('empty', 'is empty (0 bytes): not a checkpoint'),
    ('other_architecture', 'do not fit'),
    ('bad_layer', "no module named 'layer9'"),
])
def test_similarity_monitor_is_checked_before_anything_is_written(tmp_path, fmnist_root, capsys, case, expected):
    """A crafted reference used to fail after the run folder existed, and a bad layer name only at the end of the
    whole run (KeyError); both are now one line before anything is written."""
    import torch

    from recipes.models.registry import build_model
    from tests.conftest import tiny_config

    files = write_bad_checkpoints(tmp_path / 'files')
    good = tmp_path / 'reference.pt'
    torch.save(build_model(**tiny_config(fmnist_root, tmp_path / 'unused')['model']).state_dict(), good)
    other = tmp_path / 'other.pt'
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    reference = {'crafted': files['crafted'], 'empty': files['empty'], 'other_architecture': other}.get(case, good)
    layers = '[layer9]' if case == 'bad_layer' else '[layer1]'
    err = run_main(tmp_path, fmnist_root, capsys, f'callbacks.similarity_monitor={{reference: {reference}, '
                                                  f'layers: {layers}, images: 32}}')
    assert err.startswith('error: callbacks (SimilarityMonitor): ') and expected in err, err
