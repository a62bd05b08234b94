"""Where a block task's time goes: one task alone and two side by side, in plain processes and in Dask workers.

    .venv/bin/python -m benchmarks.blockwise.task_phases --repeats 2 --out benchmarks/results/blockwise_task_phases.md
    ... --variants before malloc quiet eval250 pin after --modes dask1 dask2   # each change alone
    ... -- blockwise.epochs=2                   # overrides of the blockwise spec (for every variant)

The task is the blockwise spec's (default ``yamls/pipelines/fashion_mnist/blockwise_resnet8.yaml``) for one layer
(``--layer``, default the first with a task), with its real settings and the cached real data, on a teacher of the
spec's architecture (``--checkpoint``, default an untrained one: the work per step does not depend on the weights).
Four modes, run in turn every round (the order rotates): ``plain1`` (one spawned process, one thread), ``plain2``
(two at once), ``dask1`` (a 1-worker local cluster as the blockwise driver opens it), ``dask2`` (2 workers, one task
each). Every task reports its phases (:mod:`algorithms.blockwise.phases`: data, prefix, forward, backward,
optimizer, check), its thread's CPU time, involuntary context switches and page faults, and its process's other
threads' CPU time; Dask modes also report the CPU seconds the driver (scheduler, nannies, client) used meanwhile.
Variants (``--variants``, :data:`VARIANTS`) change one thing of the library each, so that every change is measured
alone, in the same rounds as the others. The report gives each (variant, mode)'s means, and each variant's slowdown
of a task beside another (2 Dask workers against 1), phase by phase.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

from benchmarks.core.machine import machine_info
from benchmarks.measurements.timing import emit, markdown
from recipes.core.cli import LOG_FORMAT
from recipes.core.errors import ConfigError

log = logging.getLogger(__name__)
MODES = ('plain1', 'plain2', 'dask1', 'dask2')
#: What each variant changes (see :mod:`algorithms.blockwise.cluster`): the workers' allocator settings (``malloc``;
#: for plain processes too), Dask's background samplers off (``quiet``), workers pinned to cores (``pin``), and the
#: spec's overrides. ``before`` is the library as the study of 2026-11-26 ran it; ``after`` its defaults now.
VARIANTS = {
    'before': dict(malloc=False, quiet=False, pin=False, overrides=['blockwise.eval_batch_size=1000']),
    'malloc': dict(malloc=True, quiet=False, pin=False, overrides=['blockwise.eval_batch_size=1000']),
    'quiet': dict(malloc=False, quiet=True, pin=False, overrides=['blockwise.eval_batch_size=1000']),
    'eval250': dict(malloc=False, quiet=False, pin=False, overrides=['blockwise.eval_batch_size=250']),
    'pin': dict(malloc=False, quiet=False, pin=True, overrides=['blockwise.eval_batch_size=1000']),
    'after': dict(malloc=True, quiet=True, pin=False, overrides=[]),
    'after_without_malloc': dict(malloc=False, quiet=True, pin=False, overrides=[]),
}
PHASES = ('setup', 'data', 'prefix', 'forward', 'backward', 'optimizer', 'check', 'other')
SPEC = 'yamls/pipelines/fashion_mnist/blockwise_resnet8.yaml'


def _plain(task: Any, start_at: float, queue: 'mp.Queue') -> None:
    """Run one task in this (spawned) process with one torch thread, from ``start_at``; put its summary."""
    import torch

    from algorithms.blockwise import run_block_task

    torch.set_num_threads(1)
    while time.time() < start_at:
        time.sleep(0.01)
    queue.put(run_block_task(task))


def plain(tasks: list[Any], malloc: bool) -> tuple[list[dict], dict[str, float]]:
    """The tasks' summaries, each run in its own process (with the workers' allocator settings if ``malloc``), all
    at once."""
    from algorithms.blockwise.cluster import MALLOC_ENVIRON

    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    start_at = time.time() + 10.0  # after every process has imported torch
    procs = [ctx.Process(target=_plain, args=(t, start_at, queue)) for t in tasks]
    saved = dict(os.environ)
    if malloc:
        os.environ.update({k: str(v) for k, v in MALLOC_ENVIRON.items()})
    try:
        for p in procs:
            p.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    summaries = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return summaries, {}


def _cpu(proc: Any) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def dask(tasks: list[Any], malloc: bool, quiet: bool, pin: bool) -> tuple[list[dict], dict[str, float]]:
    """The tasks' summaries, task ``i`` on worker ``slot<i>`` of a local cluster of ``len(tasks)`` workers, and the
    CPU seconds of the driver process (scheduler, nannies and client: a local cluster's nannies live there) while
    they ran."""
    import psutil

    from algorithms.blockwise import run_block_task
    from algorithms.blockwise.cluster import open_client

    with open_client(len(tasks), torch_threads=1, pin=pin, malloc=malloc, quiet=quiet) as client:
        me = psutil.Process()
        before = _cpu(me)
        futures = [client.submit(run_block_task, t, pure=False, resources={f'slot{i}': 1}) for i, t in
                   enumerate(tasks)]
        summaries = client.gather(futures)
        after = _cpu(me)
    return summaries, {'driver_cpu_s': after - before}


def one(summary: dict[str, Any]) -> dict[str, float]:
    """The numbers of one task's summary the report uses."""
    u = summary['usage']
    row = {'task_s': u['wall_s'], 'setup': summary['setup_s'], **{p: summary['phases'].get(p, 0.0) for p in PHASES[1:]},
           'thread_cpu_s': u.get('thread_cpu_s', float('nan')), 'nivcsw': u.get('thread_nivcsw', float('nan')),
           'minflt': u['process_minflt'], 'majflt': u['process_majflt'],
           'other_threads_cpu_s': u.get('other_threads_cpu_s', float('nan'))}
    row['cpu_share'] = row['thread_cpu_s'] / row['task_s']
    return row


def build_run(args: argparse.Namespace, work: Path, overrides: list[str]) -> tuple[Any, Any]:
    """The blockwise run (data cached under ``work``) with ``overrides``, and its layer to time; the layer is checked
    before anything is written."""
    import torch

    from recipes.blockwise import Blockwise
    from recipes.pipelines.blockwise_config import load_blockwise

    given = [f'teacher.checkpoint={args.checkpoint}'] if args.checkpoint else []
    bw = Blockwise(load_blockwise(args.spec, [f'run_dir={work}', *args.overrides, *overrides, *given]))
    bw.check()  # a given checkpoint is safe and fits the teacher's architecture (the driver's own check)
    layers = {layer.conv: layer for layer in bw.layers()}
    name = args.layer or next(iter(layers))
    if name not in layers:
        raise ConfigError(f"--layer: {name!r} has no task; expected one of {', '.join(layers)}")
    work.mkdir(parents=True, exist_ok=True)
    if not args.checkpoint:
        bw.checkpoint = work / 'teacher.pt'
        if not bw.checkpoint.is_file():
            torch.manual_seed(0)
            torch.save(bw.build_teacher().state_dict(), bw.checkpoint)
    bw.ensure_cache()
    return bw, layers[name]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every (variant, mode) once per round, the order rotating between rounds."""
    work = Path(args.work)
    runs = {v: build_run(args, work, VARIANTS[v]['overrides']) for v in args.variants}
    cells = [(v, m) for v in args.variants for m in args.modes]
    rows: dict[str, list[dict]] = {f'{v}/{m}': [] for v, m in cells}
    overhead: dict[str, list[dict]] = {f'{v}/{m}': [] for v, m in cells}
    for r in range(args.repeats):
        for variant, mode in cells[r % len(cells):] + cells[:r % len(cells)]:
            opts, (bw, layer) = VARIANTS[variant], runs[variant]
            outs = [work / 'blocks' / f'{variant}-{mode}-r{r}-{i}' for i in range(int(mode[-1]))]
            for out in outs:
                shutil.rmtree(out, ignore_errors=True)
            tasks = [bw.task(layer, None, out) for out in outs]
            summaries, extra = (plain(tasks, opts['malloc']) if mode.startswith('plain') else
                                dask(tasks, opts['malloc'], opts['quiet'], opts['pin']))
            rows[f'{variant}/{mode}'] += [one(s) for s in summaries]
            overhead[f'{variant}/{mode}'].append(extra)
            log.info('round %d %s/%s: tasks %s s', r, variant, mode,
                     ', '.join(f"{s['usage']['wall_s']:.1f}" for s in summaries))
    return {'layer': next(iter(runs.values()))[1].conv, 'rows': rows, 'overhead': overhead}


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return statistics.mean(values) if values else float('nan')


def report(data: dict[str, Any], cmd: str, machine: dict[str, Any]) -> str:
    rows, overhead = data['rows'], data['overhead']
    cells = [c for c in rows if rows[c]]
    cols = ['task_s', *PHASES, 'thread_cpu_s', 'cpu_share', 'nivcsw', 'minflt', 'other_threads_cpu_s']
    lines = ["# Where a block task's time goes: alone, side by side, plain and under Dask", '',
             f'Command: `{cmd}`', '',
             f"Machine: {machine['cpu']} ({machine['cores']} cores), {machine['device']}, torch {machine['torch']}; "
             f"{machine['date']}.", '',
             f"Layer `{data['layer']}`; means over every task of every round (seconds unless named; `cpu_share` = the "
             "task thread's CPU time / its wall time, below 1 when it waits for a core; `nivcsw` = involuntary "
             "context switches of the task thread; `minflt` = minor page faults of the task's process; "
             "`other threads` = CPU seconds of the task process's other threads (a Dask worker's event loop and "
             "samplers); driver = CPU seconds of the process that holds the scheduler, the nannies and the client).",
             '', '| variant/mode | tasks | ' + ' | '.join(cols) + ' | driver CPU s |', '|---|---:|' + '---:|' * (len(cols) + 1)]
    for c in cells:
        ov = [o for o in overhead[c] if o]
        values = [f'{_mean(rows[c], k):.3f}' if k == 'cpu_share' else
                  f'{_mean(rows[c], k):,.0f}' if k in ('nivcsw', 'minflt') else f'{_mean(rows[c], k):.1f}' for k in cols]
        driver = f"{statistics.mean(o['driver_cpu_s'] for o in ov):.1f}" if ov else '-'
        lines.append(f'| {c} | {len(rows[c])} | ' + ' | '.join(values) + f' | {driver} |')
    pairs = [(v, f'{v}/dask1', f'{v}/dask2') for v in dict.fromkeys(c.split('/')[0] for c in cells)]
    pairs = [p for p in pairs if rows.get(p[1]) and rows.get(p[2])]
    if pairs:
        lines += ['', "A task's slowdown beside another (2 workers against 1, ratio of mean task times; 1/slowdown "
                  'bounds a 2-worker efficiency) and each phase\'s:', '',
                  '| variant | task | ' + ' | '.join(PHASES) + ' | thread CPU | efficiency bound |',
                  '|---|' + '---:|' * (len(PHASES) + 3)]
        for v, one_, two in pairs:
            ratio = [_mean(rows[two], k) / _mean(rows[one_], k) if _mean(rows[one_], k) else float('nan')
                     for k in ('task_s', *PHASES, 'thread_cpu_s')]
            lines.append(f'| {v} | ' + ' | '.join(f'{x:.2f}' for x in ratio) + f' | {1 / ratio[0]:.2f} |')
    return markdown(lines, {**data, 'machine': machine})


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    p = argparse.ArgumentParser(prog='python -m benchmarks.blockwise.task_phases', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--spec', default=SPEC, help='blockwise spec (default: %(default)s)')
    p.add_argument('--layer', help='the layer whose task is timed (default: the first with a task)')
    p.add_argument('--checkpoint', help="the teacher's checkpoint, checked as the driver's teacher.checkpoint "
                   '(default: an untrained teacher)')
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--modes', nargs='+', choices=MODES, default=list(MODES))
    p.add_argument('--variants', nargs='+', choices=list(VARIANTS), default=['before', 'after'],
                   help='what the library does differently (see VARIANTS; default: %(default)s)')
    p.add_argument('--work', default='runs/task-phases', help='scratch folder: data cache, teacher, blocks')
    p.add_argument('--out', help='markdown report (also printed)')
    p.add_argument('overrides', nargs='*', help='dotted.key=value overrides of the spec')
    args = p.parse_args(argv)
    try:
        if args.repeats < 1:
            raise ConfigError(f'--repeats: expected an integer >= 1, got {args.repeats}')
        if not Path(args.spec).is_file():
            raise ConfigError(f'--spec: file not found: {args.spec}')
        data = measure(args)
    except ConfigError as e:
        sys.stderr.write(f'error: {e}\n')
        return 2
    cmd = ' '.join(['.venv/bin/python -m benchmarks.blockwise.task_phases', *(sys.argv[1:] if argv is None else argv)])
    emit(report(data, cmd, machine_info()), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
