"""Where a block task's time goes: wall-clock seconds per phase, and what the operating system saw of the thread.

:class:`PhaseClock` adds the time since its last lap to the phase named (``data``, ``prefix``, ``forward``,
``backward``, ``optimizer``, ``check``, ...); laps cost a ``perf_counter`` call each. On CUDA the laps are host time:
kernels run asynchronously and are counted where the host waits for them (``loss.item()``), so the split between
GPU phases is only indicative there; on CPU it is exact.

:func:`usage` snapshots ``getrusage`` for the calling thread and for its process; the difference of two snapshots
(:func:`usage_delta`) tells a thread that waits for a core (its CPU time stays, its wall time grows, it is switched
out involuntarily) from one whose work got slower (its CPU time grows: caches, memory bandwidth, a sibling
hyper-thread), and how much CPU the process's other threads (a Dask worker's event loop) used meanwhile.
"""

from __future__ import annotations

import time
from collections import defaultdict

try:
    import resource
except ImportError:  # Windows: no getrusage; usage() then reports the wall clock only
    resource = None  # type: ignore[assignment]

__all__ = ['PhaseClock', 'usage', 'usage_delta']

_THREAD = getattr(resource, 'RUSAGE_THREAD', None)  # Linux; elsewhere only the process is reported


class PhaseClock:
    """Wall seconds by phase: ``lap(name)`` charges the time since the previous lap (or creation) to ``name``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] += now - self._last
        self._last = now

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}


def _snapshot(who: int) -> dict[str, float]:
    r = resource.getrusage(who)
    return {'cpu_s': r.ru_utime + r.ru_stime, 'minflt': r.ru_minflt, 'majflt': r.ru_majflt, 'nvcsw': r.ru_nvcsw,
            'nivcsw': r.ru_nivcsw}


def usage() -> dict[str, dict[str, float]]:
    """``{'wall_s', 'thread': {...}, 'process': {...}}`` with CPU seconds, page faults (minor/major) and voluntary /
    involuntary context switches; ``thread`` is absent where the OS has no per-thread accounting, ``process`` too
    where it has no ``getrusage`` (Windows)."""
    out: dict = {'wall_s': time.perf_counter()}
    if resource is not None:
        out['process'] = _snapshot(resource.RUSAGE_SELF)
    if _THREAD is not None:
        out['thread'] = _snapshot(_THREAD)
    return out


def usage_delta(before: dict, after: dict) -> dict[str, float]:
    """What happened between two :func:`usage` snapshots, flat: ``wall_s``, ``thread_cpu_s``, ``thread_nivcsw``, ...,
    ``process_cpu_s``, ... and ``other_threads_cpu_s`` (the process's CPU time not spent by this thread)."""
    out = {'wall_s': round(after['wall_s'] - before['wall_s'], 4)}
    for scope in ('thread', 'process'):
        if scope in before and scope in after:
            for key, value in after[scope].items():
                out[f'{scope}_{key}'] = round(value - before[scope][key], 4)
    if 'thread_cpu_s' in out:
        out['other_threads_cpu_s'] = round(out['process_cpu_s'] - out['thread_cpu_s'], 4)
    return out
