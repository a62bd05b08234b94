"""The blockwise study: each teacher's block tasks under several schedules and worker counts, on this machine.

    .venv/bin/python -m benchmarks.blockwise_study benchmarks/studies/blockwise_fashion_mnist.yaml
    .venv/bin/python -m benchmarks.blockwise_report runs/blockwise-study --out benchmarks/results/blockwise_fashion_mnist

Per teacher (a blockwise YAML), the first schedule is the reference: it trains the teacher, runs every task on one
worker, stores the task times and fine-tunes the student. The other schedules reuse that teacher (same checkpoint)
and the stored times (bin packing), and only run the tasks (no fine-tuning): their makespans are the measurements. A schedule with ``mode: top_down``
or ``bottom_up`` is craft distillation instead (serial, one layer after another; its assembled student is
compared with the parallel one). Several study YAMLs may share a ``runs_root`` (e.g. the craft runs of
``blockwise_craft_fashion_mnist.yaml`` reuse the main study's teacher); the report reads them all.
Runs go in the order repeat -> teacher -> schedule, so drift of the machine spreads over all of them. A run whose
``blockwise.json`` exists is skipped, and a run resumes where it stopped, so an interrupted study is resumed by
running the same command again. The study YAML is read with the recipes' loader (``base:``, interpolations).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Optional

from recipes.cli import LOG_FORMAT, dotlist
from recipes.config import load_mapping
from recipes.errors import ConfigError

log = logging.getLogger('benchmarks.blockwise_study')
KEYS = {'name', 'runs_root', 'teachers', 'schedules', 'repeats', 'overrides', 'simulate_workers'}


def load_study(path: str, runs_root: Optional[str] = None) -> dict[str, Any]:
    """The study YAML, checked: ``teachers`` {name: blockwise YAML}, ``schedules`` [{name, policy, workers}] (the
    first with 1 worker), ``repeats``, common ``overrides``, ``simulate_workers``."""
    cfg = load_mapping(path)
    unknown = set(cfg) - KEYS
    if unknown:
        raise ConfigError(f"unknown key '{sorted(unknown)[0]}'; allowed: {', '.join(sorted(KEYS))}")
    for key in ('name', 'teachers', 'schedules'):
        if key not in cfg:
            raise ConfigError(f"missing required key '{key}'")
    cfg.setdefault('runs_root', f"runs/{cfg['name']}")
    cfg.setdefault('repeats', 1)
    cfg.setdefault('overrides', {})
    cfg.setdefault('simulate_workers', [4, 8, 32])
    if runs_root:
        cfg['runs_root'] = runs_root
    for name, yaml in cfg['teachers'].items():
        if not Path(yaml).is_file():
            raise ConfigError(f'teachers.{name}: YAML file not found: {yaml}')
    first = cfg['schedules'][0]
    if first.get('workers', 1) != 1:
        raise ConfigError('schedules[0]: the reference schedule runs on 1 worker')
    for i, s in enumerate(cfg['schedules']):
        if set(s) - {'name', 'policy', 'workers', 'mode'} or 'name' not in s:
            raise ConfigError(f'schedules[{i}]: expected {{name, policy, workers[, mode]}}, got {s}')
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


def main(argv: Optional[list[str]] = None) -> int:
    from recipes import blockwise

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    p = argparse.ArgumentParser(prog='python -m benchmarks.blockwise_study', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('study')
    p.add_argument('--runs-root')
    args = p.parse_args(argv)
    try:
        cfg = load_study(args.study, args.runs_root)
    except ConfigError as e:
        sys.stderr.write(f'error: {e}\n')
        return 2
    from benchmarks.study import record_machine

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


if __name__ == '__main__':
    sys.exit(main())
