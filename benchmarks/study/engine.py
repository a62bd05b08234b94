"""Run a study (a set of runs of any kind, teachers before students) or print its commands for GPU nodes.

    .venv/bin/python -m benchmarks.study benchmarks/studies/fashion_mnist_long.yaml              # run what is missing
    .venv/bin/python -m benchmarks.study benchmarks/studies/fashion_mnist_long.yaml --print-commands  # shell lines
    .venv/bin/python -m benchmarks.study STUDY.yaml --only kd-kl-2ep [--set train_loader.subset=6000] [--runs-root DIR]
    .venv/bin/python -m benchmarks.study STUDY.yaml --dask local:4   # or gpus:8, or tcp://HOST:8786 (a Dask cluster)

A run is one command of its kind (:mod:`benchmarks.study.kinds`: ``train``, ``teacher_cache``, ``matryoshka``,
``prune_pipeline``, ``blockwise``, ``glue``) and writes into its folder (``<runs_root>/<run>/`` by default; students'
teachers point at the study's own checkpoints, or caches). A study with ``seeds: [0, 1, 2]`` runs every run once per
seed, interleaved (seed 0 of every run, then seed 1, ...; phase by phase if runs have a ``phase``), under
``<runs_root>/seed<s>/<run>/`` (``Study.replicas``). Every run of every seed is checked first (its YAML resolved with
the overrides its command gets), so a bad entry is one ``error:`` line and exit status 2 before anything trains. A
finished run is skipped (as its kind tells), and a run resumes where it stopped, so an interrupted study is resumed by
running the same command again. ``--only`` runs the named runs plus the unfinished runs they learn from. A run that
fails is logged, the runs that need it are skipped, the others go on; the exit status is then 1. Before training, the
machine is appended to ``<runs_root>/machine.json`` so that the report can say where the runs came from. A study with a
``family`` calls its ``benchmarks.<family>.describe.describe(study, run)`` on every finished run (its own measurements,
written once).

``--print-commands`` prints one ``composer recipes/train.py -f ... key=value ...`` line per run (other kinds: their
command), grouped in stages: a stage needs the checkpoints of the stages before it, and the runs within a stage are
independent, so each can go to its own node (``--launcher 'composer -n 8'``). Finished runs are printed commented
out. Run the same study without ``--print-commands`` afterwards for the family's measurements.

``--dask SPEC`` runs the study in parallel on a Dask cluster (``benchmarks/study/dask_cluster.py``): ``local:N`` worker
processes on this machine, ``gpus:N`` (one worker per GPU) or an existing scheduler ``tcp://HOST:PORT`` whose workers
may span nodes (``algorithms/blockwise/cluster.py``). Stage by stage, each unfinished run of a stage goes to a worker
as a subprocess of its printed command (launcher: the worker's Python), output in ``<runs_root>/<run>/driver.log``;
the next stage starts when the whole stage has ended. Same skipping and failure rules; who ran what, and when, is in
``<runs_root>/dask_runs.json``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys
from collections.abc import Callable, Iterable
from typing import Optional

from benchmarks.study.kinds import KINDS, is_finished, resolve_yaml, run_in_process
from benchmarks.study.kinds import run_overrides as _kind_overrides
from benchmarks.study.spec import RECIPE_KINDS, Study, StudyError, StudyRun, load_study, stages, with_dependencies
from recipes.core.cli import LOG_FORMAT
from recipes.core.errors import ConfigError

__all__ = ['run_study', 'print_commands', 'check_runs', 'run_overrides', 'run_finished', 'command', 'main',
           'resolve_yaml', 'run_in_process']

log = logging.getLogger('benchmarks.study.engine')
ENTRY_POINTS = {name: kind.entry_point for name, kind in KINDS.items()}
FAILED = ('failed', 'blocked', 'describe failed')
Runner = Callable[[StudyRun, list[str]], None]
"""Runs one study run, given the ``key=value`` overrides its command line would carry."""
Hook = Callable[[Study, StudyRun], None]


def run_overrides(study: Study, run: StudyRun) -> list[str]:
    """The ``key=value`` overrides that make ``run`` a member of ``study`` (its kind's, :mod:`~.kinds`)."""
    try:
        return _kind_overrides(study, run)
    except ConfigError as e:
        raise StudyError(f'runs ({run.name}): {e}') from None


def run_finished(study: Study, run: StudyRun) -> bool:
    """Whether ``run`` is finished, as its kind tells (:func:`benchmarks.study.kinds.is_finished`)."""
    try:
        return is_finished(study, run)
    except ConfigError as e:
        raise StudyError(f'runs ({run.name}): {e}') from None


def command(study: Study, run: StudyRun, launcher: str = 'composer') -> str:
    """The shell command that runs ``run`` (from the repository root); a kind with a launcher of its own (a
    teacher cache: ``python``) keeps it unless ``launcher`` is empty (a Dask worker's own Python)."""
    own = KINDS[run.kind].launcher
    words = [*shlex.split(own if own is not None and launcher else launcher), ENTRY_POINTS[run.kind], '-f',
             run.recipe, *run_overrides(study, run)]
    return ' '.join(shlex.quote(w) for w in words)


def check_runs(studies: Iterable[Study], only: Optional[list[str]] = None) -> None:
    """Every selected run of every pass resolved as its command will resolve it (its YAML, the overrides, the files
    they name), and the family's ``check(study)`` if it has one, before the first one trains: the first problem is a
    :class:`StudyError`. A driver that checks its teacher's files (blockwise, GLUE: its checkpoint, task times) may not
    find them yet: an error naming a file in the folder of an unfinished run it needs is left to the driver, which
    checks again when it starts."""
    for study in studies:
        check = getattr(importlib.import_module(f'benchmarks.{study.family}.describe'), 'check', None) \
            if study.family else None
        if check is not None:  # the family's own options (e.g. the layers to compare of every run)
            check(study)
        for r in selected_runs(study, only):
            key = 'recipe' if r.kind in RECIPE_KINDS else 'spec'
            path = resolve_yaml(r.recipe)
            if not path.is_file():
                raise StudyError(f'runs ({r.name}).{key}: YAML file not found: {r.recipe}')
            overrides = run_overrides(study, r)
            try:
                KINDS[r.kind].load(path, overrides)
            except ConfigError as e:
                pending = [study.run_dir(t) + '/' for t in r.needs if not run_finished(study, study.run(t))]
                if not any(d in str(e) for d in pending):  # not: a file that a run of an earlier stage will write
                    raise StudyError(f'runs ({r.name}): {e}') from None


def record_machine(study: Study, names: Iterable[str]) -> None:
    """Append this machine (and the runs about to start) to ``<runs_root>/machine.json``."""
    from algorithms.callbacks.machine import machine_info
    from algorithms.callbacks.machine import record_machine as append

    append(study.runs_root, {**machine_info(), 'runs': list(names)}, study=study.base)


def family_hook(study: Study) -> Optional[Hook]:
    """The study family's ``describe(study, run)`` (``benchmarks.<family>.describe``), or None."""
    if not study.family:
        return None
    return importlib.import_module(f'benchmarks.{study.family}.describe').describe


def describe(study: Study, run: StudyRun, status: dict[str, str], hook: Optional[Hook]) -> None:
    """Call the family's hook on a finished run; a failure is logged and marks the run ``describe failed``."""
    if hook is None:
        return
    try:
        hook(study, run)
    except KeyboardInterrupt:
        raise
    except Exception:  # the run itself finished: its students go on, the study's exit status says 1
        status[run.name] = 'describe failed'
        log.exception('%s: describing it (benchmarks.%s.describe) failed', run.name, study.family)


def selected_runs(study: Study, only: Optional[list[str]] = None) -> list[StudyRun]:
    """The runs of this pass (its seed's, its phase's) to consider, in stage order: all, or ``only`` plus the
    unfinished runs they learn from."""
    names = [r.name for r in study.runs if study.phase is None or r.phase == study.phase]
    if only:
        here = set(names)
        wanted = with_dependencies(study, [n for n in only if n in here])
        names = [n for n in wanted if n in here and (n in only or not run_finished(study, study.run(n)))]
    return [r for stage in stages(study, names) for r in stage]


def pending_runs(study: Study, only: Optional[list[str]] = None
                 ) -> tuple[list[StudyRun], list[StudyRun], dict[str, str]]:
    """``(selected runs, the unfinished ones, {name: 'finished earlier'} for the others)``; the machine is recorded
    when something is left to run."""
    runs = selected_runs(study, only)
    status: dict[str, str] = {}
    todo = [r for r in runs if not run_finished(study, r)]
    for r in runs:
        if r not in todo:
            status[r.name] = 'finished earlier'
            log.info('%s: finished earlier, skipped', r.name)
    if todo:
        record_machine(study, [r.name for r in todo])
    return runs, todo, status


def unusable_teachers(study: Study, run: StudyRun, runs: list[StudyRun], status: dict[str, str]) -> list[str]:
    """The runs ``run`` needs that failed here, or that are not of this pass and not finished."""
    names = {r.name for r in runs}
    return [t for t in run.needs if status.get(t) in ('failed', 'blocked')
            or (t not in names and not run_finished(study, study.run(t)))]


def run_study(study: Study, only: Optional[list[str]] = None, runner: Runner = run_in_process) -> dict[str, str]:
    """Run the unfinished runs of this pass, teachers first (the family's hook after each finished one); returns
    ``{name: 'finished earlier' | 'trained' | 'failed' | 'blocked' | 'describe failed'}`` (blocked: a run it needs
    failed)."""
    runs, todo, status = pending_runs(study, only)
    hook = family_hook(study)
    for r in runs:
        if r not in todo:
            describe(study, r, status, hook)
            continue
        i = todo.index(r) + 1
        bad = unusable_teachers(study, r, runs, status)
        if bad:
            status[r.name] = 'blocked'
            log.error('[%d/%d] %s: skipped, its teacher(s) %s did not finish', i, len(todo), r.name, ', '.join(bad))
            continue
        log.info('[%d/%d] %s: %s %s', i, len(todo), r.name, ENTRY_POINTS[r.kind], r.recipe)
        try:
            runner(r, run_overrides(study, r))
        except KeyboardInterrupt:
            raise
        except Exception:  # one failed run must not lose the others; its traceback is logged
            status[r.name] = 'failed'
            log.exception('%s: failed', r.name)
            continue
        status[r.name] = 'trained'
        describe(study, r, status, hook)
    counts = {s: sum(v == s for v in status.values()) for s in sorted(set(status.values()))}
    log.info('study %s: %s; records under %s', study.name, counts, study.runs_root)
    return status


def print_commands(study: Study, only: Optional[list[str]] = None, launcher: str = 'composer') -> str:
    """The pass as shell lines, stage by stage; finished runs commented out."""
    names = [r.name for r in study.runs if study.phase is None or r.phase == study.phase]
    if only:
        names = [n for n in with_dependencies(study, [n for n in only if n in names]) if n in names]
    groups = stages(study, names)
    total = sum(len(g) for g in groups)
    phase = '' if study.phase is None else f' (phase {study.phase})'
    lines = [f'# study {study.name}{phase}: {total} runs in {len(groups)} stages, from the repository root. '
             'A stage needs the checkpoints of the stages before it; the runs within a stage are independent.']
    for i, group in enumerate(groups, 1):
        lines.append(f'# stage {i} of {len(groups)}: {len(group)} runs')
        for r in group:
            prefix = '# finished: ' if run_finished(study, r) else ''
            lines.append(prefix + command(study, r, launcher))
    return '\n'.join(lines) + '\n'


def parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if '=' not in item:
            raise StudyError(f'--set {item!r}: expected dotted.key=value')
        key, value = item.split('=', 1)
        out[key] = value
    return out


def main(argv: Optional[list[str]] = None, runner: Runner = run_in_process) -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    p = argparse.ArgumentParser(prog='python -m benchmarks.study', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('study', help='study YAML, e.g. benchmarks/studies/fashion_mnist_long.yaml')
    p.add_argument('--print-commands', action='store_true', help='print the shell commands instead of running')
    p.add_argument('--only', nargs='+', metavar='NAME', help='only these runs (and the unfinished runs they need)')
    p.add_argument('--set', nargs='+', default=[], metavar='KEY=VALUE', help='overrides added to every run')
    p.add_argument('--runs-root', help="replaces the study's runs_root")
    p.add_argument('--launcher', default='composer', help="command prefix of printed lines (e.g. 'composer -n 8'); "
                   "with --dask, of the runs (default there: the worker's Python)")
    p.add_argument('--dask', metavar='SPEC', help='run stage by stage on Dask: local:N, gpus:N or tcp://HOST:PORT')
    args = p.parse_args(argv)
    try:
        if args.dask:
            from benchmarks.study import dask_cluster as study_dask
            dask = study_dask.parse_dask_spec(args.dask)
        study = load_study(args.study, runs_root=args.runs_root, overrides=parse_set(args.set))
        if args.only:
            with_dependencies(study, args.only)  # unknown names: one error line
        passes = study.passes()  # seed 0 of every run, then seed 1, ... (phase by phase)
        check_runs(passes, args.only)
        if args.print_commands:
            sys.stdout.write(''.join(print_commands(s, args.only, args.launcher) for s in passes))
            return 0
        status = {}
        for one in passes:
            if args.dask:
                launcher = None if args.launcher == 'composer' else args.launcher
                done = study_dask.run_study_dask(one, args.only, dask, launcher)
            else:
                done = run_study(one, args.only, runner)
            status.update({one.run_dir(name): v for name, v in done.items()})
    except (StudyError, ConfigError) as e:
        sys.stderr.write(f'error: {e}\n')
        return 2
    return 1 if any(s in FAILED for s in status.values()) else 0


if __name__ == '__main__':
    sys.exit(main())
