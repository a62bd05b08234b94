"""The default job measured as a user runs it: the recipe with several seeds, one after the other, each a fresh
``composer recipes/train.py`` process; final test accuracy and training wall-clock with 95% intervals.

    .venv/bin/python -m benchmarks.measurements.default_job [--recipe yamls/fashion_mnist/fast_cnn.yaml] [--seeds 17 1 2]
        [--runs-root runs/default-job] [--out benchmarks/results/default_job.md] [KEY=VALUE ...]
    .venv/bin/python -m benchmarks.measurements.default_job --validation --candidates optimizer.lr=0.1 optimizer.lr=0.2 \
        --seeds 0 1 2 --out benchmarks/results/default_job_choice.md

Finished seeds are read back, not trained again (delete ``<runs-root>/seed<s>`` to retrain one). The goal stated by
the project: >= 92% test accuracy in <= 3 minutes of training on 2 CPU cores.

``--validation`` is how a setting of the job is chosen: every candidate (a set of overrides, comma-separated) trains
on the first 55,000 training images and is evaluated on the last 5,000 (:data:`VALIDATION`), never on the test set;
seeds interleaved (seed 0 of every candidate, then seed 1, ...); the table gives each candidate's validation accuracy
and its difference from the first candidate, paired by seed, with 95% intervals and a verdict.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from algorithms.callbacks.run_record import run_finished
from benchmarks.core.intervals import RULE, mean_interval, verdict
from benchmarks.core.markdown import table
from benchmarks.core.machine import machine_info
from benchmarks.measurements.timing import REPO, emit, header, markdown, script, typed_command

log = logging.getLogger('benchmarks.measurements.default_job')
ACC = 'eval/MulticlassAccuracy'
GOAL_ACC, GOAL_S = 0.92, 180.0
VALIDATION = ['train_loader.subset=55000', 'eval_loader.split=train', 'eval_loader.skip=55000']


def run_seed(recipe: str, seed: int, folder: Path, overrides: list[str]) -> dict[str, Any]:
    if not run_finished(folder):
        cmd = [str(REPO / '.venv/bin/composer'), 'recipes/train.py', '-f', recipe, f'seed={seed}',
               f'run_dir={folder}', 'progress_bar=false', *overrides]
        log.info('seed %d: %s', seed, ' '.join(cmd))
        subprocess.run(cmd, cwd=REPO, check=True)
    return json.loads((folder / 'summary.json').read_text())


def render(recipe: str, rows: list[tuple[int, dict[str, Any]]], machine: dict[str, Any], cmd: str) -> str:
    acc = mean_interval([r['final_metrics'][ACC] for _, r in rows])
    train = mean_interval([r['train_wct_s'] for _, r in rows])
    total = mean_interval([r['total_wct_s'] for _, r in rows])
    cells = [[s, f"{100 * r['final_metrics'][ACC]:.2f}", f"{r['train_wct_s']:.1f}", f"{r['total_wct_s']:.1f}"]
             for s, r in rows]
    return markdown([
        *header('The default job, measured', cmd, machine, note=' One run at a time.'), f'Recipe `{recipe}`.', '',
        *table(['seed', 'test accuracy (%)', 'training wall-clock (s)', 'with evaluation (s)'],
               cells + [['mean [95% CI]', acc.fmt(2, 100), train.fmt(1), total.fmt(1)]]), '',
        f"Goal >= {100 * GOAL_ACC:.0f}% test accuracy: {'met' if acc.mean >= GOAL_ACC else 'not met'} (mean); "
        f"training in <= {GOAL_S:.0f} s: {'met' if train.mean <= GOAL_S else 'not met'} (mean)."])


def render_choice(recipe: str, runs: dict[str, list[tuple[int, dict[str, Any]]]], machine: dict[str, Any],
                  cmd: str) -> str:
    """Each candidate's validation accuracy per seed, its mean, and its difference from the first candidate."""
    acc = {c: {s: r['final_metrics'][ACC] for s, r in rows} for c, rows in runs.items()}
    first = next(iter(acc))
    seeds = list(acc[first])
    cells = []
    for c, by_seed in acc.items():
        diff = mean_interval([by_seed[s] - acc[first][s] for s in seeds]) if c != first else None
        cells.append([f'`{c}`', *(f'{100 * by_seed[s]:.2f}' for s in seeds), mean_interval(list(by_seed.values()))
                      .fmt(2, 100), f'{diff.fmt(2, 100)} ({verdict(diff)})' if diff else '(reference)',
                      f"{mean_interval([r['train_wct_s'] for _, r in runs[c]]).fmt(1)}"])
    return markdown([
        *header('The default job: choosing a setting on a validation split', cmd, machine,
                note=' One run at a time.'),
        f'Recipe `{recipe}` with `{" ".join(VALIDATION)}`: trained on the first 55,000 training images, evaluated on '
        'the last 5,000 (never on the test set); seeds interleaved.', '',
        *table(['candidate', *(f'seed {s} (%)' for s in seeds), 'mean [95% CI] (%)',
                'minus the first, paired by seed (points)', 'training wall-clock (s)'], cells), '',
        f'Intervals and verdicts: {RULE}.'])


def main(argv: Optional[list[str]] = None) -> int:
    p = script('default_job', __doc__)
    p.add_argument('--recipe', default='yamls/fashion_mnist/fast_cnn.yaml')
    p.add_argument('--seeds', type=int, nargs='+', default=[17, 1, 2])
    p.add_argument('--runs-root', default='runs/default-job')
    p.add_argument('--out', help='also write the markdown result here')
    p.add_argument('--validation', action='store_true', help='choose between --candidates on a validation split '
                   'carved from the training set')
    p.add_argument('--candidates', nargs='+', default=[''], metavar='KEY=VALUE[,KEY=VALUE]',
                   help='with --validation: the settings compared, each a comma-separated list of overrides')
    p.add_argument('overrides', nargs='*', help='recipe overrides, KEY=VALUE')
    args = p.parse_args(argv)
    if args.validation:
        root = Path(args.runs_root).resolve() / 'validation'
        runs: dict[str, list[tuple[int, dict[str, Any]]]] = {c: [] for c in args.candidates}
        for s in args.seeds:  # interleaved: seed s of every candidate before seed s + 1
            for c in args.candidates:
                extra = [o for o in c.split(',') if o]
                folder = root / (c.replace('=', '-').replace(',', '_') or 'recipe') / f'seed{s}'
                runs[c].append((s, run_seed(args.recipe, s, folder, [*VALIDATION, *args.overrides, *extra])))
        emit(render_choice(args.recipe, runs, machine_info(), typed_command('default_job', argv)), args.out)
        return 0
    rows = [(s, run_seed(args.recipe, s, Path(args.runs_root).resolve() / f'seed{s}', args.overrides))
            for s in args.seeds]
    emit(render(args.recipe, rows, machine_info(), typed_command('default_job', argv)), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
