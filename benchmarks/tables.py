"""The report's tables, in the shape of the seed's (5.3 to 5.6, pools, Matryoshka), as numbers first.

A :class:`Table` keeps raw values (accuracies as fractions, seconds, speedups) so that ``summary.json`` holds the
numbers and :meth:`Table.markdown` formats them. A cell is a number, ``None`` (no such run: ``-``) or a string
(``not reached``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from benchmarks.analysis import Analysis, RunResult
from benchmarks.records import duration_key

NOT_REACHED = 'not reached'
FORMATS = {
    'acc': lambda v: f'{100 * v:.2f}',
    'pp': lambda v: f'{100 * v:+.2f}',
    's': lambda v: f'{v:.1f}',
    'x': lambda v: f'{v:.2f}x',
    'int': lambda v: f'{v:d}',
    'text': str,
}


@dataclass
class Table:
    """A titled table: ``columns`` are (header, format) with a format of :data:`FORMATS`; ``rows`` raw values."""

    key: str
    title: str
    columns: list[tuple[str, str]]
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ''

    def markdown(self) -> str:
        def cell(value: Any, fmt: str) -> str:
            if value is None:
                return '-'
            if isinstance(value, str):
                return value
            return FORMATS[fmt](value)

        lines = [f'| {" | ".join(h for h, _ in self.columns)} |',
                 f'|{"|".join("---" if f == "text" else "---:" for _, f in self.columns)}|']
        for row in self.rows:
            lines.append(f'| {" | ".join(cell(v, f) for v, (_, f) in zip(row, self.columns))} |')
        if not self.rows:
            lines.append(f'| {" | ".join(["(no runs)"] + [""] * (len(self.columns) - 1))} |')
        return '\n'.join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {'title': self.title, 'columns': [h for h, _ in self.columns], 'rows': self.rows, 'note': self.note}


def _ttt(r: Optional[RunResult]) -> Any:
    if r is None:
        return None
    return r.time_to_target if r.time_to_target is not None else NOT_REACHED


def _x(r: Optional[RunResult], with_teachers: bool = False) -> Any:
    if r is None:
        return None
    if r.time_to_target is None:
        return NOT_REACHED
    if with_teachers and r.teacher_missing:
        return 'teacher time unknown'
    return r.speedup_with_teachers if with_teachers else r.speedup


def runs_table(a: Analysis) -> Table:
    """Every run: accuracy, training wall-clock, time-to-target and speedups."""
    t = Table('runs', 'All runs', [
        ('run', 'text'), ('series', 'text'), ('duration', 'text'), ('final acc %', 'acc'), ('best acc %', 'acc'),
        ('train s', 's'), ('CPU s', 's'), ('time-to-target s', 's'), ('teacher s', 's'), ('speedup', 'x'),
        ('speedup incl. teachers', 'x')])
    for r in a.results.values():
        name = r.name if r.finished else f'{r.name} (unfinished)'
        t.rows.append([name, r.series, r.duration, r.final_acc, r.best_acc, r.train_s, r.cpu_s, _ttt(r),
                       r.teacher_s if r.teachers else None, _x(r), _x(r, True)])
    return t


def _by_series_and_duration(a: Analysis) -> tuple[list[str], list[str], dict[tuple[str, str], RunResult]]:
    cells: dict[tuple[str, str], RunResult] = {}
    for r in a.tagged('baseline') + [r for r in a.tagged('kd') if r.pool_mode == 'single']:
        series = 'baseline' if 'baseline' in r.tags else r.series
        cells.setdefault((series, r.duration), r)
    durations = sorted({d for _, d in cells}, key=duration_key)
    series = ['baseline'] + sorted({s for s, _ in cells} - {'baseline'})
    return series, durations, cells


def duration_tables(a: Analysis) -> list[Table]:
    """5.3: final accuracy by duration and model, and the time-to-target speedup in the same shape."""
    series, durations, cells = _by_series_and_duration(a)
    acc = Table('5.3', 'Table 5.3: final accuracy (%) by training duration', [('model', 'text')] +
                [(d, 'acc') for d in durations])
    fast = Table('5.3-speedup', 'Table 5.3b: time-to-target speedup by training duration (teachers not counted)',
                 [('model', 'text')] + [(d, 'x') for d in durations])
    for s in series:
        acc.rows.append([s] + [cells[(s, d)].final_acc if (s, d) in cells else None for d in durations])
        fast.rows.append([s] + [_x(cells.get((s, d))) for d in durations])
    return [acc, fast]


def early_stop_tables(a: Analysis) -> list[Table]:
    """5.4 / 5.5: distilling only the first part of training (0% = no teacher, 100% = the whole run)."""
    runs = a.tagged('early_stop')
    fractions = sorted({r.kd_fraction for r in runs})
    durations = sorted({r.duration for r in runs}, key=duration_key)
    cell = {(r.duration, r.kd_fraction): r for r in runs}
    cols = [(f'{100 * f:.0f}% distilled', 'acc') for f in fractions]
    acc = Table('5.4', 'Table 5.4: final accuracy (%) by the share of training spent distilling',
                [('duration', 'text')] + cols)
    time = Table('5.5', 'Table 5.5: time-to-target by the share of training spent distilling',
                 [('duration', 'text'), ('measure', 'text')] + [(h, 's') for h, _ in cols])
    for d in durations:
        acc.rows.append([d] + [cell[(d, f)].final_acc if (d, f) in cell else None for f in fractions])
        time.rows.append([d, 'time-to-target s'] + [_ttt(cell.get((d, f))) for f in fractions])
        time.rows.append([d, 'speedup'] + [_fmt_x(_x(cell.get((d, f)))) for f in fractions])
        time.rows.append([d, 'train s (whole run)'] + [cell[(d, f)].train_s if (d, f) in cell else None
                                                      for f in fractions])
    return [acc, time]


def _fmt_x(v: Any) -> Any:
    return f'{v:.2f}x' if isinstance(v, float) else v


def teacher_cost_table(a: Analysis) -> Table:
    """5.6: the teachers' own training counted: student + teachers vs training the baseline longer."""
    t = Table('5.6', "Table 5.6: teachers' training time counted", [
        ('run', 'text'), ('final acc %', 'acc'), ('student train s', 's'), ('teacher s', 's'), ('total s', 's'),
        ('baseline s to same acc', 's'), ('baseline run', 'text'), ('baseline s / total', 'x'),
        ('speedup incl. teachers', 'x')],
        note='"baseline s to same acc": the earliest training wall-clock at which any run tagged baseline reaches the '
             "student's final accuracy (same interpolation rule); '-' when no baseline run reaches it. "
             '"baseline s / total" > 1: training the teachers and the student took less time than the baseline '
             'needs for the same accuracy.')
    for r in a.results.values():
        if not r.teachers or r.final_acc is None or r.train_s is None:
            continue
        total = None if r.teacher_missing else r.train_s + r.teacher_s
        base_s, base_run = a.time_to_reach(r.final_acc)
        ratio = base_s / total if base_s is not None and total else None
        t.rows.append([r.name, r.final_acc, r.train_s, None if r.teacher_missing else r.teacher_s, total, base_s,
                       base_run, ratio, _x(r, True)])
    return t


