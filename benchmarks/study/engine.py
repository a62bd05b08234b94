"""Run a study (a set of recipes, teachers before students) or print its commands for GPU nodes.

    .venv/bin/python -m benchmarks.study benchmarks/studies/fashion_mnist_long.yaml              # run what is missing
    .venv/bin/python -m benchmarks.study benchmarks/studies/fashion_mnist_long.yaml --print-commands  # shell lines
    .venv/bin/python -m benchmarks.study STUDY.yaml --only kd-kl-2ep [--set train_loader.subset=6000] [--runs-root DIR]
    .venv/bin/python -m benchmarks.study STUDY.yaml --dask local:4   # or gpus:8, or tcp://HOST:8786 (a Dask cluster)

Every run writes into ``<runs_root>/<run>/`` (``run_dir`` and ``save_folder`` overridden; students' teachers point
at the study's own teacher checkpoints). A study with ``seeds: [0, 1, 2]`` runs every run once per seed, interleaved
(seed 0 of every run, then seed 1, ...), under ``<runs_root>/seed<s>/<run>/`` (``Study.replicas``). A run whose ``summary.json`` says ``finished`` is skipped, and every run is
started with ``autoresume=true``, so an interrupted study is resumed by running the same command again. ``--only``
runs the named runs plus the unfinished runs they learn from. A run that fails is logged, the runs that need it are
skipped, the others go on; the exit status is then 1. Before training, the machine is appended to
``<runs_root>/machine.json`` so that the report can say where the runs came from.

``--print-commands`` prints one ``composer recipes/train.py -f ... key=value ...`` line per run (Matryoshka entries:
``composer recipes/matryoshka.py -f ...``), grouped in stages: a stage needs the checkpoints of the stages before it,
and the runs within a stage are independent, so each can go to its own node (``--launcher 'composer -n 8'``).
Finished runs are printed commented out.

``--dask SPEC`` runs the study in parallel on a Dask cluster (``benchmarks/study/dask_cluster.py``): ``local:N`` worker
processes on this machine, ``gpus:N`` (one worker per GPU) or an existing scheduler ``tcp://HOST:PORT`` whose workers
may span nodes (``algorithms/blockwise/cluster.py``). Stage by stage, each unfinished run of a stage goes to a worker
as a subprocess of its printed command (launcher: the worker's Python), output in ``<runs_root>/<run>/driver.log``;
the next stage starts when the whole stage has ended. Same skipping and failure rules; who ran what, and when, is in
``<runs_root>/dask_runs.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from benchmarks.core.records import MACHINE_FILE, MANIFEST_FILE, is_finished
from recipes.core.cli import LOG_FORMAT, dotlist, format_value
from benchmarks.study.spec import REPO, Study, StudyError, StudyRun, load_study, stages, with_dependencies

log = logging.getLogger('benchmarks.study.engine')
KD_TEACHERS = 'algorithms.knowledge_distillation.teachers'
ENTRY_POINTS = {'train': 'recipes/train.py', 'matryoshka': 'recipes/matryoshka.py'}
Runner = Callable[[StudyRun, list[str]], None]
"""Trains one study run, given the ``key=value`` overrides its command line would carry."""


def resolve_yaml(path: str) -> Path:
    """A recipe or spec path as written in a study: relative to the current folder, else to the repository root."""
    p = Path(path)
    return p if p.is_file() or p.is_absolute() else REPO / p


def _spec(run: StudyRun) -> dict[str, Any]:
    """A Matryoshka entry's spec, read as the driver reads it (``base:`` followed); unresolvable -> StudyError."""
    from recipes.core.config import merge_yaml
    from recipes.core.errors import ConfigError
    try:
        _, cfg = merge_yaml(resolve_yaml(run.recipe), None, key=f'runs ({run.name}).spec')
    except ConfigError as e:
        raise StudyError(str(e)) from None
    return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def _spec_pool(run: StudyRun) -> list[dict[str, Any]]:
    spec = _spec(run)
    pool = spec.get('pool') if isinstance(spec, dict) else None
    if not isinstance(pool, list):
        raise StudyError(f'runs ({run.name}).spec: {run.recipe} has no pool list')
    return pool


def run_overrides(study: Study, run: StudyRun) -> list[str]:
    """The ``key=value`` overrides that make ``run`` a member of ``study``: the study's common overrides, the run's,
    then its teachers and its folders (these last ones always win)."""
    if run.kind == 'train':
        args = dotlist({**study.overrides, **run.overrides})
        if run.teachers:
            args.append(f'{KD_TEACHERS}={format_value([study.checkpoint(t) for t in run.teachers])}')
        run_dir = study.run_dir(run.name)
        return [*args, f'run_name={study.run_name(run.name)}', f'run_dir={run_dir}',
                f'save_folder={run_dir}/checkpoints', 'autoresume=true']
    args = [f'name={study.run_name(run.name)}', f'out_dir={study.run_dir(run.name)}']
    if run.generations is not None:
        args.append(f'generations={run.generations}')
    if run.teachers:
        pool = _spec_pool(run)
        if len(pool) != len(run.teachers):
            raise StudyError(f'runs ({run.name}).teachers: {len(run.teachers)} teachers for a pool of {len(pool)}')
        members = [{'checkpoint': study.checkpoint(t), 'overrides': dict(m.get('overrides') or {})}
                   for t, m in zip(run.teachers, pool)]
        args.append(f'pool={json.dumps(members)}')
    students = {**study.overrides, **run.overrides}
    if students:
        args.append(f'overrides={json.dumps(students)}')
    return args


