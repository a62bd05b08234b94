"""A wall-clock-vs-accuracy report built only from run records (config.yaml, record.jsonl, summary.json, manifests).

    .venv/bin/python -m benchmarks.report --runs runs/study \\
        --study benchmarks/studies/fashion_mnist.yaml --out benchmarks/results/fashion_mnist

Writes ``<out>/report.md`` (tables 5.3-5.6, teacher choice, pools, Matryoshka, findings, the machine), the plots
``<out>/accuracy_vs_time.png`` and ``<out>/accuracy_vs_time_with_teachers.png``, ``<out>/summary.json`` (the numbers)
and copies the small record files (never checkpoints) to ``<out>/runs/``, from which the same command with
``--runs <out>/runs`` regenerates the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

from benchmarks.analysis import Analysis, analyse
from benchmarks.findings import Finding, all_findings
from benchmarks.plots import plot_accuracy_vs_time
from benchmarks.records import copy_records, load_machines
from benchmarks.speedup import CROSSING_RULE
from benchmarks.study_spec import StudyError, load_study
from benchmarks.tables import Table, all_tables

log = logging.getLogger('benchmarks.report')
PLOT = 'accuracy_vs_time.png'
PLOT_TEACHERS = 'accuracy_vs_time_with_teachers.png'
TEACHER_RULE = (
    "Teacher cost: a run's teachers are the checkpoints its config names; each teacher run's whole training "
    'wall-clock (its summary.json) is added once, and so are its own teachers, recursively (a Matryoshka generation '
    'carries the whole chain of pools before it). Several checkpoints of one run, or one teacher reached twice, '
    'count once.'
)
NOISE = (
    'Each number comes from a single run: nothing here is repeated, so small differences (a few tenths of a point '
    'of accuracy; on shared CPU machines up to ~30% of wall-clock, see the design notes) are within noise. The '
    'verdicts are plain comparisons of these numbers, re-derived whenever the report is generated.'
)


def command_line(runs: str, study: str, out: str) -> str:
    return ' '.join(['.venv/bin/python -m benchmarks.report', '--runs', shlex.quote(runs), '--study',
                     shlex.quote(study), '--out', shlex.quote(out)])


def _machine_table(machines: list[dict[str, Any]], now: dict[str, Any]) -> str:
    keys = ['date', 'device', 'cpu', 'cores', 'torch_threads', 'platform', 'python', 'torch', 'composer']
    rows = [('runs made (study driver)', m) for m in machines] + [('report generated', now)]
    lines = ['| when | ' + ' | '.join(keys) + ' |', '|---|' + '---|' * len(keys)]
    for label, m in rows:
        extra = f" ({len(m.get('runs', []))} runs)" if 'runs' in m else ''
        lines.append(f'| {label}{extra} | ' + ' | '.join(str(m.get(k, '-')) for k in keys) + ' |')
    return '\n'.join(lines)


def _front_text(front: list[tuple[float, float, str]]) -> str:
    return ', '.join(f'{name} ({100 * acc:.2f}% at {t:.0f} s)' for t, acc, name in front) or '-'


def render(a: Analysis, tables: list[Table], findings: list[Finding], machines: list[dict[str, Any]],
           now: dict[str, Any], cmd: str, regen: str) -> str:
    """The markdown report."""
    s = a.study
    n_done = sum(r.finished for r in a.results.values())
    out = [f'# Wall-clock vs accuracy: study `{s.name}`', '',
           f'Generated {now.get("date", "")} with `{cmd}`; regenerate it from the records committed beside it with',
           '', '```', regen, '```', '',
           f'Runs: {len(a.results)} with records ({n_done} finished). '
           + (f'Not run yet: {", ".join(a.missing)}.' if a.missing else 'Every run of the study has records.'), '']
    if s.description:
        out += ['## Notes from the study', '', s.description.strip(), '']
    out += ['## Target and rules', '']
    if a.target is not None:
        out.append(f'- **Target**: the final {s.metric} of the baseline `{s.baseline}`, **{100 * a.target:.2f}%**; '
                   f'**baseline time** = its training wall-clock at its last evaluation, **{a.baseline_s:.1f} s** '
                   '(evaluation time excluded from every clock).')
    else:
        out.append(f'- **Target**: not available (no records for the baseline `{s.baseline}`).')
    out += [f'- **Between evaluations**: {CROSSING_RULE}',
            '- **Speedup** = baseline time / the run\'s time-to-target; "incl. teachers" adds the teachers\' own '
            'training time to the run\'s time.', f'- {TEACHER_RULE}', '',
            '## Findings', '', NOISE, '', *[f.markdown() for f in findings], '',
            '## Plots', '', f'![accuracy vs training wall-clock]({PLOT})', '',
            f'Pareto front (final points): {_front_text(a.pareto())}.', '',
            f"![accuracy vs wall-clock with the teachers' training added]({PLOT_TEACHERS})", '',
            f'Pareto front with teacher time: {_front_text(a.pareto(True))}.', '', '## Tables', '']
    for t in tables:
        out += [f'### {t.title}', '', t.markdown(), '']
        if t.note:
            out += [t.note, '']
    out += ['## Where the runs came from', '', _machine_table(machines, now), '']
    return '\n'.join(out)


def summary(a: Analysis, tables: list[Table], findings: list[Finding], machines: list[dict[str, Any]],
            now: dict[str, Any], cmd: str) -> dict[str, Any]:
    """The numbers of the report, for machines."""
    return {
        'study': a.study.name, 'command': cmd, 'generated': now, 'machines_of_runs': machines,
        'metric': a.study.metric, 'baseline': a.study.baseline, 'target': a.target, 'baseline_s': a.baseline_s,
        'rule_between_evaluations': CROSSING_RULE, 'teacher_cost_rule': TEACHER_RULE, 'missing': a.missing,
        'runs': {r.name: {
            'tags': r.tags, 'series': r.series, 'duration': r.duration, 'finished': r.finished,
            'final_acc': r.final_acc, 'best_acc': r.best_acc, 'final_s': r.final_s, 'train_s': r.train_s,
            'cpu_s': r.cpu_s, 'time_to_target_s': r.time_to_target, 'teachers': r.teachers,
            'teacher_s': r.teacher_s, 'teacher_runs': r.teacher_runs, 'teacher_missing': r.teacher_missing,
            'speedup': r.speedup, 'speedup_with_teachers': r.speedup_with_teachers, 'kd_fraction': r.kd_fraction,
            'pool_mode': r.pool_mode, 'generation': r.generation, 'curve': r.curve,
        } for r in a.results.values()},
        'pareto': a.pareto(), 'pareto_with_teachers': a.pareto(True),
        'tables': {t.key: t.as_dict() for t in tables},
        'findings': [{'key': f.key, 'claim': f.claim, 'verdict': f.verdict, 'text': f.text} for f in findings],
    }


def _copy(runs: Path, dest: Path) -> None:
    src, dst = runs.resolve(), dest.resolve()
    if src == dst or dst in src.parents:
        log.info('records are read from %s: not copied onto themselves', runs)
        return
    if dest.exists():
        shutil.rmtree(dest)
    log.info('copied %d record files to %s', copy_records(runs, dest), dest)


def build_report(runs: str, study_path: str, out: str, cmd: Optional[str] = None) -> dict[str, Any]:
    """Write the report of the records under ``runs`` for the study ``study_path`` into ``out``; return summary."""
    from benchmarks.machine import machine_info
    study = load_study(study_path)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    analysis = analyse(study, runs)
    tables = all_tables(analysis)
    findings = all_findings(analysis)
    machines = load_machines(runs)
    now = machine_info()
    cmd = cmd or command_line(runs, study_path, out)
    regen = command_line(f'{out.rstrip("/")}/runs', study_path, out)
    plot_accuracy_vs_time(analysis, out_dir / PLOT)
    plot_accuracy_vs_time(analysis, out_dir / PLOT_TEACHERS, with_teachers=True)
    (out_dir / 'report.md').write_text(render(analysis, tables, findings, machines, now, cmd, regen))
    numbers = summary(analysis, tables, findings, machines, now, cmd)
    (out_dir / 'summary.json').write_text(json.dumps(numbers, indent=2) + '\n')
    _copy(Path(runs), out_dir / 'runs')
    log.info('wrote %s (report.md, summary.json, %s, %s)', out_dir, PLOT, PLOT_TEACHERS)
    return numbers


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    p = argparse.ArgumentParser(prog='python -m benchmarks.report', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--runs', required=True, help="the study's runs root, or the committed copies <out>/runs")
    p.add_argument('--study', required=True, help='the study YAML (baseline, tags)')
    p.add_argument('--out', required=True, help='output folder, e.g. benchmarks/results/fashion_mnist')
    args = p.parse_args(argv)
    if not Path(args.runs).is_dir():
        sys.stderr.write(f'error: --runs: no such folder: {args.runs}\n')
        return 2
    try:
        build_report(args.runs, args.study, args.out)
    except StudyError as e:
        sys.stderr.write(f'error: {e}\n')
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