def teacher_sweep_table(a: Analysis) -> Table:
    t = Table('teachers', 'Teacher sweep', [('run', 'text'), ('lr', 'text'), ('duration', 'text'),
                                            ('final acc %', 'acc'), ('best acc %', 'acc'), ('train s', 's')])
    for r in a.tagged('teacher'):
        t.rows.append([r.name, f'{r.lr:g}' if r.lr is not None else None, r.duration, r.final_acc, r.best_acc,
                       r.train_s])
    return t


def baseline_at(a: Analysis, duration: str) -> Optional[RunResult]:
    """The baseline-tagged run of ``duration`` (None if there is none)."""
    return next((r for r in a.tagged('baseline') if r.duration == duration), None)


def teacher_choice_table(a: Analysis) -> Table:
    """Each teacher of the sweep teaching the same student recipe."""
    t = Table('teacher_choice', 'Teacher choice: the same student from each teacher', [
        ('run', 'text'), ('teacher', 'text'), ('teacher acc %', 'acc'), ('student acc %', 'acc'),
        ('vs baseline same duration (pp)', 'pp'), ('time-to-target s', 's'), ('speedup', 'x'),
        ('speedup incl. teacher', 'x')])
    rows = []
    for r in a.tagged('teacher_choice'):
        teacher = a.results.get(r.teachers[0]) if len(r.teachers) == 1 else None
        base = baseline_at(a, r.duration)
        delta = r.final_acc - base.final_acc if base and base.final_acc is not None and r.final_acc is not None \
            else None
        rows.append([r.name, ', '.join(r.teachers), teacher.final_acc if teacher else None, r.final_acc, delta,
                     _ttt(r), _x(r), _x(r, True)])
    t.rows = sorted(rows, key=lambda row: -1.0 if row[2] is None else row[2])
    return t


