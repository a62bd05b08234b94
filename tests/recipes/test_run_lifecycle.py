"""Runs end to end on tiny real-format data: records, resume after a crash, non-finite loss, determinism."""

from __future__ import annotations

import json

import pytest
import torch
from composer.core import Callback, Event, State
from composer.loggers import Logger

from algorithms.callbacks import read_records
from algorithms.common.checkpoint_loading import safe_load
from recipes.core.builders import launch, prepare
from tests.conftest import tiny_config


class CrashAt(Callback):
    """Simulates a killed job: raises at the end of batch ``step`` (before that batch's checkpoint is written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.BATCH_END and int(state.timestamp.batch) == self.step:
            raise KeyboardInterrupt('simulated kill')


class PoisonOutputs(Callback):
    """Turns the model's outputs into NaN at batch ``step`` (0-based count of finished batches)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.AFTER_FORWARD and int(state.timestamp.batch) == self.step:
            state.outputs = state.outputs * float('nan')


def fit(cfg, extra=None):
    trainer = launch(prepare(cfg, extra_callbacks=extra))
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.state.model.state_dict().items()}


@pytest.fixture(scope='module')
def uninterrupted(fmnist_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp('full')
    trainer = fit(tiny_config(fmnist_root, run_dir, save_interval='1ba'))
    return run_dir, weights(trainer)


def test_run_record_has_every_eval_with_clocks_and_metrics(uninterrupted):
    run_dir, _ = uninterrupted
    records = read_records(run_dir)
    # 64 samples / batch 16 = 4 steps per epoch, eval every epoch, 2 epochs
    assert [r['step'] for r in records] == [4, 8]
    assert [r['samples'] for r in records] == [64, 128]
    assert [r['epoch'] for r in records] == [1, 2]
    for r in records:
        assert 0 < r['train_wct_s'] < r['total_wct_s']
        assert r['total_wct_s'] == pytest.approx(r['train_wct_s'] + r['eval_wct_s'])
        assert 0.0 <= r['metrics']['eval/MulticlassAccuracy'] <= 1.0
        assert 'eval/CrossEntropy' in r['metrics']
    assert records[1]['train_wct_s'] > records[0]['train_wct_s']
    summary = json.loads((run_dir / 'summary.json').read_text())
    assert summary['finished'] and summary['step'] == 8
    assert summary['final_metrics'] == records[-1]['metrics']
    assert summary['train_wct_s'] >= records[-1]['train_wct_s']
    resolved = (run_dir / 'config.yaml').read_text()
    assert f'run_dir: {run_dir}' in resolved and 'save_folder: ' + str(run_dir / 'checkpoints') in resolved


def test_killed_run_resumes_to_the_same_weights(uninterrupted, fmnist_root, tmp_path):
    _, expected = uninterrupted
    cfg = tiny_config(fmnist_root, tmp_path / 'killed', save_interval='1ba', autoresume=True)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, extra=[CrashAt(6)])  # mid-epoch 2: latest checkpoint is ba5
    assert (tmp_path / 'killed' / 'checkpoints' / 'ep1-ba5-rank0.pt').is_file()
    before = read_records(tmp_path / 'killed')
    assert [r['step'] for r in before] == [4]
    resumed = fit(tiny_config(fmnist_root, tmp_path / 'killed', save_interval='1ba', autoresume=True))
    assert int(resumed.state.timestamp.batch) == 8
    got = weights(resumed)
    assert got.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0, msg=k)
    after = read_records(tmp_path / 'killed')
    assert [r['step'] for r in after] == [4, 8]  # no duplicated or lost evaluation
    assert after[1]['train_wct_s'] > before[0]['train_wct_s']  # the clock continued across the restart


@pytest.mark.parametrize('in_memory', [True, False])
def test_evaluating_more_often_gives_the_same_weights(in_memory, fmnist_root, tmp_path):
    """The training data's order and augmentation come from its own seeded generator: evaluating every batch instead
    of every epoch (each evaluation builds a loader iterator) leaves training exactly as it was."""
    runs = {}
    for interval in ('1ep', '1ba'):
        cfg = tiny_config(fmnist_root, tmp_path / interval, save_folder=None, eval_interval=interval,
                          **{'train_loader.in_memory': in_memory, 'eval_loader.in_memory': in_memory})
        runs[interval] = weights(fit(cfg))
    assert len(read_records(tmp_path / '1ba')) == 8 and len(read_records(tmp_path / '1ep')) == 2
    for k in runs['1ep']:
        torch.testing.assert_close(runs['1ba'][k], runs['1ep'][k], rtol=0, atol=0, msg=k)


