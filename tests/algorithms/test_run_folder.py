"""The run folder's protocol (``algorithms.callbacks.run_record``): finished runs, epoch checkpoints, machine.json."""

import json
import subprocess
import sys
from pathlib import Path

from algorithms.callbacks.run_record import (LATEST_CHECKPOINT, MACHINE_FILE, SUMMARY_FILE, epoch_checkpoints,
                                            machine_info, read_machines, record_machine, run_finished)

REPO = Path(__file__).resolve().parents[2]


def _summary(run: Path, text: str) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / SUMMARY_FILE).write_text(text)


def test_run_finished_reads_the_summary_and_optionally_the_checkpoint(tmp_path):
    run = tmp_path / 'run'
    assert not run_finished(run)  # no folder
    run.mkdir()
    assert not run_finished(run)  # no summary yet
    _summary(run, '{"finished": tr')  # torn: a run killed while writing it is resumed, not trusted
    assert not run_finished(run)
    _summary(run, '[1, 2]')
    assert not run_finished(run)
    _summary(run, json.dumps({'finished': False}))
    assert not run_finished(run)
    _summary(run, json.dumps({'finished': True, 'step': 4}))
    assert run_finished(run) and run_finished(str(run))
    assert not run_finished(run, need_checkpoint=True)  # finished, but its checkpoint is gone
    (run / LATEST_CHECKPOINT).parent.mkdir()
    (run / LATEST_CHECKPOINT).write_bytes(b'x')
    assert run_finished(run, need_checkpoint=True)


def test_epoch_checkpoints_in_training_order(tmp_path):
    folder = tmp_path / 'run' / 'checkpoints'
    assert epoch_checkpoints(tmp_path / 'run') == []
    folder.mkdir(parents=True)
    for name in ('ep10-ba100-rank0.pt', 'ep9-ba90-rank0.pt', 'ep0-ba5-rank0.pt', 'ep1-ba10-rank0.pt',
                 'ep1-ba9-rank0.pt', 'ep2-ba20-rank1.pt', 'notes.pt', 'ep3-ba30-rank0.pt.tmp'):
        (folder / name).write_bytes(b'')
    (folder / 'latest-rank0.pt').symlink_to('ep10-ba100-rank0.pt')
    (folder / 'ep11-ba110-rank0.pt').symlink_to('ep10-ba100-rank0.pt')  # a link is not a checkpoint of its own
    names = [p.name for p in epoch_checkpoints(tmp_path / 'run')]
    assert names == ['ep0-ba5-rank0.pt', 'ep1-ba9-rank0.pt', 'ep1-ba10-rank0.pt', 'ep9-ba90-rank0.pt',
                     'ep10-ba100-rank0.pt']
    assert all(isinstance(p, Path) and p.parent == folder for p in epoch_checkpoints(str(tmp_path / 'run')))


def test_machine_json_round_trip_and_appending(tmp_path):
    root = tmp_path / 'runs'
    assert read_machines(root) == []
    info = machine_info()
    assert {'cpu', 'cores', 'device', 'torch', 'composer', 'date'} <= set(info)
    record_machine(root, info, study='s1')
    record_machine(root, {**info, 'runs': ['a', 'b']})  # no study given: the file's is kept
    data = json.loads((root / MACHINE_FILE).read_text())
    assert data['study'] == 's1' and len(data['sessions']) == 2 and data['sessions'][1]['runs'] == ['a', 'b']
    assert read_machines(root) == data['sessions']
    record_machine(root, {'cpu': 'Other'}, study='s2')
    assert json.loads((root / MACHINE_FILE).read_text())['study'] == 's2' and len(read_machines(root)) == 3
    (root / MACHINE_FILE).write_text('{"sessions": [')  # torn: read as no sessions, then started afresh
    assert read_machines(root) == []
    record_machine(root, {'cpu': 'X'})
    assert json.loads((root / MACHINE_FILE).read_text()) == {'sessions': [{'cpu': 'X'}]}


def test_the_committed_machine_files_still_read():
    files = sorted((REPO / 'benchmarks' / 'results').rglob(MACHINE_FILE))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        assert read_machines(path.parent) == data['sessions'] and data['sessions'][0]['cpu']


def test_the_benchmarks_share_the_one_writer_and_reader(tmp_path):
    from benchmarks.core import machine
    from benchmarks.core.reporting import header, machine_line
    from benchmarks.measurements import default_job

    machine.record_session(tmp_path, 'study-x')
    assert json.loads((tmp_path / MACHINE_FILE).read_text())['study'] == 'study-x'
    sessions = read_machines(tmp_path)
    assert len(sessions) == 1 and machine_line(sessions) in header('t', 'c', root=tmp_path)  # the reports read it
    assert default_job.run_finished is run_finished


def test_the_machine_module_imports_without_composer():
    code = ("import sys; from algorithms.callbacks.machine import read_machines, record_machine; "
            "import benchmarks.core.machine; assert 'composer' not in sys.modules, 'composer was imported'")
    subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True)
