"""Assigning independent tasks (one per replaceable layer in parallel blockwise distillation) to workers, and the
makespan each assignment gives: the seed's chapter IV compares round robin, bin packing and Dask's work stealing.

* :func:`round_robin`: worker ``r`` of ``n`` takes ``tasks[r::n]`` (the author's code), blind to task times.
* :func:`bin_packing`: worst-fit decreasing over known task times (measured in an earlier run): longest task first,
  each to the worker with the least work so far (ties: the lowest worker index).
* :func:`list_schedule`: dynamic assignment, the behaviour work stealing converges to: whenever a worker is free it
  takes the next task of the queue. With the queue in decreasing time order this is LPT, within 4/3 of the optimum.

:func:`makespan` measures an assignment; :func:`simulate` gives every policy's makespan for a list of task times and
worker counts (the study's "simulated for 4, 8 and 32 workers"). What bounds a schedule when tasks do not split
evenly: :func:`best_partition` (the best static assignment, found exhaustively for small cases) and
:func:`split_makespan` (every task cut into ``parts`` pieces that must run one after another, as a task resumed at
one of its checks would, list-scheduled longest remaining chain first).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from typing import Optional, TypeVar

__all__ = ['round_robin', 'bin_packing', 'list_schedule', 'makespan', 'simulate', 'lower_bound', 'best_partition',
           'split_makespan']

T = TypeVar('T')


def _check(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f'the number of workers must be an integer >= 1, got {n!r}')


def round_robin(tasks: Sequence[T], n: int) -> list[list[T]]:
    """``[tasks[r::n] for r in range(n)]``."""
    _check(n)
    return [list(tasks[r::n]) for r in range(n)]


def bin_packing(times: dict[T, float], n: int) -> list[list[T]]:
    """Worst-fit decreasing: tasks by decreasing time (ties: the order of ``times``), each to the least-loaded
    worker (ties: the lowest index). Returns each worker's tasks in the order it runs them.

    With the stored times this is the same assignment as :func:`list_schedule` over the decreasing queue (the
    least-loaded worker is the one free first); the two differ in practice because bin packing fixes the
    assignment in advance from an earlier run's times, while work stealing reacts to the times of this run."""
    return list_schedule(times, n, queue=sorted(times, key=lambda t: -times[t]))


def list_schedule(times: dict[T, float], n: int, queue: Optional[Sequence[T]] = None) -> list[list[T]]:
    """Dynamic assignment: each free worker takes the next task of ``queue`` (default: decreasing time); when
    several are free at once, the lowest index first. Returns each worker's tasks in order."""
    _check(n)
    queue = list(queue) if queue is not None else sorted(times, key=lambda t: -times[t])
    free = [(0.0, r) for r in range(n)]  # (time the worker becomes free, index)
    bins: list[list[T]] = [[] for _ in range(n)]
    for task in queue:
        at, r = heapq.heappop(free)
        bins[r].append(task)
        heapq.heappush(free, (at + times[task], r))
    return bins


def makespan(assignment: Sequence[Sequence[T]], times: dict[T, float]) -> float:
    """The time the busiest worker needs: ``max over workers of the sum of its tasks' times``."""
    return max((sum(times[t] for t in tasks) for tasks in assignment), default=0.0)


def lower_bound(times: dict[T, float], n: int) -> float:
    """No schedule beats ``max(total / n, longest task)``."""
    _check(n)
    return max(sum(times.values()) / n, max(times.values(), default=0.0))


def simulate(times: dict[T, float], workers: Sequence[int]) -> list[dict[str, float]]:
    """Per worker count: the makespan of round robin (tasks in the given order), bin packing and work stealing
    (list scheduling, decreasing order), the lower bound, and each policy's speed-up over one worker."""
    serial = sum(times.values())
    rows = []
    for n in workers:
        row = {'workers': n, 'lower_bound': lower_bound(times, n),
               'round_robin': makespan(round_robin(list(times), n), times),
               'bin_packing': makespan(bin_packing(times, n), times),
               'work_stealing': makespan(list_schedule(times, n), times)}
        for policy in ('round_robin', 'bin_packing', 'work_stealing'):
            row[f'{policy}_speedup'] = serial / row[policy] if row[policy] > 0 else float('nan')
        rows.append(row)
    return rows


def best_partition(times: dict[T, float], n: int, limit: int = 1_000_000) -> float:
    """The smallest makespan of any assignment of whole tasks to ``n`` workers: exhaustive over the ``n ** tasks``
    assignments up to ``limit`` of them (the first task on worker 0), else bin packing's (an upper bound)."""
    _check(n)
    keys = list(times)
    if not keys:
        return 0.0
    if n ** (len(keys) - 1) > limit:
        return makespan(bin_packing(times, n), times)
    best = float('inf')
    for rest in itertools.product(range(n), repeat=len(keys) - 1):
        loads = [0.0] * n
        for k, w in zip(keys, (0, *rest)):
            loads[w] += times[k]
        best = min(best, max(loads))
    return best


def split_makespan(times: dict[T, float], n: int, parts: int = 2) -> float:
    """The makespan when every task is cut into ``parts`` equal pieces that run one after another (on any worker):
    whenever a worker is free it starts the piece that can start soonest, the task with the most work left first."""
    _check(n)
    left = {k: parts for k in times}
    ready = {k: 0.0 for k in times}
    free = [0.0] * n
    while any(left.values()):
        w = min(range(n), key=free.__getitem__)
        start = min(max(free[w], ready[k]) for k in left if left[k])
        k = max((k for k in left if left[k] and max(free[w], ready[k]) == start), key=lambda k: left[k] * times[k])
        free[w] = ready[k] = start + times[k] / parts
        left[k] -= 1
    return max(free)
