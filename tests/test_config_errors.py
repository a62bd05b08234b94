"""Bad input: one line naming the key and what was expected, exit status 2, nothing read or written."""

from __future__ import annotations

from pathlib import Path

import pytest

from recipes import train
from tests.conftest import DEFAULT_YAML, tiny_overrides


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
