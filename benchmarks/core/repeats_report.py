"""The pieces of a report on a study repeated with seeds (:class:`benchmarks.core.repeats.Repeats`): interval cells, the
table of every run, the machines table, findings with their verdicts and the rules paragraph (the header and the
regenerate command are every report's: :mod:`benchmarks.core.reporting`). Each study's own findings and tables stay
in its module (:mod:`benchmarks.kd.report`, :mod:`benchmarks.bert.report`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from algorithms.callbacks.machine import read_machines
from benchmarks.core.intervals import RATIO_RULE, RULE, Interval
from benchmarks.core.markdown import table
from benchmarks.core.repeats import SPEEDUP_RULE, Repeats, RunStats
from benchmarks.core.speedup import CROSSING_RULE

__all__ = ['Finding', 'pct', 'num', 'speed_cell', 'run_table', 'machines_table', 'rules']


@dataclass
class Finding:
    """A claim, its verdict (:func:`benchmarks.core.intervals.verdict`) and the numbers behind it."""

    claim: str
    verdict: str
    evidence: str

    def markdown(self) -> str:
        return f'- **{self.claim}**: **{self.verdict}**. {self.evidence}'


def pct(iv: Optional[Interval]) -> str:
    """A fraction's interval in percent, ``'n/a'`` without one."""
    return iv.fmt(2, 100.0) if iv is not None else 'n/a'


def num(iv: Optional[Interval], digits: int = 2) -> str:
    return iv.fmt(digits) if iv is not None else 'n/a'


def speed_cell(st: RunStats, field: str = 'speedup') -> str:
    """``'1.22 [0.76, 1.96]x'`` (geometric mean [log-scale 95% interval]) when every seed reached the target, else
    ``'reached in k of n seeds'``."""
    iv = st.interval(field)
    return iv.fmt(2) + 'x' if iv is not None else f'reached in {st.reached} of {st.n} seeds'


def _ttt_cell(st: RunStats) -> str:
    ttt = st.interval('time_to_target')
    return num(ttt, 1) if ttt else f'reached in {st.reached} of {st.n}'


def _cache_cells(st: RunStats) -> list[str]:
    """Time-to-target and speedup with the run's share of its caches' production; ``n/a`` where every seed
    reached the target but a production time is unknown."""
    ttt = st.interval('time_to_target_with_cache')
    if ttt is None and st.reached == st.n:
        return ['n/a (production time unknown)', 'n/a']
    return [num(ttt, 1) if ttt else f'reached in {st.reached} of {st.n}', speed_cell(st, 'speedup_with_cache')]


def run_table(r: Repeats) -> str:
    """Every run over its seeds: series, duration, final accuracy, time-to-target, speedups, clocks; when some run
    read a teacher cache, its time-to-target and speedup with its share of the cache's production too."""
    stats = [st for name in r.names() if (st := r.stats(name)) is not None]
    cached = any(st.first.caches for st in stats)
    rows = []
    for st in stats:
        extra = _cache_cells(st) if cached else []
        rows.append([st.name, st.first.series, st.first.duration, pct(st.interval('final_acc')), _ttt_cell(st),
                     speed_cell(st), *extra, speed_cell(st, 'speedup_with_teachers'),
                     num(st.interval('train_s'), 1), num(st.interval('cpu_s'), 1)])
    columns = ['time-to-target incl. cache (s)', 'speedup incl. cache'] if cached else []
    return '\n'.join(table(['run', 'series', 'duration', 'final accuracy (%)', 'time-to-target (s)', 'speedup',
                            *columns, 'speedup incl. teachers', 'training wall-clock (s)', 'process CPU (s)'], rows))


def machines_table(r: Repeats) -> str:
    """Per seed, the machine sessions its runs came from (``machine.json`` of each seed's root)."""
    rows = [[s, m.get('date'), m.get('cpu'), m.get('cores'), m.get('torch'), m.get('composer'), len(m.get('runs', []))]
            for s, root in r.roots.items() for m in read_machines(root)]
    return '\n'.join(table(['seed', 'when', 'cpu', 'cores', 'torch', 'composer', 'runs'], rows))


def rules(target: str) -> list[str]:
    """The rules paragraph: how ``target`` is set (a markdown bullet's text), the crossing rule, the interval and
    verdict rule, the ratio (log-scale) rule, the speedup rule."""
    return [f'- {target}', f'- **Between evaluations**: {CROSSING_RULE}',
            f'- **Intervals and verdicts**: {RULE}. Differences between runs are paired by seed.',
            f'- **Ratios**: {RATIO_RULE}.', f'- {SPEEDUP_RULE}']
