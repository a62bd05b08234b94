"""Where a block task's time goes: the phase clock against a fake clock, usage differences by hand, the phases of a
real ``fit_block`` adding up to its time, and the worker settings a local cluster starts with."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from algorithms.blockwise import LocalTrainingSettings, fit_block
from algorithms.blockwise.cluster import open_client
from algorithms.blockwise.phases import PhaseClock, usage, usage_delta
from tests.helpers import blockwise_helpers as bh


def test_phase_clock_charges_each_lap_to_its_phase(monkeypatch):
    ticks = iter([10.0, 10.5, 12.0, 12.25, 13.0])
    monkeypatch.setattr('algorithms.blockwise.phases.time.perf_counter', lambda: next(ticks))
    clock = PhaseClock()  # 10.0
    clock.lap('data')     # 0.5
    clock.lap('forward')  # 1.5
    clock.lap('data')     # 0.25
    clock.lap('check')    # 0.75
    assert clock.as_dict() == {'data': 0.75, 'forward': 1.5, 'check': 0.75}


def test_usage_delta_by_hand():
    before = {'wall_s': 1.0, 'thread': {'cpu_s': 2.0, 'minflt': 10, 'majflt': 0, 'nvcsw': 1, 'nivcsw': 3},
              'process': {'cpu_s': 5.0, 'minflt': 100, 'majflt': 1, 'nvcsw': 2, 'nivcsw': 4}}
    after = {'wall_s': 4.0, 'thread': {'cpu_s': 4.5, 'minflt': 30, 'majflt': 0, 'nvcsw': 1, 'nivcsw': 8},
             'process': {'cpu_s': 8.5, 'minflt': 150, 'majflt': 1, 'nvcsw': 6, 'nivcsw': 9}}
    d = usage_delta(before, after)
    assert d['wall_s'] == 3.0 and d['thread_cpu_s'] == 2.5 and d['thread_nivcsw'] == 5 and d['process_minflt'] == 50
    assert d['other_threads_cpu_s'] == 1.0  # the process's 3.5 CPU seconds less the thread's 2.5


def test_usage_sees_this_thread_compute():
    before = usage()
    x = torch.randn(300, 300)
    for _ in range(200):
        x = torch.tanh(x @ x / 300)
    d = usage_delta(before, usage())
    assert d['process_cpu_s'] > 0.01 and d['wall_s'] > 0
    if 'thread_cpu_s' in d:  # Linux: the work was done by this thread
        assert 0 < d['thread_cpu_s'] <= d['process_cpu_s'] + 1e-3


def test_fit_block_phases_add_up_to_its_time():
    torch.manual_seed(0)
    block = nn.Linear(64, 64)
    data = [(torch.randn(32, 64),) for _ in range(20)]
    settings = LocalTrainingSettings(epochs=2, check_every=1)
    result = fit_block('l', block, lambda: data, lambda b: (b[0], b[0].tanh()), settings, lambda _: 50.0, 50.0)
    phases = result.phases
    assert {'data', 'prefix', 'forward', 'backward', 'optimizer', 'check'} <= set(phases)
    assert all(v >= 0 for v in phases.values())
    assert sum(phases.values()) == pytest.approx(result.seconds, rel=0.02, abs=5e-3)
    no_check = fit_block('l', nn.Linear(64, 64), lambda: data, lambda b: (b[0], b[0]), settings)
    assert 'check' not in no_check.phases


def test_local_workers_run_without_dask_samplers_and_with_chosen_allocator_settings():
    """The default local cluster switches Dask's profiler off and starts workers with one malloc arena;
    ``quiet=False, malloc=False`` keeps Dask's defaults and the environment's allocator; ``pin`` pins slot 0."""
    with open_client(2) as client:
        seen = sorted(client.run(bh.worker_settings).values(), key=lambda s: s['name'])
    assert [s['name'] for s in seen] == ['slot0', 'slot1'] and not any(s['profile'] for s in seen)
    assert all(s['arena_max'] == os.environ.get('MALLOC_ARENA_MAX', '1') for s in seen)
    with open_client(1, quiet=False, malloc=False, pin=True) as client:
        (seen,) = client.run(bh.worker_settings).values()
    assert seen['profile'] is True and seen['arena_max'] == os.environ.get('MALLOC_ARENA_MAX')
    assert seen['cores'] == [sorted(os.sched_getaffinity(0))[0]]  # slot0 pinned to the first core
