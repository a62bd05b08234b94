"""``python -m benchmarks.study --dask``: a tiny study (2 teachers, then a student; 2 batches each) on a local cluster
of 2 worker processes, each run a subprocess of its printed command; and bad ``--dask`` specs."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.study import engine as driver
from benchmarks.study.dask_cluster import parse_dask_spec, run_study_dask
from benchmarks.study.spec import StudyError
from tests.helpers.study_runs import tiny_overrides


def dask_study(tmp_path: Path, data: Path) -> Path:
    overrides = tiny_overrides(data)
    path = tmp_path / 'dask.yaml'
    path.write_text(f"""
name: dask
runs_root: {tmp_path / 'runs'}
baseline: teacher
overrides: {json.dumps(overrides)}
runs:
  - {{name: student, recipe: yamls/fashion_mnist/kd_mse.yaml, teachers: [teacher], tags: [kd]}}
  - {{name: teacher, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, tags: [teacher, baseline]}}
  - {{name: teacher2, recipe: yamls/fashion_mnist/teacher_lr0.4.yaml, tags: [teacher]}}
""")
    return path


def test_a_study_runs_stage_by_stage_on_two_local_workers(tmp_path, fmnist_root: Any):
    path, runs = dask_study(tmp_path, fmnist_root), tmp_path / 'runs'
    assert driver.main([str(path), '--dask', 'local:2']) == 0
    for name in ('teacher', 'teacher2', 'student'):
        summary = json.loads((runs / name / 'summary.json').read_text())
        assert summary['finished'] and summary['step'] == 2
        text = (runs / name / 'driver.log').read_text()
        assert f'run_name=dask-{name}' in text.splitlines()[0]  # the printed command, run as a subprocess
    teacher_ckpt = f'{runs}/teacher/checkpoints/latest-rank0.pt'
    assert teacher_ckpt in (runs / 'student' / 'driver.log').read_text().splitlines()[0]
    sessions = json.loads((runs / 'dask_runs.json').read_text())['sessions']
    assert len(sessions) == 1 and len(sessions[0]['workers']) == 2
    by_name = {e['name']: e for e in sessions[0]['runs']}
    assert set(by_name) == {'teacher', 'teacher2', 'student'}
    assert all(e['status'] == 'trained' and e['returncode'] == 0 for e in by_name.values())
    assert {e['worker'] for e in by_name.values()} <= set(sessions[0]['workers'])
    assert by_name['teacher']['worker'] != by_name['teacher2']['worker']  # one stage, two workers
    t = {name: {k: datetime.fromisoformat(e[k]) for k in ('start', 'end')} for name, e in by_name.items()}
    assert t['student']['start'] >= max(t['teacher']['end'], t['teacher2']['end'])  # the next stage waits
    assert max(t['teacher']['start'], t['teacher2']['start']) < min(t['teacher']['end'], t['teacher2']['end'])
    assert json.loads((runs / 'machine.json').read_text())['sessions'][0]['runs'] == ['teacher', 'teacher2',
                                                                                         'student']
    # everything finished: nothing is submitted (no new session), every run is skipped
    assert driver.main([str(path), '--dask', 'local:2']) == 0
    assert len(json.loads((runs / 'dask_runs.json').read_text())['sessions']) == 1
    status = run_study_dask(driver.load_study(path), None, parse_dask_spec('local:2'))
    assert status == {'teacher': 'finished earlier', 'teacher2': 'finished earlier', 'student': 'finished earlier'}


@pytest.mark.parametrize('spec', ['local:0', 'local:', 'local:x', 'gpus:-1', 'foo', 'tcp://', '4'])
def test_a_bad_dask_spec_is_one_error_line(tmp_path, spec, capsys):
    path = tmp_path / 'never-read.yaml'  # the spec is checked first
    assert driver.main([str(path), '--dask', spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --dask') and err.count('\n') == 1
    with pytest.raises(StudyError):
        parse_dask_spec(spec)


def test_good_dask_specs():
    assert (parse_dask_spec('local:3').workers, parse_dask_spec('local:3').gpus) == (3, False)
    assert (parse_dask_spec('gpus:8').workers, parse_dask_spec('gpus:8').gpus) == (8, True)
    assert parse_dask_spec('tcp://10.0.0.1:8786').address == 'tcp://10.0.0.1:8786'


FAKE = """import json, sys
from pathlib import Path
args = dict(a.split('=', 1) for a in sys.argv[1:] if '=' in a)
print('fake training', args['run_name'])
if args['run_name'] == 'f-teacher':
    sys.exit('simulated crash')
if args['run_name'] != 'f-lost':
    Path(args['run_dir'], 'summary.json').write_text(json.dumps({'finished': True}))
"""


def test_a_failed_run_blocks_its_students_and_the_others_go_on(tmp_path, caplog):
    """Runs replaced by a fast fake launcher: teacher crashes, lost exits 0 without a finished record."""
    (tmp_path / 'fake.py').write_text(FAKE)
    path = tmp_path / 'f.yaml'
    path.write_text(f"""
name: f
runs_root: {tmp_path / 'runs'}
baseline: teacher
runs:
  - {{name: teacher, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml}}
  - {{name: teacher2, recipe: yamls/fashion_mnist/teacher_lr0.4.yaml}}
  - {{name: lost, recipe: yamls/fashion_mnist/resnet8.yaml}}
  - {{name: student, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher]}}
  - {{name: student2, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher2]}}
""")
    launcher = f'{sys.executable} {tmp_path / "fake.py"}'
    assert driver.main([str(path), '--dask', 'local:2', '--launcher', launcher]) == 1
    runs = json.loads((tmp_path / 'runs' / 'dask_runs.json').read_text())['sessions'][0]['runs']
    status = {e['name']: (e['status'], e['returncode']) for e in runs}
    assert status == {'teacher': ('failed', 1), 'teacher2': ('trained', 0), 'lost': ('failed', 0),
                      'student2': ('trained', 0)}  # student: blocked, never submitted
    assert 'simulated crash' in (tmp_path / 'runs' / 'teacher' / 'driver.log').read_text()
    errors = '\n'.join(r.getMessage() for r in caplog.records if r.levelname == 'ERROR')
    assert 'teacher: failed' in errors and 'simulated crash' in errors  # the tail of its log
    assert 'student: skipped, its teacher(s) teacher did not finish' in errors
    assert 'lost: failed' in errors and 'do not say finished' in errors
