"""A study repeated with seeds: one :class:`benchmarks.core.analysis.Analysis` per seed, joined into means with 95%
intervals (:mod:`benchmarks.core.intervals`) and paired differences.

Pairing: seed ``s`` of a run is compared with seed ``s`` of the baseline (its target is that seed's baseline final
accuracy, its speedup that seed's baseline time over its own time-to-target) and with seed ``s`` of any other run;
a difference's interval is the t-interval of the per-seed differences. A speedup, a ratio, is summarised on the log
scale (:func:`benchmarks.core.intervals.ratio_interval`: geometric mean [lo, hi], never negative). Nothing here
knows what the runs are: a study's report (e.g. :mod:`benchmarks.kd.report`) picks the runs and the claims.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from benchmarks.core.analysis import Analysis, Describe, RunResult, analyse
from benchmarks.core.intervals import Interval, mean_interval, ratio_interval, verdict
from benchmarks.study.spec import Study, seed_root

__all__ = ['Repeats', 'RunStats', 'load_repeats', 'mean_or_none', 'SPEEDUP_RULE', 'RATIOS', 'threshold_verdict']

log = logging.getLogger(__name__)

SPEEDUP_RULE = (
    'A speedup interval is given when every seed of the run reached its seed\'s target; when some seeds did not, '
    'the run is shown as "reached in k of n seeds" with no interval, and a claim that its speedup exceeds a '
    'threshold is "within noise" (k > 0) or "does not hold" (k = 0).'
)
RATIOS = ('speedup', 'speedup_with_teachers', 'speedup_with_cache')  # RunStats' ratios: log-scale intervals
Value = Callable[[RunResult], Optional[float]]


def mean_or_none(values: list[Optional[float]], ratio: bool = False) -> Optional[Interval]:
    """The mean and 95% interval of ``values`` (of a ``ratio``: the geometric mean and the log-scale interval,
    :func:`benchmarks.core.intervals.ratio_interval`), or None unless every one is present."""
    present = [v for v in values if v is not None]
    if not present or len(present) != len(values):
        return None
    return ratio_interval(present) if ratio else mean_interval(present)


@dataclass
class RunStats:
    """One run over its seeds: the per-seed values and their intervals (None when a seed lacks the value)."""

    name: str
    first: RunResult                     # the run of the first seed that has it (tags, series, duration)
    seeds: list[int]
    final_acc: list[Optional[float]]
    time_to_target: list[Optional[float]]
    speedup: list[Optional[float]]
    speedup_with_teachers: list[Optional[float]]
    train_s: list[Optional[float]]
    cpu_s: list[Optional[float]]
    teacher_s: list[float]
    cache_s: list[Optional[float]] = field(default_factory=list)  # its share of its caches' production, per seed
    time_to_target_with_cache: list[Optional[float]] = field(default_factory=list)
    speedup_with_cache: list[Optional[float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The per-seed numbers and what the run is, for ``summary.json`` (the cache's only for a run that read
        one)."""
        keys = ('seeds', 'final_acc', 'time_to_target', 'speedup', 'speedup_with_teachers', 'train_s', 'cpu_s',
                'teacher_s')
        if self.first.caches:
            keys += ('cache_s', 'time_to_target_with_cache', 'speedup_with_cache')
        r = self.first
        return {'series': r.series, 'duration': r.duration, 'tags': r.tags, 'teachers': r.teachers,
                **{k: getattr(self, k) for k in keys}}

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def reached(self) -> int:
        return sum(t is not None for t in self.time_to_target)

    def interval(self, field: str) -> Optional[Interval]:
        """The mean and 95% interval of ``field`` over the seeds (a speedup, :data:`RATIOS`: geometric mean and
        log-scale interval), or None unless every seed has a value."""
        return mean_or_none(getattr(self, field), ratio=field in RATIOS)


