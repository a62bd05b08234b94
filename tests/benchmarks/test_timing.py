"""The measurement scripts' plumbing: the order of interleaved rounds and what is kept of them (fake functions on a
fake clock), medians and ratios by hand, the command and machine in a result's header, the files written, and that
none of it (nor the scripts that run on GPU images without Composer) imports Composer."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.measurements.timing import command, header, interleave, markdown, medians, ratios, typed_command, write

REPO = Path(__file__).resolve().parents[2]


class Clock:
    """A clock that only moves when a fake function says how long it took."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fakes(clock: Clock, calls: list[str], costs: dict[str, list[float]]) -> dict[str, object]:
    """Functions that log their call and advance the clock by their next cost."""
    def fn(name: str):
        def call() -> None:
            calls.append(name)
            clock.t += costs[name].pop(0)
        return call
    return {name: fn(name) for name in costs}


def test_rounds_interleave_in_order_and_drop_the_warm_up():
    clock, calls = Clock(), []
    fns = fakes(clock, calls, {'a': [9.0, 1.0, 2.0], 'b': [8.0, 3.0, 4.0]})
    times = interleave(fns, rounds=2, clock=clock)
    assert calls == ['a', 'b'] * 3  # one warm-up round, then two counted ones, always a before b
    assert times == {'a': [1.0, 2.0], 'b': [3.0, 4.0]}  # the warm-up's 9 and 8 are not kept


def test_alternate_reverses_every_other_round_counting_the_warm_up():
    clock, calls = Clock(), []
    fns = fakes(clock, calls, {'a': [1.0] * 4, 'b': [2.0] * 4})
    times = interleave(fns, rounds=3, warmup=1, alternate=True, clock=clock)
    assert calls == ['a', 'b', 'b', 'a', 'a', 'b', 'b', 'a']
    assert times == {'a': [1.0] * 3, 'b': [2.0] * 3}


def test_measure_replaces_the_wall_clock_and_warmup_zero_keeps_every_round():
    values = iter([[1, 2], [3], [4, 5], [6]])
    times = interleave({'x': lambda: next(values), 'y': lambda: next(values)}, rounds=2, warmup=0,
                       measure=lambda fn: fn())
    assert times == {'x': [[1, 2], [4, 5]], 'y': [[3], [6]]}


def test_medians_and_ratios_by_hand():
    med = medians({'ce': [3.0, 1.0, 2.0], 'kd': [4.0, 1.0, 6.0, 2.0]})
    assert med == {'ce': 2.0, 'kd': 3.0}  # odd count: the middle one; even: the mean of the two middle ones
    assert ratios(med, 'ce') == {'ce': 1.0, 'kd': 1.5}
    assert ratios(med, 'kd') == pytest.approx({'ce': 2 / 3, 'kd': 1.0})


def test_command_from_args_and_as_typed():
    args = argparse.Namespace(num_data=50_000, seconds=15.0, rate=0.25, out='x.md')
    assert command('crd', args, 'num_data', 'seconds', 'rate') == \
        'python -m benchmarks.measurements.crd --num-data 50000 --seconds 15 --rate 0.25'  # dashes, floats as %g, no --out
    assert typed_command('default_job', ['--out', 'r.md', 'seed=1']) == \
        '.venv/bin/python -m benchmarks.measurements.default_job --out r.md seed=1'


def test_header_names_the_command_and_the_machine():
    machine = {'cpu': 'AMD EPYC', 'cores': 2, 'torch_threads': 1, 'device': 'CPU only (no GPU)',
               'torch': '2.7.0', 'composer': '0.32.1', 'date': '2026-11-26 18:21 UTC'}
    assert header('Title', 'python -m x', machine, note=' One run at a time.') == [
        '# Title', '', 'Command: `python -m x`', '',
        'Machine: AMD EPYC (2 cores), CPU only (no GPU), torch 2.7.0, Composer 0.32.1; 2026-11-26 18:21 UTC. '
        'One run at a time.', '']
    assert header('T', 'c', machine, threads=True)[4].startswith('Machine: AMD EPYC (2 cores, 1 torch threads), ')


def test_markdown_with_a_json_block_and_write(tmp_path, capsys):
    assert markdown(['# T', '', 'text']) == '# T\n\ntext\n'
    assert markdown(['text'], {'a': [1]}) == 'text\n\n```json\n{\n "a": [\n  1\n ]\n}\n```\n'
    write(str(tmp_path / 'out'), 'result', {'x': 1.5}, '# R\n')
    assert json.loads((tmp_path / 'out' / 'result.json').read_text()) == {'x': 1.5}
    assert (tmp_path / 'out' / 'result.md').read_text() == '# R\n' and capsys.readouterr().out == '# R\n'


def test_the_gpu_image_scripts_import_without_composer():
    code = ('import sys; import benchmarks.measurements.crd_step_overhead, benchmarks.measurements.energy_check, benchmarks.measurements.blockwise_gpu_check, '
            "benchmarks.core.machine; from benchmarks.measurements.timing import bare_package, load; "
            "bare_package('algorithms.distillation'); import algorithms.blockwise; "
            "assert load('algorithms/distillation/losses.py').kl_divergence_loss; "
            "assert 'composer' not in sys.modules, 'composer was imported'")
    subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True)
