"""Report of the blockwise study (``blockwise`` runs of ``python -m benchmarks.study STUDY.yaml``): per teacher, the
student against the teacher (accuracy, parameters, MACs, per layer), per-task times, the measured makespans of each
schedule with speedup and efficiency against the 1-worker run, the makespans simulated from the measured task times
for more workers, and energy where the machine exposes it.

    python -m benchmarks.blockwise.report runs/blockwise-study --out benchmarks/results/blockwise_fashion_mnist
    python -m benchmarks.blockwise.report benchmarks/results/blockwise_fashion_mnist \\
        --out benchmarks/results/blockwise_fashion_mnist

The first form reads the runs and writes ``records.json`` (everything the report uses) next to ``report.md``; the
second regenerates the report from committed records.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

from algorithms.blockwise.schedule import best_partition, bin_packing, lower_bound, makespan, simulate, split_makespan
from algorithms.callbacks.machine import read_machines
from algorithms.profiling.energy import parallel_metrics
from benchmarks.core.intervals import RATIO_RULE, Interval, mean_interval, ratio_interval
from benchmarks.core.markdown import table
from benchmarks.core.reporting import ReportError, command, header, report_main
from recipes.pipelines.blockwise_report import models_table

PROG = 'benchmarks.blockwise.report'
RECORDS = 'records.json'
GOAL_EFFICIENCY = 0.90
RERUN = ('`python -m benchmarks.study benchmarks/studies/blockwise_fashion_mnist.yaml` (and '
         '`blockwise_craft_fashion_mnist.yaml`) then `python -m benchmarks.blockwise.report runs/blockwise-study '
         '--out benchmarks/results/blockwise_fashion_mnist`')
ORDER = ('w1', 'ws2', 'rr2', 'bp2')  # the schedules' order in the tables (others after them, as read)
DESIGN = (
    "Each teacher's block tasks ran on 1 Dask worker and on 2 workers of one core each under work stealing, round "
    'robin and bin packing, in repeats (`-r<k>`, interleaved: every configuration of repeat 0, then of repeat 1, ...). '
    'The first 1-worker run trains the teacher, stores the task times that feed bin packing and the simulations, and '
    'its blocks are assembled and fine-tuned; every other run reuses its teacher and only runs the tasks. A repeat\'s '
    'speedup is against the 1-worker run of the same repeat. Makespans exclude the cluster start-up (given apart). '
    'Efficiency = speedup / workers; the goal here is >= 0.90 with 2 workers (the seed: 0.88 on 2 GPUs, 0.96 on 4). '
    "Efficiency is the product of two factors the table separates: *task slowdown* (the tasks' summed time against "
    'the 1-worker run: what sharing the machine costs each task) and *busy share* (summed task time / (workers x '
    'makespan): how well the schedule keeps the workers busy, 1 = never idle); efficiency is about busy share / task '
    'slowdown.')


def _block_difference(a: Path, b: Path) -> Optional[float]:
    """The largest absolute difference between the block weights of two runs (same layers), or None."""
    import torch

    worst = 0.0
    files = sorted(p.name for p in (a / 'blocks').glob('*.pt'))
    if not files or any(not (b / 'blocks' / f).is_file() for f in files):
        return None
    for f in files:
        x = torch.load(a / 'blocks' / f, weights_only=True)['state_dict']
        y = torch.load(b / 'blocks' / f, weights_only=True)['state_dict']
        worst = max([worst] + [(x[k].double() - y[k].double()).abs().max().item() for k in x])
    return worst


def collect(runs_root: Path) -> dict[str, Any]:
    """Read every run of the study under ``runs_root`` into one JSON-able record."""
    runs = {}
    for path in sorted(runs_root.glob('*/blockwise.json')):
        report = json.loads(path.read_text())
        report.pop('config', None)
        tasks = json.loads((path.parent / 'tasks.json').read_text())
        report['tasks'] = {k: {f: v.get(f) for f in ('seconds', 'worker', 'status', 'accepted', 'best_accuracy',
                                                     'reference_accuracy', 'best_epoch', 'prefix_params')}
                           for k, v in tasks['tasks'].items()}
        report['finished_at'] = tasks['finished_at']
        report['schedule']['mode'] = tasks.get('mode', 'parallel')
        runs[path.parent.name] = report
    for name in runs:
        teacher, schedule, repeat = name.rsplit('-', 2)
        reference = runs_root / f'{teacher}-w1-r0'  # every schedule and repeat against the first 1-worker run
        if name != reference.name and reference.is_dir():
            runs[name]['blocks_max_abs_difference_vs_w1'] = _block_difference(reference, runs_root / name)
    return {'runs': runs, 'machine': {'sessions': read_machines(runs_root)}}


def _joules(run: dict[str, Any]) -> Optional[float]:
    """GPU plus CPU-package joules over a run's tasks, or None when neither was readable."""
    energy = run.get('energy') or {}
    parts = [energy[k]['joules'] for k in ('gpu', 'cpu_package') if (energy.get(k) or {}).get('available')]
    return sum(parts) if parts else None


