"""The BERT study's second half (issue 10): fine-tuning of the masked-LM pre-training checkpoints.

    python -m benchmarks.study benchmarks/studies/bert_sotu_teachers.yaml     # the A1..A4 teacher sweep
    python -m benchmarks.study benchmarks/studies/bert_sotu.yaml              # baseline / KD-30% / KD-100%
    python -m benchmarks.bert.study benchmarks/studies/bert_sotu.yaml --only kd-kl-30
    python -m benchmarks.bert.report runs/study-bert --study benchmarks/studies/bert_sotu.yaml \\
        --teachers runs/study-bert-teachers --out benchmarks/results/bert_sotu

This command fine-tunes the pre-training checkpoints of every seed on the SST-2-style task (``yamls/glue/
sst2_local_tiny.yaml``, fixed in advance, no distillation): the students' checkpoints at 50, 60, 70, 80 and 100% of
pre-training (``--fractions``; ``--only`` names the students, all by default) and the baseline's final one, each into
``<runs_root>/seed<s>/finetune/<run>/ba<step>/`` through :func:`recipes.core.cli.train_stage`; a fine-tune whose
``summary.json`` says finished is skipped, so the command resumes. The report is :mod:`benchmarks.bert.report`.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from algorithms.callbacks.run_record import epoch_checkpoints, run_finished
from benchmarks.core.reporting import study_main
from benchmarks.study.spec import REPO, Study, load_study, seed_root

log = logging.getLogger('benchmarks.bert.study')

FINETUNE_RECIPE = 'yamls/glue/sst2_local_tiny.yaml'
FINETUNE_METRIC = 'eval/Accuracy'  # the fine-tuned score the report reads
FRACTIONS = (0.5, 0.6, 0.7, 0.8, 1.0)
FINETUNE_DIR = 'finetune'  # <runs_root>/seed<s>/finetune/<run>/ba<step>/
_CKPT = re.compile(r'-ba(?P<step>\d+)-rank0\.pt$')


@dataclass
class FinetuneJob:
    """One pre-training checkpoint to fine-tune."""

    seed: int
    run: str
    step: int
    checkpoint: Path
    out: Path


def checkpoints(run_dir: Path) -> dict[int, Path]:
    """``{step: path}`` of a run's Composer checkpoints (``ep<e>-ba<step>-rank0.pt``, the run-folder protocol's)."""
    return {int(_CKPT.search(p.name)['step']): p for p in epoch_checkpoints(run_dir)}


def finetune_jobs(study: Study, runs_root: str, fractions: tuple[float, ...] = FRACTIONS,
                  runs: Optional[list[str]] = None) -> list[FinetuneJob]:
    """The checkpoints to fine-tune, seed by seed (interleaved as the study ran): for the baseline its last one, for
    every other run (of ``runs``, default all) those at ``fractions`` of its steps (the nearest saved checkpoint)."""
    jobs = []
    for replica in study.replicas():
        root = Path(seed_root(runs_root, replica.seed) if replica.seed is not None else runs_root)
        for run in replica.runs:
            if runs is not None and run.name not in runs and run.name != study.baseline:
                continue
            found = checkpoints(root / run.name)
            if not found:
                log.warning('%s: no checkpoints under %s', run.name, root / run.name / 'checkpoints')
                continue
            last = max(found)
            wanted = [1.0] if run.name == study.baseline else list(fractions)
            steps = sorted({min(found, key=lambda s: abs(s - f * last)) for f in wanted})
            jobs += [FinetuneJob(replica.seed if replica.seed is not None else 0, run.name, s, found[s],
                                 root / FINETUNE_DIR / run.name / f'ba{s}') for s in steps]
    return jobs


def finetune_config(job: FinetuneJob, recipe: str = FINETUNE_RECIPE, extra: Optional[list[str]] = None) -> dict:
    """The resolved, checked config that fine-tunes ``job``'s checkpoint with ``recipe`` (no checkpoints saved)."""
    from recipes.core.builders import load_checked

    overrides = [f'model.pretrained={job.checkpoint}', f'run_dir={job.out}', 'save_folder=null',
                 f'run_name=finetune-s{job.seed}-{job.run}-ba{job.step}', f'seed={job.seed}', 'progress_bar=false',
                 *(extra or [])]
    return load_checked(REPO / recipe if not Path(recipe).is_file() else recipe, overrides)


def finetune(study: Study, runs_root: str, recipe: str = FINETUNE_RECIPE, extra: Optional[list[str]] = None,
             fractions: tuple[float, ...] = FRACTIONS, runs: Optional[list[str]] = None) -> int:
    """Run every unfinished fine-tune of the study; returns the number run. Every fine-tune's config is resolved
    and checked before the first one trains (a bad ``--set`` key or recipe fails at once, in one line)."""
    from recipes.core.cli import train_stage

    jobs = finetune_jobs(study, runs_root, fractions, runs)
    todo = [j for j in jobs if not run_finished(j.out)]
    configs = [finetune_config(job, recipe, extra) for job in todo]
    log.info('%d fine-tunes, %d to run', len(jobs), len(todo))
    for i, (job, cfg) in enumerate(zip(todo, configs), 1):
        log.info('[%d/%d] seed %d %s step %d', i, len(todo), job.seed, job.run, job.step)
        train_stage(cfg)
    return len(todo)


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument('--runs-root', default=None, help="default: the study's runs_root")
    p.add_argument('--recipe', default=FINETUNE_RECIPE)
    p.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='overrides for every fine-tune')
    p.add_argument('--fractions', nargs='+', type=float, default=list(FRACTIONS),
                   help='fractions of pre-training whose checkpoints are fine-tuned (default: %(default)s)')
    p.add_argument('--only', nargs='+', default=None, metavar='RUN',
                   help="fine-tune only these runs' checkpoints (and the baseline's final one)")


def run(study: Study, args: argparse.Namespace) -> int:
    finetune(study, args.runs_root or study.runs_root, args.recipe, args.set, tuple(args.fractions), args.only)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    return study_main('benchmarks.bert.study', __doc__, load_study, run, argv, options)


if __name__ == '__main__':
    sys.exit(main())