@dataclass
class Repeats:
    """The analyses of one study's seeds (``by_seed``, in the study's seed order)."""

    study: Study
    by_seed: dict[int, Analysis]
    roots: dict[int, str]  # where each seed's records are

    @property
    def seeds(self) -> list[int]:
        return list(self.by_seed)

    def names(self) -> list[str]:
        """Every run name with records in some seed, in the study's order (Matryoshka students after it)."""
        out: list[str] = []
        for a in self.by_seed.values():
            out += [n for n in a.results if n not in out]
        return out

    def stats(self, name: str) -> Optional[RunStats]:
        """``name`` over the seeds that have records of it (None if none has)."""
        found = [(s, a.results[name]) for s, a in self.by_seed.items() if name in a.results]
        if not found:
            return None
        pick = lambda attr: [getattr(r, attr) for _, r in found]  # noqa: E731
        return RunStats(name=name, first=found[0][1], seeds=[s for s, _ in found],
                        final_acc=[r.final_acc for _, r in found], time_to_target=pick('time_to_target'),
                        speedup=pick('speedup'), speedup_with_teachers=pick('speedup_with_teachers'),
                        train_s=pick('train_s'), cpu_s=pick('cpu_s'), teacher_s=pick('teacher_s'),
                        cache_s=pick('cache_s'), time_to_target_with_cache=pick('time_to_target_with_cache'),
                        speedup_with_cache=pick('speedup_with_cache'))

    def values(self, names: list[str], value: Value) -> dict[int, Optional[float]]:
        """Per seed, the mean of ``value`` over the runs ``names`` (e.g. a Matryoshka generation's members); None
        for a seed that lacks one of them or its value."""
        out: dict[int, Optional[float]] = {}
        for s, a in self.by_seed.items():
            vals = [value(a.results[n]) if n in a.results else None for n in names]
            out[s] = None if not vals or any(v is None for v in vals) else sum(vals) / len(vals)  # type: ignore
        return out

    def paired(self, a: list[str], b: list[str], value: Value = lambda r: r.final_acc) -> Optional[Interval]:
        """The interval of ``value(a) - value(b)`` over the seeds that have both (each side may be a group of runs,
        averaged within the seed); None if no seed has both."""
        va, vb = self.values(a, value), self.values(b, value)
        diffs = [va[s] - vb[s] for s in self.seeds if va[s] is not None and vb[s] is not None]  # type: ignore
        return mean_interval(diffs) if diffs else None

    def targets(self) -> Optional[Interval]:
        """The baseline's final accuracy over the seeds (each seed's target)."""
        vals = [a.target for a in self.by_seed.values() if a.target is not None]
        return mean_interval(vals) if vals else None


def load_repeats(study: Study, runs_root: str, teachers_root: Optional[str] = None,
                 describe: Optional[Describe] = None) -> Repeats:
    """Analyse every seed of ``study`` from the records under ``runs_root`` (``<runs_root>/seed<s>/...``); a study
    without seeds is one replica read from ``runs_root`` itself. ``teachers_root`` holds the records of teachers
    trained by another study (their training time counts as teacher cost); ``describe`` is passed to
    :func:`benchmarks.core.analysis.analyse`."""
    from benchmarks.core.records import load_runs

    by_seed: dict[int, Analysis] = {}
    roots: dict[int, str] = {}
    teacher_runs = load_runs(teachers_root) if teachers_root else None
    for i, replica in enumerate(study.replicas()):
        seed = replica.seed if replica.seed is not None else i
        roots[seed] = seed_root(runs_root, replica.seed) if replica.seed is not None else runs_root
        by_seed[seed] = analyse(replica, roots[seed], teacher_runs=teacher_runs, describe=describe)
    return Repeats(study=study, by_seed=by_seed, roots=roots)


def threshold_verdict(stats: RunStats, field: str, threshold: float) -> tuple[str, Optional[Interval]]:
    """The verdict on "``field`` (a speedup) > ``threshold``" by :data:`SPEEDUP_RULE`, and the interval used: the
    log-scale one (:func:`benchmarks.core.intervals.ratio_interval`), so the claim holds when its lower end exceeds
    ``threshold`` (the t-test of the log speedups against ``log(threshold)``)."""
    values = getattr(stats, field)
    got = [v for v in values if v is not None]
    if not got:
        return 'does not hold', None
    if len(got) < len(values):
        return 'within noise', None
    iv = ratio_interval(got)
    shifted = Interval(iv.mean - threshold, None if iv.lo is None else iv.lo - threshold,
                       None if iv.hi is None else iv.hi - threshold, iv.n)
    return verdict(shifted), iv
