"""The BERT study's report (issue 10), read only from run records: masked-LM pre-training with scheduled distillation,
then the fine-tuned scores of its checkpoints (:mod:`benchmarks.bert.study`).

    python -m benchmarks.bert.report runs/study-bert --study benchmarks/studies/bert_sotu.yaml \\
        --teachers runs/study-bert-teachers --out benchmarks/results/bert_sotu

ROOT is the study's runs root (``--study``, default ``benchmarks/studies/bert_sotu.yaml``, names its runs and
seeds); ``--teachers`` the teacher sweep's runs root. MLM: time-to-target on the baseline's final MLM accuracy, per
seed, with the benchmarks' core (:mod:`benchmarks.core.repeats`). Fine-tuned: each student checkpoint is a point (its
pre-training wall-clock, its fine-tuned score); the target is the fine-tuned score of the same seed's baseline final
checkpoint, and the same crossing rule gives the time-to-target. Means with 95% t-intervals over seeds; verdicts by
them. Writes ``report.md``, ``mlm_accuracy_vs_time.png``, ``summary.json`` and copies the records to ``<out>/runs``
and ``<out>/teachers``, from which the report regenerates.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from algorithms.callbacks.machine import read_machines
from benchmarks.bert.study import FINETUNE_DIR, FINETUNE_METRIC, FINETUNE_RECIPE
from benchmarks.core.intervals import mean_interval, verdict
from benchmarks.core.markdown import table
from benchmarks.core.plots import plot_accuracy_vs_time
from benchmarks.core.records import copy_records, load_run, load_runs
from benchmarks.core.repeats import Repeats, load_repeats, mean_or_none, threshold_verdict
from benchmarks.core.repeats_report import machines_table, num, pct, rules, run_table
from benchmarks.core.reporting import ReportError, command, header, report_main, write_report
from benchmarks.core.speedup import crossing_time, speedup
from benchmarks.kd.describe import kd_facts
from benchmarks.study.spec import Study, load_study, seed_root

PROG = 'benchmarks.bert.report'
STUDY = 'benchmarks/studies/bert_sotu.yaml'  # the default --study: the committed report's
GOAL_MLM, GOAL_FINETUNED = 1.2, 1.4  # the seed's 1.20x and 1.42x for KD during the first 30% of BERT-base training
PLOT = 'mlm_accuracy_vs_time.png'


@dataclass
class FinetuneSeries:
    """One pre-training run's fine-tuned scores over the seeds: per seed, ``[(pre-training wall-clock, score)]``."""

    run: str
    curves: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    steps: dict[int, list[int]] = field(default_factory=dict)


def finetune_series(study: Study, runs_root: str, metric: str = FINETUNE_METRIC) -> dict[str, FinetuneSeries]:
    """Every fine-tuned checkpoint's score beside its pre-training wall-clock (from the pre-training run's record
    at the checkpoint's step; checkpoints are saved at evaluation steps)."""
    out: dict[str, FinetuneSeries] = {r.name: FinetuneSeries(r.name) for r in study.runs}
    for replica in study.replicas():
        seed = replica.seed if replica.seed is not None else 0
        root = Path(seed_root(runs_root, replica.seed) if replica.seed is not None else runs_root)
        for run in replica.runs:
            pre = load_run(root / run.name, run.name) if (root / run.name).is_dir() else None
            folder = root / FINETUNE_DIR / run.name
            tuned = load_runs(folder) if folder.is_dir() else {}
            if pre is None or not tuned:
                continue
            wct = {int(e['step']): float(e['train_wct_s']) for e in pre.evals}
            points = []
            for key, files in tuned.items():
                step = int(key.rsplit('ba', 1)[-1])
                metrics = (files.summary or {}).get('final_metrics') or {}
                if files.finished and metric in metrics and step in wct:
                    points.append((step, wct[step], float(metrics[metric])))
            points.sort()
            out[run.name].curves[seed] = [(t, s) for _, t, s in points]
            out[run.name].steps[seed] = [st for st, _, _ in points]
    return out


def finetune_stats(series: dict[str, FinetuneSeries], baseline: str) -> dict[str, dict[str, Any]]:
    """Per run: per-seed final score, time-to-target and speedup against the same seed's baseline."""
    base = series[baseline].curves
    stats: dict[str, dict[str, Any]] = {}
    for name, s in series.items():
        seeds = [seed for seed in s.curves if seed in base and base[seed]]
        row: dict[str, Any] = {'seeds': seeds, 'final': [], 'ttt': [], 'speedup': []}
        for seed in seeds:
            target_t, target = base[seed][-1]
            curve = s.curves[seed]
            ttt = target_t if name == baseline else crossing_time(curve, target)
            row['final'].append(curve[-1][1] if curve else None)
            row['ttt'].append(ttt)
            row['speedup'].append(speedup(target_t, ttt))
        stats[name] = row
    return stats


