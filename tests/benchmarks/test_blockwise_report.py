"""The blockwise study's runs (kind blockwise) and report, on hand-made records: speedup, efficiency, the goal
verdict, greenup, simulated makespans."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from benchmarks.blockwise.report import render
from benchmarks.study.engine import run_overrides
from benchmarks.study.spec import StudyError, load_study, stages

REPO = Path(__file__).resolve().parents[2]


def _run(workers: int, policy: str, makespan: float, times: dict[str, float], joules=None) -> dict:
    energy = {'cpu_util': {'available': True, 'mean_percent': 50.0 * workers},
              'gpu': ({'available': True, 'joules': joules} if joules else {'available': False, 'reason': 'no NVML'}),
              'cpu_package': {'available': False, 'reason': 'no RAPL'}}
    return {
        'models': {'teacher': {'test_accuracy': 90.0, 'params': 1000, 'macs': 10000},
                   'student': {'test_accuracy': 89.0, 'params': 400, 'macs': 2500}},
        'layers': [{'layer': k, 'in_shape': [8, 4, 4], 'out_shape': [8, 4, 4], 'kept': True, 'reason': 'kept',
                    'params_before': 10, 'params_after': 4, 'macs_before': 100, 'macs_after': 25, 'seconds': t}
                   for k, t in times.items()],
        'schedule': {'policy': policy, 'workers': workers, 'makespan_s': makespan, 'startup_s': 3.0},
        'tasks': {k: {'seconds': t} for k, t in times.items()}, 'energy': energy,
        'blocks_max_abs_difference_vs_w1': 0.0,
    }


def test_report_numbers_by_hand():
    times = {'a': 40.0, 'b': 30.0, 'c': 20.0, 'd': 10.0}  # serial 100 s
    records = {'runs': {'t-w1-r0': _run(1, 'work_stealing', 100.0, times, joules=1000.0),
                        't-ws2-r0': _run(2, 'work_stealing', 52.0, times, joules=800.0),
                        't-rr2-r0': _run(2, 'round_robin', 60.0, times)},
               'machine': {'sessions': [{'cpu': 'Test CPU', 'cores': 2, 'torch': '2.7', 'date': 'today'}]}}
    text = '\n'.join(render(records, 'cmd'))
    assert 'Test CPU, 2 cores' in text
    ws = next(l for l in text.splitlines() if l.startswith('| work_stealing (ws2-r0)'))
    cells = [c.strip() for c in ws.split('|')[1:-1]]
    assert cells[1:7] == ['2', '52.0', '3.0', '1.92', '0.96', 'met']  # 100/52, /2
    assert cells[7] == '50.0'  # lower bound max(100/2, 40)
    assert cells[10:] == ['100.0', '1.00', '0.96']  # same task times as 1 worker; busy 100 / (2 x 52)
    rr = next(l for l in text.splitlines() if l.startswith('| round_robin (rr2-r0)'))
    assert '| 1.67 | 0.83 | not met |' in rr
    # greenup = E_serial / E_parallel = 1000/800; powerup = speedup / greenup = 1.923 / 1.25
    assert 'ws2-r0: greenup 1.25, powerup 1.54' in text
    sim = next(l for l in text.splitlines() if re.match(r'\| 2 \| 50\.0 \|', l))
    # round robin [a, c] [b, d] -> 60; bin packing / work stealing (LPT) [a, d] [b, c] -> 50
    assert sim == '| 2 | 50.0 | 60.0 (1.67x) | 50.0 (2.00x) | 50.0 (2.00x) |'
    assert '(-60.0% params, -75.0% MACs)' in text


def test_repeats_give_speedup_and_efficiency_intervals_paired_by_repeat():
    """Each repeat's speedup is against the 1-worker run of the same repeat; the summary is their geometric mean
    with the log-scale t-interval (by hand: speedups 100/52 and 110/55, efficiencies 0.9615 and 1.0)."""
    import math

    times = {'a': 40.0, 'b': 30.0, 'c': 20.0, 'd': 10.0}
    w1r1 = _run(1, 'work_stealing', 110.0, times)
    del w1r1['models']['student']  # only the first 1-worker run is fine-tuned: the report's models come from it
    records = {'runs': {'t-w1-r0': _run(1, 'work_stealing', 100.0, times), 't-w1-r1': w1r1,
                        't-ws2-r0': _run(2, 'work_stealing', 52.0, times),
                        't-ws2-r1': _run(2, 'work_stealing', 55.0, times)},
               'machine': {'sessions': []}}
    text = '\n'.join(render(records, 'cmd'))
    logs = [math.log(100 / 52 / 2), math.log(110 / 55 / 2)]
    mean, half = sum(logs) / 2, 12.706 * abs(logs[0] - logs[1]) / math.sqrt(2) / math.sqrt(2)
    eff = f'{math.exp(mean):.2f} [{math.exp(mean - half):.2f}, {math.exp(mean + half):.2f}]'
    row = next(l for l in text.splitlines() if l.startswith('| work_stealing (ws2) | 2 | 2 |'))
    assert f'| {eff} | met on average |' in row  # the mean (0.98) is above 0.90, the interval reaches below
    assert '| work_stealing (ws2-r1) | 2 | 55.0 | 3.0 | 2.00 | 1.00 | met |' in text  # paired with w1-r1 (110 s)
    assert f'efficiency {eff} over 2 repeats, goal (>= 0.90) met on average' in text
    assert 'Student 89.00% vs teacher 90.00%' in text
    # what the task sizes allow: [a, d] [b, c] = 50 s, whole or halved
    assert 'best assignment of whole tasks takes 50.0 s (efficiency at most 1.00' in text


def test_study_plan_reuses_the_reference_teacher_and_times(tmp_path):
    spec = str(REPO / 'yamls/pipelines/fashion_mnist/blockwise_resnet8.yaml')
    study = tmp_path / 'study.yaml'
    study.write_text(yaml.safe_dump({
        'name': 's', 'runs_root': str(tmp_path / 'runs'), 'run_name': '{run}',
        'runs': [{'name': 'r8-bp2-r0', 'kind': 'blockwise', 'spec': spec, 'teachers': ['r8-w1-r0'],
                  'overrides': {'schedule.policy': 'bin_packing', 'schedule.workers': 2, 'fine_tune': None}},
                 {'name': 'r8-w1-r0', 'kind': 'blockwise', 'spec': spec,
                  'overrides': {'schedule.policy': 'work_stealing', 'schedule.workers': 1}}]}))
    s = load_study(study)
    runs = [r for stage in stages(s) for r in stage]
    assert [r.name for r in runs] == ['r8-w1-r0', 'r8-bp2-r0']
    over = dict(o.split('=', 1) for o in run_overrides(s, runs[1]))
    assert over['teacher.checkpoint'].endswith('runs/r8-w1-r0/teacher/checkpoints/latest-rank0.pt')
    assert over['schedule.times'].endswith('runs/r8-w1-r0/task_times.json') and over['fine_tune'] == 'null'
    assert 'teacher.checkpoint' not in dict(o.split('=', 1) for o in run_overrides(s, runs[0]))
    study.write_text(yaml.safe_dump({'name': 's', 'runs': [
        {'name': 'p', 'kind': 'prune_pipeline', 'spec': spec},
        {'name': 'b', 'kind': 'blockwise', 'spec': spec, 'teachers': ['p']}]}))
    with pytest.raises(StudyError, match="'p' is a prune_pipeline entry, not a train or blockwise run"):
        load_study(study)
