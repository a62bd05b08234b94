"""Running independent tasks on workers under one of the seed's policies, measuring the makespan.

* ``serial``: in this process, in the given order (no Dask), with ``torch_threads`` threads like one worker.
* ``round_robin``: worker ``r`` of ``n`` runs ``tasks[r::n]`` in order (the author's code), pinned.
* ``bin_packing``: worst-fit decreasing over task times measured in an earlier run (``times``), pinned.
* ``work_stealing``: every task submitted unpinned (longest known first, else in order); Dask's scheduler places
  them and idle workers steal queued work.

Pinned tasks go to local worker ``i`` through its resource ``slot<i>`` (see :mod:`.cluster`), so a worker killed
mid-task is restarted by its nanny and runs its tasks again; unpinned tasks of a dead worker go to any other. On an
external cluster without ``slot<i>`` resources, tasks are pinned to worker addresses. The task function must be
importable by the workers (a module-level function), and should make its result durable itself (a file), so that a
rerun skips what finished. Adding workers changes nothing in a task: only where and when it runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

from .schedule import bin_packing, round_robin

__all__ = ['POLICIES', 'ScheduleSettings', 'RunOutcome', 'run_tasks']

log = logging.getLogger(__name__)
T = TypeVar('T')
POLICIES = ('serial', 'round_robin', 'bin_packing', 'work_stealing')


@dataclass
class ScheduleSettings:
    """Where tasks run: ``policy`` (see the module docstring), ``workers`` (local cluster size), ``address`` (an
    existing scheduler instead), ``gpus`` (one local worker per CUDA device), ``times`` (task key -> seconds, for
    ``bin_packing``; also orders ``work_stealing``'s queue), ``torch_threads`` per worker."""

    policy: str = 'work_stealing'
    workers: int = 1
    address: Optional[str] = None
    gpus: bool = False
    times: Optional[dict[str, float]] = None
    torch_threads: Optional[int] = 1

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f'policy: expected one of {", ".join(POLICIES)}, got {self.policy!r}')
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f'workers: expected an integer >= 1, got {self.workers!r}')
        if self.policy == 'serial' and self.workers != 1:
            raise ValueError(f"policy 'serial' runs in this process: workers must be 1, got {self.workers}")


@dataclass
class RunOutcome:
    """Results by task key, and timings: ``makespan_s`` from the first submission to the last result (cluster
    start-up excluded, given as ``startup_s``); ``finished_at`` is each task's completion time within the makespan."""

    results: dict[str, Any]
    makespan_s: float
    startup_s: float
    assignment: Optional[list[list[str]]] = None
    finished_at: dict[str, float] = field(default_factory=dict)


def _static_assignment(keys: list[str], settings: ScheduleSettings, n: int) -> list[list[str]]:
    if settings.policy == 'round_robin':
        return round_robin(keys, n)
    missing = [k for k in keys if k not in (settings.times or {})]
    if missing:
        raise ValueError(f'bin_packing needs the time of every task from an earlier run; missing: {missing[:5]}')
    return bin_packing({k: settings.times[k] for k in keys}, n)  # type: ignore[index]


def run_tasks(tasks: Sequence[T], fn: Callable[[T], Any], key: Callable[[T], str],
              settings: ScheduleSettings) -> RunOutcome:
    """Run ``fn(task)`` for every task under ``settings``; returns the results by ``key(task)`` and the timings."""
    by_key = {key(t): t for t in tasks}
    if len(by_key) != len(tasks):
        raise ValueError('task keys must be unique')
    keys = list(by_key)
    if settings.policy == 'bin_packing':
        _static_assignment(keys, settings, 1)  # every time known: fail before a cluster starts
    if settings.policy == 'serial':
        import torch

        threads = torch.get_num_threads()
        if settings.torch_threads is not None:
            torch.set_num_threads(settings.torch_threads)  # as one worker would run them
        start = time.perf_counter()
        results, finished = {}, {}
        try:
            for k in keys:
                results[k] = fn(by_key[k])
                finished[k] = time.perf_counter() - start
        finally:
            torch.set_num_threads(threads)
        return RunOutcome(results, time.perf_counter() - start, 0.0, [keys], finished)
    from distributed import as_completed

    from .cluster import open_client, worker_names

    t0 = time.perf_counter()
    with open_client(settings.workers, settings.address, settings.torch_threads, settings.gpus) as client:
        startup = time.perf_counter() - t0
        workers = client.scheduler_info()['workers']
        n = len(workers)
        start = time.perf_counter()
        futures = {}
        assignment = None
        if settings.policy == 'work_stealing':
            times = settings.times or {}
            queue = sorted(keys, key=lambda k: -times[k]) if all(k in times for k in keys) else keys
            for i, k in enumerate(queue):
                futures[client.submit(fn, by_key[k], key=f'task-{k}', priority=len(queue) - i, pure=False)] = k
        else:
            assignment = _static_assignment(keys, settings, n)
            slots = {r for w in workers.values() for r in (w.get('resources') or {}) if r.startswith('slot')}
            addresses = worker_names(client)
            for r, mine in enumerate(assignment):
                pin = ({'resources': {f'slot{r}': 1}} if f'slot{r}' in slots else
                       {'workers': [addresses[r]], 'allow_other_workers': False})
                for j, k in enumerate(mine):
                    futures[client.submit(fn, by_key[k], key=f'task-{k}', priority=len(mine) - j, pure=False,
                                          **pin)] = k
        results, finished = {}, {}
        for future in as_completed(list(futures)):
            k = futures[future]
            results[k] = future.result()
            finished[k] = time.perf_counter() - start
            log.info('task %s finished (%d/%d) at %.1f s', k, len(results), len(keys), finished[k])
        return RunOutcome(results, time.perf_counter() - start, startup, assignment, finished)