def test_checkpoints_load_with_weights_only(uninterrupted):
    run_dir, _ = uninterrupted
    state = safe_load(run_dir / 'checkpoints' / 'latest-rank0.pt')
    assert 'model' in state['state'] and state['state']['timestamp']['Timestamp']['batch'] == 8


def test_non_finite_loss_stops_naming_the_step_and_keeps_last_checkpoint(fmnist_root, tmp_path):
    cfg = tiny_config(fmnist_root, tmp_path / 'nan', save_interval='1ba', save_num_checkpoints_to_keep=-1)
    with pytest.raises(FloatingPointError, match=r"loss 'loss' became nan at step 4 \(after 3 completed batches"):
        fit(cfg, extra=[PoisonOutputs(3)])
    ckpts = sorted(p.name for p in (tmp_path / 'nan' / 'checkpoints').glob('ep*.pt'))
    assert ckpts == ['ep0-ba1-rank0.pt', 'ep0-ba2-rank0.pt', 'ep0-ba3-rank0.pt']
    last = safe_load(tmp_path / 'nan' / 'checkpoints' / 'ep0-ba3-rank0.pt')
    assert all(torch.isfinite(v).all() for v in last['state']['model'].values() if v.is_floating_point())


def test_same_seed_same_metrics(uninterrupted, fmnist_root, tmp_path):
    run_dir, expected = uninterrupted
    fit(tiny_config(fmnist_root, tmp_path / 'again', save_folder=None))
    a = [r['metrics'] for r in read_records(run_dir)]
    b = [r['metrics'] for r in read_records(tmp_path / 'again')]
    assert a == b


def test_composer_checkpoint_loading_goes_through_weights_only(uninterrupted, tmp_path, monkeypatch):
    """The patched private function is the one Composer's load path calls (fails if an upgrade renames or bypasses
    it), and it refuses a pickle that would run code."""
    import pickle

    import composer.utils.checkpoint as composer_checkpoint
    import torch

    from recipes.core.checkpoint_safety import use_weights_only_checkpoint_loading

    use_weights_only_checkpoint_loading()
    calls = []
    patched = composer_checkpoint._torch_load_with_validation

    def spy(path, map_location):
        calls.append(path)
        return patched(path, map_location)

    monkeypatch.setattr(composer_checkpoint, '_torch_load_with_validation', spy)
    run_dir, _ = uninterrupted
    from composer import Trainer

    from recipes.models.registry import build_model
    Trainer(model=build_model('cifar_resnet8', num_classes=10, in_channels=1), device='cpu', progress_bar=False,
            load_path=str(run_dir / 'checkpoints' / 'latest-rank0.pt'), load_weights_only=True)
    assert calls, "Composer's checkpoint loading no longer calls _torch_load_with_validation"

    class Boom:
        def __reduce__(self):
            import os
            return (os.system, ('true',))

    evil = tmp_path / 'evil.pt'
    torch.save({'state': {}, 'x': Boom()}, evil)
    with pytest.raises(pickle.UnpicklingError):
        patched(str(evil), 'cpu')



def test_summary_has_the_final_evaluation_when_it_runs_after_fit_end(fmnist_root, tmp_path):
    """Composer evaluates at FIT_END (after the FIT_END event) when eval_interval does not divide the duration:
    the summary must still carry that evaluation's metrics."""
    cfg = tiny_config(fmnist_root, tmp_path / 'run', max_duration='1ep', eval_interval='1000ep', save_folder=None)
    trainer = launch(prepare(cfg))
    trainer.fit()
    records = read_records(tmp_path / 'run')
    summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert len(records) == 1 and summary['n_evals'] == 1
    assert summary['final_metrics'] == records[-1]['metrics'] and 'eval/MulticlassAccuracy' in summary['final_metrics']


