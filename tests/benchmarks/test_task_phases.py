"""The task-phase measurement's report by hand, and its bad inputs refused in one line before anything is written."""

from __future__ import annotations

from pathlib import Path

from benchmarks.blockwise import task_phases
from tests.helpers.tiny_data import write_fashion_mnist

REPO = Path(__file__).resolve().parents[2]
MACHINE = {'cpu': 'Test CPU', 'cores': 2, 'device': 'CPU only', 'torch': '2.7', 'date': 'today'}


def _row(task_s: float, thread_cpu_s: float, check: float) -> dict:
    phases = {p: 1.0 for p in task_phases.PHASES}
    return {'task_s': task_s, **phases, 'check': check, 'thread_cpu_s': thread_cpu_s, 'cpu_share': thread_cpu_s / task_s,
            'nivcsw': 10, 'minflt': 1000, 'majflt': 0, 'other_threads_cpu_s': 0.5}


def test_report_gives_each_variants_slowdown_by_hand():
    rows = {'before/dask1': [_row(30.0, 29.0, 10.0), _row(32.0, 31.0, 12.0)],  # means 31, 30, 11
            'before/dask2': [_row(34.0, 30.0, 12.1)] * 4,  # 34, 30, 12.1
            'after/dask1': [_row(20.0, 20.0, 4.0)], 'after/dask2': [_row(21.0, 20.4, 4.2)] * 2}
    overhead = {'before/dask1': [{'driver_cpu_s': 1.5}], 'before/dask2': [{'driver_cpu_s': 2.5}],
                'after/dask1': [{'driver_cpu_s': 0.2}], 'after/dask2': [{'driver_cpu_s': 0.3}]}
    text = task_phases.report({'layer': 'l', 'rows': rows, 'overhead': overhead}, 'cmd', MACHINE)
    lines = text.splitlines()
    before = next(line for line in lines if line.startswith('| before |'))
    # task 34/31 = 1.10, check 12.1/11 = 1.10, thread CPU 30/30 = 1.00, bound 31/34 = 0.91
    assert before.startswith('| before | 1.10 |') and before.endswith('| 1.00 | 0.91 |')
    assert before.split(' | ')[8] == '1.10'  # the check phase column (task, setup, data, ..., check)
    after = next(line for line in lines if line.startswith('| after |'))
    assert after.startswith('| after | 1.05 |') and after.endswith('| 1.02 | 0.95 |')  # 21/20, 20.4/20, 20/21
    assert '| before/dask2 | 4 | 34.0 |' in text and text.rstrip().endswith('```')
    assert next(line for line in lines if line.startswith('| before/dask2 |')).endswith('| 2.5 |')


def test_bad_inputs_are_one_line_before_anything_is_written(tmp_path, capsys):
    write_fashion_mnist(tmp_path / 'data', n_train=64, n_test=32)
    spec = tmp_path / 'spec.yaml'
    spec.write_text(f"base: {REPO / 'yamls/pipelines/fashion_mnist/blockwise_resnet8.yaml'}\n"
                    f"teacher:\n  overrides: {{train_loader.path: '{tmp_path / 'data'}', "
                    f"eval_loader.path: '{tmp_path / 'data'}'}}\n"
                    "blockwise: {val_size: 16}\n")
    work = tmp_path / 'work'
    empty = tmp_path / 'empty.pt'
    empty.write_bytes(b'')  # not a checkpoint: refused before the data cache or the scratch teacher is written
    for argv, message in (
            (['--spec', str(tmp_path / 'nope.yaml')], 'error: --spec: file not found'),
            (['--spec', str(spec), '--layer', 'fc'], "error: --layer: 'fc' has no task; expected one of layer1.0.conv1"),
            (['--spec', str(spec), '--', 'blockwise.epochz=2'], "error: unknown key 'blockwise.epochz'"),
            (['--spec', str(spec), '--repeats', '0'], 'error: --repeats: expected an integer >= 1, got 0'),
            (['--spec', str(spec), '--checkpoint', str(tmp_path / 'none.pt')], 'error: teacher.checkpoint: '),
            (['--spec', str(spec), '--checkpoint', str(empty)], 'error: teacher.checkpoint: ')):
        assert task_phases.main(['--work', str(work), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count('\n') == 1, err
        assert not work.exists()
