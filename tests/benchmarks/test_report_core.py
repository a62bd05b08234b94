"""The shared core of the study reports and drivers: markdown tables from frames, intervals pivoted from per-seed rows
(against hand-computed t-intervals), the report and study command lines, the header and machine line, copying
records."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from benchmarks.core.markdown import frame_table, interval_cell, interval_pivot, missing, table
from benchmarks.core.records import copy_records
from benchmarks.core.reporting import ReportError, header, machine_line, report_main, study_main, write_once
from benchmarks.study.spec import load_study


def test_table_and_alignment():
    assert table(['a', 'b'], [[1, 'x']]) == ['| a | b |', '|---|---|', '| 1 | x |']
    assert table(['a', 'b', 'c'], [], 'lr')[1] == '|---|---:|---|'


def test_frame_table_writes_the_index_labels_and_missing_cells_empty():
    frame = pd.DataFrame({0.3: [1.0, None], 0.9: [2.5, 3.0]}, index=pd.Index(['mag', 'rand'], name='method'))
    assert frame_table(frame, lambda v: f'{v:.1f}', columns=lambda s: f'{100 * s:.0f}%') == [
        '| method | 30% | 90% |', '|---|---|---|', '| mag | 1.0 | 2.5 |', '| rand |  | 3.0 |']
    assert frame_table(frame, index='how')[0] == '| how | 0.3 | 0.9 |'
    assert missing(None) and missing(float('nan')) and not missing(0.0)


def test_interval_pivot_against_hand_computed_t_intervals():
    rows = [('mag', 0.3, 0, 0.90), ('mag', 0.3, 1, 0.92),          # two seeds
            ('mag', 0.9, 0, 0.80), ('mag', 0.9, 1, 0.85), ('mag', 0.9, 2, 0.90),
            ('rand', 0.9, 0, 0.70), ('rand', 0.3, 0, None), ('rand', 0.3, 1, float('nan')),
            ('other', 0.3, 0, 0.5)]
    frame = pd.DataFrame(rows, columns=['method', 'sparsity', 'seed', 'accuracy'])
    pivot = interval_pivot(frame, 'method', 'sparsity', 'accuracy', order=['rand', 'mag', 'absent'])
    assert list(pivot.index) == ['rand', 'mag'] and list(pivot.columns) == [0.3, 0.9]  # order kept, absent skipped
    two = pivot.loc['mag', 0.3]  # 0.90, 0.92: mean 0.91, sd 0.01 * sqrt(2), t(0.975, 1) = 12.706
    half = 12.706 * (0.01 * math.sqrt(2)) / math.sqrt(2)
    assert two.n == 2 and two.mean == pytest.approx(0.91)
    assert (two.lo, two.hi) == (pytest.approx(0.91 - half), pytest.approx(0.91 + half))
    three = pivot.loc['mag', 0.9]  # 0.80, 0.85, 0.90: mean 0.85, sd 0.05, t(0.975, 2) = 4.303
    assert (three.lo, three.hi) == (pytest.approx(0.85 - 4.303 * 0.05 / math.sqrt(3)),
                                    pytest.approx(0.85 + 4.303 * 0.05 / math.sqrt(3)))
    assert pivot.loc['rand', 0.3] is None  # only missing values: an empty cell
    assert pivot.loc['rand', 0.9].n == 1 and pivot.loc['rand', 0.9].lo is None
    assert frame_table(pivot, interval_cell(2, 100), 'method', lambda s: f'{100 * s:.0f}%') == [
        '| method | 30% | 90% |', '|---|---|---|', '| rand |  | 70.00 (1 run) |',
        '| mag | 91.00 [78.29, 103.71] | 85.00 [72.58, 97.42] |']


def test_report_main_writes_the_report_and_errors_in_one_line(tmp_path, capsys):
    root, out = tmp_path / 'records', tmp_path / 'out' / 'nested'
    root.mkdir()
    (root / 'analysis.json').write_text('{}')
    seen = []

    def build(r, o):
        seen.append((r, o))
        return ['# title', '', 'body']

    assert report_main('benchmarks.x', 'doc', build, [str(root), '--out', str(out)]) == 0
    assert (out / 'report.md').read_text() == '# title\n\nbody\n' and seen == [(root, out)]

    assert report_main('benchmarks.x', 'doc', build, [str(tmp_path / 'none'), '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: no such folder: {tmp_path / 'none'}\n"

    def failing(r, o):
        raise ReportError(f'no analysis.json under {r}')

    (out / 'report.md').unlink()
    assert report_main('benchmarks.x', 'doc', failing, [str(root), '--out', str(out)]) == 2
    assert capsys.readouterr().err == f'error: no analysis.json under {root}\n'
    assert not (out / 'report.md').exists()

    fresh = tmp_path / 'fresh' / 'nested'  # a failed report leaves no folder it made
    assert report_main('benchmarks.x', 'doc', failing, [str(root), '--out', str(fresh)]) == 2
    assert capsys.readouterr().err == f'error: no analysis.json under {root}\n'
    assert not (tmp_path / 'fresh').exists()
    (tmp_path / 'empty').mkdir()
    assert report_main('benchmarks.x', 'doc', build, [str(tmp_path / 'empty'), '--out', str(fresh)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'empty'}: empty folder, no records to report on\n"
    assert not (tmp_path / 'fresh').exists() and len(seen) == 1  # build never called


def test_report_main_passes_the_reports_own_options(tmp_path):
    (tmp_path / 'r').mkdir()
    (tmp_path / 'r' / 'x.json').write_text('{}')

    def build(r, o, args):
        return [f'# {args.study}']

    def options(p):
        p.add_argument('--study', default='s.yaml')

    argv = [str(tmp_path / 'r'), '--study', 'other.yaml', '--out', str(tmp_path / 'o')]
    assert report_main('benchmarks.x', 'doc', build, argv, options=options) == 0
    assert (tmp_path / 'o' / 'report.md').read_text() == '# other.yaml\n'


def test_header_and_machine_line(tmp_path):
    sessions = [{'cpu': 'Old CPU', 'cores': 4, 'torch': '2.6', 'date': 'yesterday'},
                {'cpu': 'AMD EPYC', 'cores': 2, 'device': 'CPU only (no GPU)', 'torch': '2.7.0', 'date': 'today'}]
    assert machine_line([]) == 'Machine: not recorded.'
    assert machine_line(sessions) == 'Machine: AMD EPYC, 2 cores, CPU only (no GPU), torch 2.7.0, today.'
    assert machine_line(sessions, last=False).startswith('Machine: Old CPU, 4 cores, CPU, torch 2.6, yesterday; AMD')
    (tmp_path / 'machine.json').write_text(json.dumps({'sessions': sessions}))
    assert header('T', 'python -m r a --out b', '`python -m s x.yaml`', tmp_path) == [
        '# T', '', 'Regenerate from the committed records: `python -m r a --out b`; rerun the study: '
        '`python -m s x.yaml`.', '', 'Machine: AMD EPYC, 2 cores, CPU only (no GPU), torch 2.7.0, today.', '']
    assert header('T', 'cmd') == ['# T', '', 'Regenerate from the committed records: `cmd`.', '']
    assert header('T', 'cmd', sessions=sessions)[-2:] == [machine_line(sessions), '']  # machines from elsewhere


def test_copy_records_copies_the_named_files_never_checkpoints(tmp_path):
    root, dest = tmp_path / 'runs', tmp_path / 'copy'
    for rel in ('a/seed0/analysis.json', 'a/seed0/checkpoints/analysis.json', 'a/seed0/config.yaml',
                'records/m-seed0.json', 'machine.json'):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    assert copy_records(root, dest, ('analysis.json', 'records/*.json')) == 2
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob('*') if p.is_file()) == [
        'a/seed0/analysis.json', 'records/m-seed0.json']
    assert (dest / 'a/seed0/analysis.json').read_text() == 'a/seed0/analysis.json'
    assert copy_records(root, dest) == 2  # the default: the small record files (config.yaml, machine.json)
    assert copy_records(dest, dest) == 0  # onto itself: nothing


def test_study_main_runs_the_loaded_study_and_errors_in_one_line(tmp_path, capsys):
    path = tmp_path / 'study.yaml'
    path.write_text(yaml.safe_dump({'name': 's', 'runs': []}))
    calls = []

    def run(study, args):
        calls.append((study.name, study.runs, args.only))
        return 3

    only = lambda p: p.add_argument('--only', nargs='+')  # noqa: E731
    assert study_main('benchmarks.x', 'doc', load_study, run, [str(path), '--only', 'a'], only) == 3
    assert calls == [('s', [], ['a'])]
    path.write_text(yaml.safe_dump({'name': 's', 'runs': [], 'typo': 1}))
    assert study_main('benchmarks.x', 'doc', load_study, run, [str(path)], only) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and "unknown key 'typo'" in err and err.count('\n') == 1
    assert len(calls) == 1


def test_write_once_keeps_an_existing_record(tmp_path):
    path = tmp_path / 'analysis.json'
    assert write_once(path, lambda: {'a': 1}) is True
    assert write_once(path, lambda: pytest.fail('made again')) is False
    assert json.loads(path.read_text()) == {'a': 1}


def test_interval_pivot_of_no_values_is_an_empty_table():
    empty = pd.DataFrame({'method': ['a'], 'sparsity': [0.5], 'accuracy': [None]})
    assert frame_table(interval_pivot(empty, 'method', 'sparsity', 'accuracy')) == ['| method |', '|---|']
    none = pd.DataFrame({'method': [], 'sparsity': [], 'accuracy': []})
    assert interval_pivot(none, 'method', 'sparsity', 'accuracy').empty