def command(study: Study, run: StudyRun, launcher: str = 'composer') -> str:
    """The shell command that trains ``run`` (from the repository root)."""
    words = [*shlex.split(launcher), ENTRY_POINTS[run.kind], '-f', run.recipe, *run_overrides(study, run)]
    return ' '.join(shlex.quote(w) for w in words)


def run_finished(study: Study, run: StudyRun) -> bool:
    """A trained run: its ``summary.json`` says finished. A Matryoshka entry: its manifest exists and every student
    of every generation finished."""
    folder = Path(study.run_dir(run.name))
    if run.kind == 'train':
        return is_finished(folder)
    if not (folder / MANIFEST_FILE).is_file():
        return False
    spec = _spec(run)
    generations = run.generations or int(spec.get('generations', 1))
    members = len(run.teachers) or len(_spec_pool(run))
    return all(is_finished(folder / f'g{g}' / f'm{i}') for g in range(1, generations + 1) for i in range(members))


def run_in_process(run: StudyRun, overrides: list[str]) -> None:
    """The default :data:`Runner`: trains in this process, through the same code as the printed command."""
    if run.kind == 'train':
        from recipes.core.builders import launch, prepare
        from recipes.core.config import load_config
        trainer = launch(prepare(load_config(resolve_yaml(run.recipe), overrides)))
        try:
            trainer.fit()
        finally:
            trainer.close()
    else:
        from recipes.matryoshka import load_spec
        from recipes.matryoshka import run as run_matryoshka
        run_matryoshka(load_spec(resolve_yaml(run.recipe), overrides))


def record_machine(runs_root: str | Path, names: Iterable[str]) -> None:
    """Append this machine (and the runs about to start) to ``<runs_root>/machine.json``."""
    from benchmarks.core.machine import machine_info
    path = Path(runs_root) / MACHINE_FILE
    data = json.loads(path.read_text()) if path.is_file() else {'sessions': []}
    data['sessions'].append({**machine_info(), 'runs': list(names)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + '\n')


def selected_runs(study: Study, only: Optional[list[str]] = None) -> list[StudyRun]:
    """The runs to consider, in stage order: all, or ``only`` plus the unfinished runs they learn from."""
    names = None
    if only:
        names = [n for n in with_dependencies(study, only)
                 if n in only or not run_finished(study, study.run(n))]
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
        record_machine(study.runs_root, [r.name for r in todo])
    return runs, todo, status


def run_study(study: Study, only: Optional[list[str]] = None, runner: Runner = run_in_process) -> dict[str, str]:
    """Train the study's unfinished runs, teachers first; returns ``{name: 'finished earlier' | 'trained' |
    'failed' | 'blocked'}`` (blocked: a teacher failed)."""
    _, todo, status = pending_runs(study, only)
    for i, r in enumerate(todo, 1):
        bad = [t for t in r.teachers if status.get(t) in ('failed', 'blocked')]
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
    counts = {s: sum(v == s for v in status.values()) for s in sorted(set(status.values()))}
    log.info('study %s: %s; records under %s', study.name, counts, study.runs_root)
    return status


def print_commands(study: Study, only: Optional[list[str]] = None, launcher: str = 'composer') -> str:
    """The study as shell lines, stage by stage; finished runs commented out."""
    names = with_dependencies(study, only) if only else None
    groups = stages(study, names)
    total = sum(len(g) for g in groups)
    lines = [f'# study {study.name}: {total} runs in {len(groups)} stages, from the repository root. '
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
        if args.print_commands:
            sys.stdout.write(''.join(print_commands(r, args.only, args.launcher) for r in study.replicas()))
            return 0
        status = {}
        for replica in study.replicas():  # seed 0 of every run, then seed 1, ...
            if args.dask:
                launcher = None if args.launcher == 'composer' else args.launcher
                done = study_dask.run_study_dask(replica, args.only, dask, launcher)
            else:
                done = run_study(replica, args.only, runner)
            status.update({f'{replica.runs_root}/{name}': v for name, v in done.items()})
    except StudyError as e:
        sys.stderr.write(f'error: {e}\n')
        return 2
    return 1 if any(s in ('failed', 'blocked') for s in status.values()) else 0


if __name__ == '__main__':
    sys.exit(main())