def _teachers(records: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{teacher: {schedule: {repeat: run}}}``, the schedules in :data:`ORDER`, the repeats in order."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, run in records['runs'].items():
        teacher, schedule, repeat = name.rsplit('-', 2)
        out.setdefault(teacher, {}).setdefault(schedule, {})[repeat] = run
    rank = {k: i for i, k in enumerate(ORDER)}
    return {t: {k: dict(sorted(v.items())) for k, v in sorted(runs.items(), key=lambda kv: rank.get(kv[0], len(ORDER)))}
            for t, runs in out.items()}


def _busy(run: dict[str, Any]) -> float:
    return sum(v['seconds'] for v in run['tasks'].values())


def speedups(w1: dict[str, Any], repeats: dict[str, Any]) -> list[float]:
    """Per repeat, the 1-worker makespan of that repeat (of the first, if it has none) over this run's."""
    first = next(iter(w1.values()))['schedule']['makespan_s']
    return [w1.get(r, {}).get('schedule', {}).get('makespan_s', first) / run['schedule']['makespan_s']
            for r, run in repeats.items()]


def _efficiency(w1: dict[str, Any], repeats: dict[str, Any]) -> Interval:
    n = next(iter(repeats.values()))['schedule']['workers']
    return ratio_interval([x / n for x in speedups(w1, repeats)])


def _findings(ref: dict[str, Any], runs: dict[str, dict[str, Any]]) -> list[str]:
    """The teacher's findings in words, from the numbers of its runs (``runs``: schedule -> repeat -> run)."""
    t, st = ref['models']['teacher'], ref['models'].get('student') or ref['models']['assembled']
    rows = [r for r in ref['layers'] if r['seconds'] is not None]
    rejected = [r['layer'] for r in rows if not r['kept']]
    out = [f"- Student {st['test_accuracy']:.2f}% vs teacher {t['test_accuracy']:.2f}% on the test set "
           f"({st['test_accuracy'] - t['test_accuracy']:+.2f} points) with "
           f"{100 * (1 - st['params'] / t['params']):.1f}% fewer parameters and "
           f"{100 * (1 - st['macs'] / t['macs']):.1f}% fewer MACs; {len(rows) - len(rejected)} of {len(rows)} tasks' "
           "blocks kept" + (f" (the teacher's layer stays at {', '.join(rejected)})." if rejected else '.')]
    w1 = runs['w1']
    parallel = {k: v for k, v in runs.items() if next(iter(v.values()))['schedule']['workers'] > 1}
    if parallel:
        best = max(parallel, key=lambda k: _efficiency(w1, parallel[k]).mean)
        eff, repeats = _efficiency(w1, parallel[best]), parallel[best]
        n = next(iter(repeats.values()))['schedule']['workers']
        slowdown = statistics.mean(_busy(run) / _busy(w1.get(r, ref)) for r, run in repeats.items())
        busy = statistics.mean(_busy(run) / (n * run['schedule']['makespan_s']) for run in repeats.values())
        holds = eff.lo is not None and eff.lo >= GOAL_EFFICIENCY
        goal = ('met, and its whole interval is above it' if holds else 'met on average (the interval reaches below)'
                if eff.mean >= GOAL_EFFICIENCY else 'not met')
        policy = next(iter(repeats.values()))['schedule']['policy']
        out.append(f"- With {n} workers the best schedule was {policy} ({best}): efficiency {eff.fmt()} over {eff.n} "
                   f"repeat{'s' if eff.n > 1 else ''}, goal (>= {GOAL_EFFICIENCY:.2f}) {goal}. Each task ran "
                   f"{slowdown:.2f}x slower beside another than alone, and the schedule kept the workers busy "
                   f"{100 * busy:.0f}% of the makespan.")
    diffs = [r.get('blocks_max_abs_difference_vs_w1') for v in runs.values() for r in v.values() if r is not ref]
    if diffs and all(d == 0 for d in diffs):
        out.append('- Every schedule and repeat produced bit-identical blocks: adding workers changed where tasks ran, '
                   'not what they learned.')
    return out


def _layers_table(run: dict[str, Any]) -> list[str]:
    return table(['layer', 'in -> out', 'kept', 'params before -> after', 'MACs before -> after', 'task s', 'why'], [
        [r['layer'], f"{r['in_shape']} -> {r['out_shape']}", 'yes' if r['kept'] else 'no',
         f"{r['params_before']:,} -> {r['params_after']:,}", f"{r['macs_before']:,} -> {r['macs_after']:,}",
         f"{r['seconds']:.1f}" if r['seconds'] is not None else '-', r['reason']] for r in run['layers']], 'lllllrl')


def _makespans(ref: dict[str, Any], runs: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The measured makespans table (a row per run), and the greenup / powerup of each parallel run (where energy
    was read). Speedup and efficiency are against the 1-worker run of the same repeat."""
    w1, rows, greens = runs['w1'], [], []
    for schedule, repeats in runs.items():
        for repeat, run in repeats.items():
            base = w1.get(repeat, ref)
            serial, serial_busy = base['schedule']['makespan_s'], _busy(base)
            s, busy = run['schedule'], _busy(run)
            n = s['workers']
            pm = parallel_metrics(serial, s['makespan_s'], n, _joules(base), _joules(run))
            if pm['greenup'] is not None and n > 1:
                greens.append(f"{schedule}-{repeat}: greenup {pm['greenup']:.2f}, powerup {pm['powerup']:.2f}")
            util = ((run.get('energy') or {}).get('cpu_util') or {}).get('mean_percent')
            diff = run.get('blocks_max_abs_difference_vs_w1')
            same = '(reference)' if run is ref else ('yes (bit-exact)' if diff == 0 else
                                                    f'max diff {diff:.2g}' if diff is not None else '?')
            goal = '' if n == 1 else ('met' if pm['efficiency'] >= GOAL_EFFICIENCY else 'not met')
            times = {k: v['seconds'] for k, v in base['tasks'].items()}
            rows.append([f"{s['policy']} ({schedule}-{repeat})", n, f"{s['makespan_s']:.1f}", f"{s['startup_s']:.1f}",
                         f"{pm['speedup']:.2f}", f"{pm['efficiency']:.2f}", goal, f'{lower_bound(times, n):.1f}', same,
                         '?' if util is None else f'{util:.0f}', f'{busy:.1f}', f'{busy / serial_busy:.2f}',
                         f"{busy / (n * s['makespan_s']):.2f}"])
    head = ['schedule (run)', 'workers', 'makespan s', 'start-up s', 'speedup', 'efficiency', 'goal (>= 0.90)',
            'lower bound s', 'blocks identical to 1 worker', 'CPU util %', 'task s, summed', 'task slowdown',
            'busy share']
    return table(head, rows, 'lrrrrrlrlrrrr'), greens


def _summary(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Per schedule over its repeats: makespan, and speedup and efficiency with their intervals."""
    w1 = runs['w1']
    rows = []
    for schedule, repeats in runs.items():
        n = next(iter(repeats.values()))['schedule']['workers']
        makespan = mean_interval([r['schedule']['makespan_s'] for r in repeats.values()])
        speed = ratio_interval(speedups(w1, repeats))
        eff = _efficiency(w1, repeats)
        rows.append([f"{next(iter(repeats.values()))['schedule']['policy']} ({schedule})", n, len(repeats),
                     makespan.fmt(1), speed.fmt(), eff.fmt(),
                     '' if n == 1 else 'holds' if eff.lo is not None and eff.lo >= GOAL_EFFICIENCY else
                     'met on average' if eff.mean >= GOAL_EFFICIENCY else 'not met'])
    return table(['schedule', 'workers', 'repeats', 'makespan s', 'speedup', 'efficiency', 'goal (>= 0.90)'], rows,
                 'lrrrrrl')


def split_bound(times: dict[str, float], n: int) -> list[str]:
    """What the task sizes alone allow ``n`` workers (no contention): the best assignment of whole tasks, and the
    list schedule of tasks cut in two halves at a mid-way check."""
    total = sum(times.values())
    whole, packed, halves = best_partition(times, n), makespan(bin_packing(times, n), times), split_makespan(times, n)
    return [f'What the task sizes allow {n} workers without any contention: the best assignment of whole tasks takes '
            f'{whole:.1f} s (efficiency at most {total / (n * whole):.2f}; bin packing\'s {packed:.1f} s, '
            f'{total / (n * packed):.2f}); with every task cut in two halves at its mid-way check (the second half '
            'resuming from the first\'s block, optimizer state and best check, on whichever worker is free: a split '
            f'the library does not make today), a list schedule takes {halves:.1f} s (at most '
            f'{total / (n * halves):.2f}).']


def section(teacher: str, by_schedule: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One teacher's chapter: findings, teacher vs student, measured and simulated makespans, craft runs, energy."""
    runs = {k: v for k, v in by_schedule.items()
            if next(iter(v.values()))['schedule'].get('mode', 'parallel') == 'parallel'}
    craft = {f'{k}-{r}' if r != 'r0' else k: run for k, v in by_schedule.items() if k not in runs
             for r, run in v.items()}
    if 'w1' not in runs:
        return []
    ref = next((r for r in runs['w1'].values() if 'student' in r['models']), next(iter(runs['w1'].values())))
    times = {k: v['seconds'] for k, v in ref['tasks'].items()}
    makespans, greens = _makespans(ref, runs)
    lines = [f'## {teacher}', '', *_findings(ref, runs), '',
             '### Teacher and student (the fine-tuned 1-worker run)', '', *models_table(ref['models']), '',
             *_layers_table(ref), '', '### Speedup and efficiency over the repeats', '',
             f'Speedup of a run = the 1-worker makespan of the same repeat / its makespan; {RATIO_RULE}.', '',
             *_summary(runs), '', '### Measured makespans', '', *makespans, '',
             '### Simulated from the 1-worker task times (each worker on its own device: no contention)', '']
    lines += table(['workers', 'lower bound s', 'round robin s (speedup)', 'bin packing s (speedup)',
                    'work stealing s (speedup)'],
                   [[row['workers'], f"{row['lower_bound']:.1f}", *(f"{row[p]:.1f} ({row[p + '_speedup']:.2f}x)"
                                                                   for p in ('round_robin', 'bin_packing',
                                                                             'work_stealing'))]
                    for row in simulate(times, [2, 4, 8, 32])], 'rr')
    lines += ['', *split_bound(times, 2)]
    if craft:
        lines += ['', '### Craft distillation (sequential) against the parallel blocks, before fine-tuning', '']
        lines += table(['run', 'order', 'layers replaced', 'assembled test accuracy (%)', 'params', 'MACs'], [
            [name, run['schedule'].get('mode', 'parallel'), f"{sum(r['kept'] for r in run['layers'])} of "
             f"{len(run['layers'])}", f"{run['models']['assembled']['test_accuracy']:.2f}",
             f"{run['models']['assembled']['params']:,}", f"{run['models']['assembled']['macs']:,}"]
            for name, run in {'w1': ref, **craft}.items()], 'llrrrr')
    if greens:
        return lines + ['', 'Energy (GPU + CPU package, over the tasks): ' + '; '.join(greens) + '.', '']
    unavailable = [f"{k}: {v.get('reason')}" for k, v in (ref.get('energy') or {}).items()
                   if isinstance(v, dict) and v.get('available') is False]
    return lines + ['', f"Energy: {'; '.join(unavailable) or 'no readings'} - so greenup and powerup cannot be "
                    'measured on this machine (they are computed where NVML or RAPL is readable; see '
                    '`benchmarks/results/blockwise_gpu_h100.md` for a task under NVML).', '']


def render(records: dict[str, Any], regenerate: str = '') -> list[str]:
    """The report's lines from ``records`` (what :func:`collect` returns); ``regenerate`` is the command that
    regenerates it."""
    lines = header('Parallel blockwise distillation on this CPU (Fashion-MNIST)', regenerate, RERUN,
                   sessions=(records.get('machine') or {}).get('sessions') or [])
    lines += [DESIGN, '']
    for teacher, by_schedule in _teachers(records).items():
        lines += section(teacher, by_schedule)
    return lines


def build(root: Path, out: Path) -> list[str]:
    """The report of the runs under ``root`` (or of its ``records.json``); writes ``<out>/records.json``."""
    records = json.loads((root / RECORDS).read_text()) if (root / RECORDS).is_file() else collect(root)
    if not records['runs']:
        raise ReportError(f'no */blockwise.json nor {RECORDS} under {root}')
    (out / RECORDS).write_text(json.dumps(records, indent=1) + '\n')
    return render(records, command(PROG, out, out))


def main(argv: Optional[list[str]] = None) -> int:
    return report_main(PROG, __doc__, build, argv,
                       'the study runs root, or a folder with records.json')


if __name__ == '__main__':
    sys.exit(main())