def pool_table(a: Analysis) -> Table:
    t = Table('pools', 'Teacher pools (single = one teacher)', [
        ('run', 'text'), ('mode', 'text'), ('teachers', 'int'), ('teacher forwards / step', 'int'),
        ('final acc %', 'acc'), ('train s', 's'), ('time-to-target s', 's'), ('speedup', 'x'),
        ('speedup incl. teachers', 'x')])
    for r in a.tagged('pool'):
        mode = r.pool_mode if r.pool_mode in (None, 'single', 'all', 'random_1') else f'{r.pool_mode} (k={r.k})'
        t.rows.append([r.name, mode, len(r.teachers), r.teacher_forwards, r.final_acc, r.train_s, _ttt(r), _x(r),
                       _x(r, True)])
    return t


def _mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def matryoshka_tables(a: Analysis) -> list[Table]:
    """Per generation (0 = the starting pool): mean / best / worst accuracy, and every member."""
    summary = Table('matryoshka', 'Matryoshka: generation by generation (generation 0 = the starting pool)', [
        ('entry', 'text'), ('generation', 'int'), ('members', 'int'), ('mean acc %', 'acc'), ('best acc %', 'acc'),
        ('worst acc %', 'acc'), ('mean train s', 's'), ('teacher chain s', 's')],
        note='teacher chain s: the training time of every ancestor of the generation (the pools before it), each '
             'run once.')
    members = Table('matryoshka-members', 'Matryoshka: every member', [
        ('run', 'text'), ('generation', 'int'), ('lr', 'text'), ('final acc %', 'acc'), ('train s', 's'),
        ('teacher chain s', 's'), ('speedup', 'x'), ('speedup incl. teachers', 'x')])
    for entry, generations in a.matryoshka.items():
        for g, names in enumerate(generations):
            runs = [a.results[n] for n in names if n in a.results]
            accs = [r.final_acc for r in runs if r.final_acc is not None]
            chain = max((r.teacher_s for r in runs), default=0.0)
            summary.rows.append([entry, g, len(names), _mean(accs), max(accs, default=None),
                                 min(accs, default=None), _mean([r.train_s for r in runs if r.train_s is not None]),
                                 chain])
            for r in runs:
                members.rows.append([r.name, g, f'{r.lr:g}' if r.lr is not None else None, r.final_acc, r.train_s,
                                     r.teacher_s, _x(r), _x(r, True)])
    return [summary, members]


def all_tables(a: Analysis) -> list[Table]:
    """Every table of the report, in the report's order."""
    return [teacher_sweep_table(a), *duration_tables(a), *early_stop_tables(a), teacher_cost_table(a),
            teacher_choice_table(a), pool_table(a), *matryoshka_tables(a), runs_table(a)]