def finetune_table(series: dict[str, FinetuneSeries], stats: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, st in stats.items():
        if not st['seeds']:
            continue
        fr = series[name]
        means = []
        n_points = max(len(fr.curves[s]) for s in st['seeds'])
        for i in range(n_points):
            vals = [fr.curves[s][i][1] for s in st['seeds'] if i < len(fr.curves[s])]
            steps = {fr.steps[s][i] for s in st['seeds'] if i < len(fr.steps[s])}
            means.append(f'{"/".join(map(str, sorted(steps)))}: {100 * sum(vals) / len(vals):.2f}')
        reached = f'reached in {sum(t is not None for t in st["ttt"])} of {len(st["seeds"])}'
        sp, ttt = mean_or_none(st['speedup'], ratio=True), mean_or_none(st['ttt'])
        rows.append([name, '; '.join(means), pct(mean_or_none(st['final'])), num(ttt, 1) if ttt else reached,
                     f'{sp.fmt(2)}x' if sp else f'{reached} seeds'])
    return '\n'.join(table(['run', 'fine-tuned score by pre-training step (mean over seeds, %)', 'final (%)',
                            'time-to-target (s of pre-training)', 'speedup'], rows))


def teacher_table(teachers_root: Optional[str], metric: str) -> tuple[str, Optional[str]]:
    """The sweep's validation scores and training times; the best teacher's name."""
    if not teachers_root or not Path(teachers_root).is_dir():
        return '(teacher sweep records not given)', None
    runs = load_runs(teachers_root)
    rows, best = [], None
    for name, files in sorted(runs.items()):
        curve = files.curve(metric)
        score = curve[-1][1] if curve else None
        opt = files.config.get('optimizer') or {}
        rows.append([name, opt.get('lr'), opt.get('weight_decay'), pct(mean_interval([score])) if score else 'n/a',
                     num(mean_interval([files.train_wct_s]), 1) if files.train_wct_s else 'n/a'])
        if score is not None and (best is None or score > best[1]):
            best = (name, score)
    return '\n'.join(table(['teacher', 'lr', 'weight decay', 'validation MLM accuracy (%)', 'training (s)'],
                           rows)), (best[0] if best else None)


def findings(r: Repeats, stats: dict[str, dict[str, Any]], study: Study) -> list[str]:
    out = []
    for name, goal, what in (('kd-kl-30', GOAL_MLM, 'MLM accuracy'), ('kd-kl-100', GOAL_MLM, 'MLM accuracy')):
        st = r.stats(name)
        if st is None:
            continue
        v, iv = threshold_verdict(st, 'speedup', goal)
        out.append(f'- **{name} reaches the baseline\'s {what} >= {goal}x faster** (the seed\'s KD-30%: 1.20x): '
                   f'**{v}**. Speedup {iv.fmt(2) + "x" if iv else f"reached in {st.reached} of {st.n} seeds"}; '
                   f'per seed {", ".join("n/a" if x is None else f"{x:.2f}x" for x in st.speedup)}.')
    for name in ('kd-kl-30', 'kd-kl-100'):
        st = stats.get(name)
        if not st or not st['seeds']:
            continue
        v, iv = threshold_verdict(SimpleNamespace(speedup=st['speedup']), 'speedup', GOAL_FINETUNED)
        reached, n = sum(t is not None for t in st['ttt']), len(st['seeds'])
        out.append(f'- **{name} reaches the baseline\'s fine-tuned score >= {GOAL_FINETUNED}x faster** (the seed\'s '
                   f'KD-30% on GLUE: 1.42x): **{v}**. Speedup '
                   f'{iv.fmt(2) + "x" if iv else f"reached in {reached} of {n} seeds"}; per seed '
                   f'{", ".join("n/a" if x is None else f"{x:.2f}x" for x in st["speedup"])}.')
    for a, b in (('kd-kl-30', 'baseline'), ('kd-kl-100', 'baseline'), ('kd-kl-30', 'kd-kl-100')):
        iv = r.paired([a], [b])
        if iv is not None:
            out.append(f'- Final MLM accuracy, {a} minus {b}: {iv.fmt(2, 100.0)} points: **{verdict(iv)}** '
                       '(a positive difference holds when the interval excludes 0).')
    return out


def noise_note(stats: dict[str, dict[str, Any]], baseline: str, n_eval: int = 1000) -> str:
    """How much one fine-tune's accuracy moves by the draw of its ``n_eval`` validation sentences alone."""
    finals = [v for v in stats.get(baseline, {}).get('final', []) if v is not None]
    if not finals:
        return ''
    p = sum(finals) / len(finals)
    se = 100 * math.sqrt(p * (1 - p) / n_eval)
    return (f'One fine-tune\'s accuracy on {n_eval:,} validation sentences has a sampling standard error of about '
            f'{se:.1f} points (binomial, at the baseline\'s {100 * p:.1f}%), before any variation of training: '
            'differences between checkpoints of that size are noise, and a time-to-target read off such a curve moves '
            'with it.')


def render(r: Repeats, stats: dict[str, dict[str, Any]], series: dict[str, FinetuneSeries], teachers: str,
           best: Optional[str], regen: str, rerun: str) -> list[str]:
    s = r.study
    return [
        *header(f'BERT study `{s.name}`: scheduled distillation in masked-LM pre-training, {len(r.seeds)} seeds', regen,
                rerun, sessions=[m for root in r.roots.values() for m in read_machines(root)]),
        '## The study', '', s.description.strip(), '',
        f'Fine-tuning (no distillation): `{FINETUNE_RECIPE}` on the SST-2-style task (Rotten Tomatoes snippets, '
        f'9,568 training and 1,000 validation sentences, 2 epochs), accuracy on its validation split, the same recipe '
        'and seed for every checkpoint of a seed. The fine-tuned checkpoints are listed by step in the table below '
        '(the baseline\'s final one, the students\' at fractions of pre-training).', '',
        '## Rules', '',
        *rules(f'**MLM target** per seed: the final MLM accuracy of that seed\'s `{s.baseline}` (masked positions of '
               f'the held-out addresses); over the seeds {pct(r.targets())}%. **Fine-tuned target** per seed: the '
               'fine-tuned score of that seed\'s baseline final checkpoint (a checkpoint counts as an evaluation '
               'below). Times are pre-training wall-clock (evaluation excluded).'), '',
        '## Findings', '', *findings(r, stats, s), '',
        '## The teacher sweep (seed 100, validation split)', '', teachers, '',
        f'Every student distilled from the best of them by validation MLM accuracy: `{best}` (a greedy pool of '
        'one). The "incl. teachers" column adds the training time of all four sweep runs (the pool chose among them); '
        'in the Iterated Runs setting the sweep is run anyway and the plain speedup applies.', '',
        '## Pre-training (masked-LM accuracy on the test addresses; mean [95% CI] over seeds)', '', run_table(r), '',
        f'Seed {r.seeds[0]}\'s pre-training runs, MLM accuracy against training wall-clock (Pareto front of '
        'final points):',
        '', f'![MLM accuracy vs wall-clock]({PLOT})', '',
        '## Fine-tuned on the SST-2-style task (accuracy on its validation split)', '',
        finetune_table(series, stats), '', noise_note(stats, s.baseline), '',
        '## Where the runs came from', '', machines_table(r)]


def make(root: Path, study_path: str, out: Path, teachers_root: Optional[Path]) -> tuple[list[str], dict[str, Any]]:
    """The report's lines and numbers from the records under ``root`` (and the sweep's under ``teachers_root``);
    writes the plot and ``summary.json`` into ``out`` and copies the records to ``<out>/runs`` and
    ``<out>/teachers`` (not ``report.md``). Nothing is written if a root holds no run record."""
    study = load_study(study_path)
    if not load_runs(root):
        raise ReportError(f'no run records (config.yaml) under {root}')
    if teachers_root is not None and not teachers_root.is_dir():
        raise ReportError(f'--teachers: no such folder: {teachers_root}')
    teachers_arg = str(teachers_root) if teachers_root is not None else None
    r = load_repeats(study, str(root), teachers_arg, describe=kd_facts)
    for analysis in r.by_seed.values():  # the fine-tunes live under the seeds' roots: not pre-training runs
        analysis.results = {k: v for k, v in analysis.results.items() if not k.startswith(f'{FINETUNE_DIR}/')}
    series = finetune_series(study, str(root))
    stats = finetune_stats(series, study.baseline)
    teachers, best = teacher_table(teachers_arg, study.metric)
    regen = command(PROG, out / 'runs', out, [('--study', study_path),
                                              ('--teachers', out / 'teachers' if teachers_root else None)])
    rerun = f'the commands in the header of `{study_path}`'
    lines = render(r, stats, series, teachers, best, regen, rerun)
    plot_accuracy_vs_time(r.by_seed[r.seeds[0]], out / PLOT)
    summary = {'study': study.name, 'seeds': r.seeds, 'command': regen, 'best_teacher': best,
               'mlm': {n: st.as_dict() for n in r.names() if (st := r.stats(n)) is not None},
               'finetuned': stats, 'finetune_curves': {n: {str(k): v for k, v in s.curves.items()}
                                                       for n, s in series.items()}}
    (out / 'summary.json').write_text(json.dumps(summary, indent=2, default=str) + '\n')
    copy_records(root, out / 'runs')
    if teachers_root is not None:
        copy_records(teachers_root, out / 'teachers')
    return lines, summary


def build(runs: str, study_path: str, out: str, teachers_root: Optional[str] = None) -> dict[str, Any]:
    """Write the whole report of the records under ``runs`` into ``out`` (created); its numbers."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines, summary = make(Path(runs), study_path, out_dir, Path(teachers_root) if teachers_root else None)
    write_report(out_dir, lines)
    return summary


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument('--study', default=STUDY, help='the study YAML (its runs, seeds, baseline; default %(default)s)')
    p.add_argument('--teachers', type=Path, default=None, help="the teacher sweep's runs root (its records)")


def main(argv: Optional[list[str]] = None) -> int:
    return report_main(PROG, __doc__, lambda root, out, args: make(root, args.study, out, args.teachers)[0], argv,
                       "the study's runs root, or the committed copies <out>/runs", options)


if __name__ == '__main__':
    sys.exit(main())
