"""A Dask distributed client for independent tasks: a local cluster by default, or an existing scheduler.

    with open_client(workers=2) as client:                  # a local cluster: 2 worker processes, 1 thread each
        ...
    with open_client(address='tcp://10.0.0.1:8786') as client:  # a cluster spanning nodes (see below)
        ...

Local workers are separate processes (``processes=True``), one task at a time each (``threads_per_worker=1``), so a
worker killed mid-task takes only its own task down: the scheduler gives that task to another worker (Dask retries a
task whose worker died up to ``distributed.scheduler.allowed-failures`` times, 3 by default). ``torch_threads`` sets
``torch.set_num_threads`` in every worker (one core group per worker). With CUDA devices, give each worker its own
GPU (``gpus=True``: worker ``i`` sees only device ``i``). Local worker ``i`` is named and holds the resource
``slot<i>``, by which static schedules pin tasks to it (a worker restarted by its nanny keeps both).

**Spanning nodes**: start a scheduler on one node (``dask scheduler``) and on every node, from the repository root,
one worker per GPU or core group (``CUDA_VISIBLE_DEVICES=0 PYTHONPATH=. dask worker tcp://HOST:8786 --nthreads 1
--nworkers 1 --resources slot<i>=1``, numbering the workers 0, 1, ... across nodes), then pass
``address='tcp://HOST:8786'``. Every node needs the same checkout, environment and data paths, and the run folder
on a shared file system (results are written there). Workers started that way get Dask's default
``MALLOC_TRIM_THRESHOLD_`` of 64 KiB, which made a block task 2.3x slower here (see :func:`_spawn_environ`); drop it
from ``distributed.nanny.pre-spawn-environ`` in the Dask configuration of those nodes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Optional

__all__ = ['MALLOC_ENVIRON', 'QUIET', 'open_client', 'pin_to_slot', 'worker_names', 'worker_address']

log = logging.getLogger(__name__)


def _set_torch_threads(n: int) -> int:
    import torch

    torch.set_num_threads(n)
    return torch.get_num_threads()


@contextlib.contextmanager
def open_client(workers: int = 1, address: Optional[str] = None, torch_threads: Optional[int] = 1,
                gpus: bool = False, pin: bool = False, malloc: bool = True, quiet: bool = True,
                **cluster_kwargs: Any) -> Iterator[Any]:
    """A ``distributed.Client``: connected to ``address`` if given, else to a new ``LocalCluster`` of ``workers``
    single-threaded worker processes (closed on exit). Local workers start without Dask's background samplers
    (:data:`QUIET`, ``quiet``) and with :data:`MALLOC_ENVIRON` (``malloc``); ``pin`` puts worker ``i`` on core ``i``
    (of the cores this process may use, cyclically; :func:`pin_to_slot`), which was measured slower and is off by
    default (``benchmarks/results/blockwise_task_phases_variants.md``). ``cluster_kwargs`` go to ``LocalCluster``;
    none of this applies to an existing cluster (``address``), whose workers were started by someone else."""
    import dask
    from distributed import Client, LocalCluster

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f'workers: expected an integer >= 1, got {workers!r}')
    if address is not None:
        client = Client(address)
        try:
            _configure(client, torch_threads)
            yield client
        finally:
            client.close()
        return
    env = dict(cluster_kwargs.pop('env', {}) or {})
    kwargs = dict(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=None if quiet else ':0',
                  silence_logs=logging.WARNING, **cluster_kwargs)
    config = {'distributed.nanny.pre-spawn-environ': _spawn_environ(torch_threads, malloc), **(QUIET if quiet else {})}
    with dask.config.set(config), LocalCluster(**kwargs) as cluster:
        _start_workers(cluster, workers, env, gpus)
        with Client(cluster) as client:
            client.wait_for_workers(workers)
            _configure(client, torch_threads)
            if pin:
                client.run(pin_to_slot)
                client.register_worker_callbacks(pin_to_slot)
            yield client


#: Allocator settings for local workers (``open_client(malloc=True)``). A task runs in a worker's executor thread, so
#: glibc gives it its own arena, whose 64 MiB heaps are unmapped as soon as they empty; tensors above the mmap
#: threshold are mapped and unmapped on every allocation, and every page is faulted in and zeroed again by the kernel.
#: One arena, allocations up to 32 MiB (glibc's maximum) served from the heap, and a heap that is never trimmed keep
#: memory once touched. Measured (``benchmarks/results/blockwise_task_phases_*.md``): alone, it halved a ResNet-8
#: task's 3 million minor faults; with the checks' smaller batches (``eval_batch_size`` 250) a task had 53,000 faults
#: in every run (without it, 54,000 in one run and 1.8 million in another: glibc's dynamic threshold depends on the
#: order of allocations), and a task beside another ran 1.04x slower than alone, against 1.12x without it.
MALLOC_ENVIRON = {'MALLOC_ARENA_MAX': 1, 'MALLOC_MMAP_THRESHOLD_': 32 * 2 ** 20, 'MALLOC_TRIM_THRESHOLD_': 2 ** 40}

#: Dask's background work that a long task does not need, off in local clusters: the statistical profiler (a thread
#: that takes the GIL every 10 ms to walk the task's stack), the system monitor's 0.5 s and the memory monitor's
#: 0.1 s polls, the event loop's 20 ms watchdog tick, the active memory manager, and the dashboard.
QUIET = {
    'distributed.worker.profile.enabled': False,
    'distributed.admin.system-monitor.interval': '5s',
    'distributed.admin.system-monitor.gil.enabled': False,
    'distributed.worker.memory.monitor-interval': '1s',
    'distributed.admin.tick.interval': '500ms',
    'distributed.scheduler.active-memory-manager.start': False,
}


def _spawn_environ(torch_threads: Optional[int], malloc: bool = True) -> dict[str, Any]:
    """The environment worker processes start with: Dask's defaults, except ``MALLOC_TRIM_THRESHOLD_`` (Dask sets
    64 KiB to return memory to the system early; with PyTorch's many short-lived tensors that made glibc trim on
    nearly every free: a block task ran 2.3x slower in a worker than in a plain process, measured here), then
    :data:`MALLOC_ENVIRON` (``malloc``; a variable already set in this process's environment wins), and the
    OpenMP/MKL thread counts set to ``torch_threads``."""
    import os

    import dask

    environ = dict(dask.config.get('distributed.nanny.pre-spawn-environ', default={}) or {})
    environ.pop('MALLOC_TRIM_THRESHOLD_', None)
    if malloc:
        environ.update({k: v for k, v in MALLOC_ENVIRON.items() if k not in os.environ})
    if torch_threads is not None:
        for key in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
            environ[key] = torch_threads
    return environ


def _start_workers(cluster: Any, workers: int, env: dict[str, str], gpus: bool) -> None:
    """Worker ``i`` is named ``slot<i>`` and holds one unit of resource ``slot<i>`` (static schedules pin tasks
    to it; a worker its nanny restarts after a crash keeps both); with ``gpus``, it sees only CUDA device ``i``."""
    from distributed import Nanny

    spec = {}
    for i in range(workers):
        options = {'nthreads': 1, 'name': f'slot{i}', 'resources': {f'slot{i}': 1},
                   'env': {**env, **({'CUDA_VISIBLE_DEVICES': str(i)} if gpus else {})}}
        spec[f'slot{i}'] = {'cls': Nanny, 'options': options}
    cluster.worker_spec = spec
    cluster.scale(workers)


def _configure(client: Any, torch_threads: Optional[int]) -> None:
    if torch_threads is not None:
        client.run(_set_torch_threads, torch_threads)
        client.register_worker_callbacks(lambda: _set_torch_threads(torch_threads))
    log.info('dask: %d workers (%s)', len(worker_names(client)), client.scheduler.address)


def pin_to_slot(dask_worker: Any = None) -> Optional[int]:
    """Pin every thread of the calling worker process (``slot<i>``) to one core, ``i`` modulo the cores available;
    returns the core (None outside Linux or a slot worker). Threads started later inherit the mask."""
    import os

    name = str(getattr(dask_worker, 'name', ''))
    if not hasattr(os, 'sched_setaffinity') or not name.startswith('slot'):
        return None
    cores = sorted(os.sched_getaffinity(0))
    core = cores[int(name[4:]) % len(cores)]
    for tid in os.listdir('/proc/self/task'):
        try:
            os.sched_setaffinity(int(tid), {core})
        except OSError:  # a thread that ended meanwhile
            pass
    return core


def worker_names(client: Any) -> list[str]:
    """The addresses of the client's workers, sorted (a fixed order for static schedules)."""
    return sorted(client.scheduler_info()['workers'])


def worker_address() -> Optional[str]:
    """The address of the Dask worker running the caller, or None outside a worker."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None
