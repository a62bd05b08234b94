"""The blockwise study: each teacher's block tasks under several schedules and worker counts, on this machine.

    .venv/bin/python -m benchmarks.blockwise.study benchmarks/studies/blockwise_fashion_mnist.yaml
    .venv/bin/python -m benchmarks.blockwise.report runs/blockwise-study --out benchmarks/results/blockwise_fashion_mnist

Per teacher (a blockwise YAML), the first schedule is the reference: it trains the teacher, runs every task on one
worker, stores the task times and fine-tunes the student. The other schedules reuse that teacher (same checkpoint)
and the stored times (bin packing), and only run the tasks (no fine-tuning): their makespans are the measurements. A
schedule with ``mode: top_down`` or ``bottom_up`` is craft distillation instead (serial, one layer after another; its
assembled student is compared with the parallel one). Several study YAMLs may share a ``runs_root`` (e.g. the craft
runs of ``blockwise_craft_fashion_mnist.yaml`` reuse the main study's teacher); the report reads them all. Runs go in
the order repeat -> teacher -> schedule, so drift of the machine spreads over all of them. A run whose
``blockwise.json`` exists is skipped, and a run resumes where it stopped, so an interrupted study is resumed by
running the same command again. The study YAML is read with the recipes' loader (``base:``, interpolations); a bad
one is one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Optional

from benchmarks.core.reporting import study_main
from benchmarks.study.spec import StudyError, load_spec
from recipes.core.cli import dotlist

log = logging.getLogger('benchmarks.blockwise.study')
DEFAULTS = {'repeats': 1, 'overrides': {}, 'simulate_workers': [4, 8, 32]}


def load_study(path: str) -> dict[str, Any]:
    """The study YAML, checked: ``teachers`` {name: blockwise YAML}, ``schedules`` [{name, policy, workers[, mode]}]
    (the first with 1 worker), ``repeats``, common ``overrides``, ``simulate_workers``; ``runs_root`` defaults to
    ``runs/<name>``."""
    cfg = load_spec(path, ('name', 'teachers', 'schedules'), ('runs_root', *DEFAULTS))
    cfg = {**DEFAULTS, 'runs_root': f"runs/{cfg['name']}", **cfg}
    for name, yaml in cfg['teachers'].items():
        if not Path(yaml).is_file():
            raise StudyError(f'{path}: teachers.{name}: YAML file not found: {yaml}')
    for i, s in enumerate(cfg['schedules']):
        if not isinstance(s, dict) or set(s) - {'name', 'policy', 'workers', 'mode'} or 'name' not in s:
            raise StudyError(f'{path}: schedules[{i}]: expected {{name, policy, workers[, mode]}}, got {s}')
    if not cfg['schedules'] or cfg['schedules'][0].get('workers', 1) != 1:
        raise StudyError(f'{path}: schedules[0]: the reference schedule runs on 1 worker')
    return cfg


def run_name(teacher: str, schedule: str, repeat: int) -> str:
    return f'{teacher}-{schedule}-r{repeat}'


def plan(cfg: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """``[(run name, blockwise YAML, overrides)]`` in running order."""
    root = Path(cfg['runs_root'])
    runs = []
    for r in range(cfg['repeats']):
        for teacher, yaml in cfg['teachers'].items():
            reference = root / run_name(teacher, cfg['schedules'][0]['name'], 0)
            for i, s in enumerate(cfg['schedules']):
                name = run_name(teacher, s['name'], r)
                over = {**cfg['overrides'], 'run_name': name, 'run_dir': str(root / name),
                        'schedule.policy': s.get('policy', 'work_stealing'), 'schedule.workers': s.get('workers', 1)}
                if 'mode' in s:  # craft distillation (top_down / bottom_up) instead of parallel tasks
                    over['blockwise.mode'] = s['mode']
                if r > 0 or i > 0:  # the reference run's teacher and times; tasks only
                    over.update({'teacher.checkpoint': str(reference / 'teacher' / 'checkpoints' / 'latest-rank0.pt'),
                                 'fine_tune': None})
                    if s.get('policy') == 'bin_packing':
                        over['schedule.times'] = str(reference / 'task_times.json')
                runs.append((name, yaml, dotlist(over)))
    return runs


def run(cfg: dict[str, Any], args: argparse.Namespace) -> int:
    """Every run of :func:`plan` not finished earlier; exit status 1 if any failed."""
    from benchmarks.study.engine import record_machine
    from recipes import blockwise

    if args.runs_root:
        cfg['runs_root'] = args.runs_root
    runs = plan(cfg)
    todo = [r for r in runs if not (Path(cfg['runs_root']) / r[0] / 'blockwise.json').is_file()]
    if todo:
        record_machine(cfg['runs_root'], [r[0] for r in todo])
    status = 0
    for i, (name, yaml, overrides) in enumerate(runs, 1):
        if (name, yaml, overrides) not in todo:
            log.info('[%d/%d] %s: finished earlier', i, len(runs), name)
            continue
        log.info('[%d/%d] %s', i, len(runs), name)
        code = blockwise.main(['-f', yaml, *overrides])
        if code:
            log.error('%s: exit status %d', name, code)
            status = 1
    return status


def main(argv: Optional[list[str]] = None) -> int:
    return study_main('benchmarks.blockwise.study', __doc__, load_study, run, argv,
                      lambda p: p.add_argument('--runs-root', help='instead of the YAML\'s runs_root'))


if __name__ == '__main__':
    sys.exit(main())