def test_a_second_run_into_a_live_run_dir_is_refused_but_a_killed_runs_lock_never_blocks(fmnist_root, tmp_path,
                                                                                          capsys):
    """Two runs into one run_dir used to both exit 0 with their records interleaved. While one process holds the run
    folder, another is refused in one line naming its PID, before it writes there; once the holder is killed with
    SIGKILL, its stale lock file does not stop the rerun (autoresume) from finishing."""
    import os
    import signal
    import subprocess
    import sys

    from recipes import train
    from tests.conftest import DEFAULT_YAML, REPO, tiny_overrides

    run_dir = tmp_path / 'run'
    holder_script = '\n'.join([
        'import sys, time', f'sys.path.insert(0, {str(REPO)!r})', 'from pathlib import Path',
        'from recipes.core.builders import launch, prepare', 'from tests.conftest import tiny_config',
        f'trainer = launch(prepare(tiny_config(Path({str(fmnist_root)!r}), Path({str(run_dir)!r}))))',
        "print('ready', flush=True)", 'time.sleep(600)'])
    holder = subprocess.Popen([sys.executable, '-c', holder_script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    argv = ['-f', str(DEFAULT_YAML), *tiny_overrides(fmnist_root, run_dir, max_duration='1ep'), 'autoresume=true']
    try:
        assert holder.stdout.readline().strip() == 'ready'
        assert train.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f'error: run_dir: {run_dir} is in use by another run (PID {holder.pid},'), err
        assert '\n' not in err and sorted(p.name for p in run_dir.iterdir()) == ['.lock', 'checkpoints', 'config.yaml']
        assert 'autoresume: false' in (run_dir / 'config.yaml').read_text()  # the holder's config, not overwritten
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (run_dir / '.lock').read_text().strip() == str(holder.pid)  # a stale lock file is left behind
    assert train.main(argv) == 0
    assert json.loads((run_dir / 'summary.json').read_text())['finished']
    assert (run_dir / '.lock').read_text().strip() == str(os.getpid())


def _fill_disk_at(monkeypatch, batch: int) -> None:
    """Make ``torch.save`` of the checkpoint at ``batch`` write some bytes and then hit a full disk (ENOSPC)."""
    import errno

    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if hasattr(f, 'write') and f'ba{batch}-' in str(getattr(f, 'name', '')):
            f.write(b'\0' * 4096)
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, 'save', save)


def test_a_full_disk_leaves_no_partial_checkpoint_and_the_rerun_resumes(fmnist_root, tmp_path, capsys, monkeypatch):
    """A full disk while writing ep2-ba8-rank0.pt used to leave a partial file under that name, which blocked the
    rerun (FileExistsError: ... may conflict with a future checkpoint). Now the write goes to a temporary name that is
    removed, the error is one line saying 'No space left on device', and the same command resumes and finishes."""
    from recipes import train
    from tests.conftest import DEFAULT_YAML, tiny_overrides

    run_dir = tmp_path / 'run'
    argv = ['-f', str(DEFAULT_YAML), *tiny_overrides(fmnist_root, run_dir), 'autoresume=true']
    with monkeypatch.context() as m:
        _fill_disk_at(m, 8)
        assert train.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and 'No space left on device' in err and '\n' not in err, err
    assert sorted(p.name for p in (run_dir / 'checkpoints').iterdir()) == ['ep1-ba4-rank0.pt', 'latest-rank0.pt']
    assert train.main(argv) == 0
    assert json.loads((run_dir / 'summary.json').read_text())['step'] == 8
    assert [r['step'] for r in read_records(run_dir)] == [4, 8]
    assert (run_dir / 'checkpoints' / 'ep2-ba8-rank0.pt').is_file()


def test_a_really_full_tmpfs_leaves_no_partial_checkpoint_and_the_rerun_resumes(fmnist_root, tmp_path, capsys):
    """The same on a real 1 MiB tmpfs (one 0.7 MB checkpoint fits, the second does not), grown after the failure;
    skipped only where this process may not mount one (it needs root)."""
    import subprocess

    from recipes import train
    from tests.conftest import DEFAULT_YAML, tiny_overrides

    disk = tmp_path / 'disk'
    disk.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(disk)], capture_output=True).returncode:
        pytest.skip('cannot mount a tmpfs here')
    try:
        run_dir = tmp_path / 'run'
        argv = ['-f', str(DEFAULT_YAML), *tiny_overrides(fmnist_root, run_dir), 'autoresume=true',
                f'save_folder={disk}']
        assert train.main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith('error: ') and 'No space left on device' in err and '\n' not in err, err
        assert sorted(p.name for p in disk.iterdir()) == ['ep1-ba4-rank0.pt', 'latest-rank0.pt']
        subprocess.run(['mount', '-o', 'remount,size=8m', str(disk)], check=True)  # space freed
        assert train.main(argv) == 0
        assert [r['step'] for r in read_records(run_dir)] == [4, 8]
        assert (disk / 'ep2-ba8-rank0.pt').is_file()
    finally:
        subprocess.run(['umount', str(disk)], check=True)
