"""Join a study's definition with its run records: per run, what it is, how accurate, how fast, at what teacher cost.

Everything here is computed from the records (:mod:`benchmarks.core.records`): the target is the study baseline's final
accuracy, the baseline time its training wall-clock at its last evaluation; each run's time-to-target follows
:data:`benchmarks.core.speedup.CROSSING_RULE`; its teachers' cost is
:meth:`benchmarks.core.teacher_cost.TeacherIndex.cost`; a student of a teacher cache also carries its share of the
cache's production (:data:`benchmarks.core.teacher_cost.CACHE_RULE`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from benchmarks.core.records import RunFiles, load_manifests, load_runs
from benchmarks.core.speedup import crossing_time, pareto_front, speedup
from benchmarks.study.spec import Study
from benchmarks.core.teacher_cost import CacheIndex, CacheInfo, TeacherIndex, cache_folders

log = logging.getLogger(__name__)
Describe = Callable[[RunFiles, list[str]], dict[str, Any]]
_STUDENT = re.compile(r'^(?P<entry>.+)/g(?P<g>\d+)/m(?P<m>\d+)$')


@dataclass
class RunResult:
    """One run as the report sees it. Accuracies are fractions (0..1), times seconds of training wall-clock."""

    name: str
    tags: list[str]
    duration: str
    finished: bool
    curve: list[tuple[float, float]]
    series: str = ''                 # what the run is, as the study's ``describe`` names it; Matryoshka g<g>
    facts: dict[str, Any] = field(default_factory=dict)      # the rest of what ``describe`` found
    teachers: list[str] = field(default_factory=list)        # the run's direct teachers (run names if known)
    lr: Optional[float] = None
    generation: Optional[int] = None
    member: Optional[int] = None
    train_s: Optional[float] = None  # whole training wall-clock (summary.json)
    cpu_s: Optional[float] = None
    time_to_target: Optional[float] = None
    teacher_s: float = 0.0           # the teachers behind it, recursively, each once
    teacher_runs: list[str] = field(default_factory=list)
    teacher_missing: list[str] = field(default_factory=list)
    speedup: Optional[float] = None
    speedup_with_teachers: Optional[float] = None
    caches: list[str] = field(default_factory=list)          # the teacher caches it read (CacheIndex keys)
    cache_s: Optional[float] = 0.0   # its share of their production time (None: a production time is unknown)
    time_to_target_with_cache: Optional[float] = None        # time_to_target + cache_s
    speedup_with_cache: Optional[float] = None

    @property
    def final_acc(self) -> Optional[float]:
        return self.curve[-1][1] if self.curve else None

    @property
    def best_acc(self) -> Optional[float]:
        return max(a for _, a in self.curve) if self.curve else None

    @property
    def final_s(self) -> Optional[float]:
        """Training wall-clock at the last evaluation (the end of the plotted curve)."""
        return self.curve[-1][0] if self.curve else None


@dataclass
class Analysis:
    """A study's runs, analysed. ``results`` keeps the study's order, then runs found but not in the study."""

    study: Study
    results: dict[str, RunResult]
    target: Optional[float]
    baseline_s: Optional[float]
    missing: list[str]
    matryoshka: dict[str, list[list[str]]]  # entry -> generations -> run names (generation 0: the pool)
    caches: dict[str, CacheInfo] = field(default_factory=dict)  # the teacher caches its runs read, by key

    @property
    def baseline(self) -> Optional[RunResult]:
        return self.results.get(self.study.baseline)

    def tagged(self, tag: str) -> list[RunResult]:
        return [r for r in self.results.values() if tag in r.tags]

    def pareto(self, with_teachers: bool = False) -> list[tuple[float, float, str]]:
        """The Pareto front of all runs' final points (time, accuracy, name); teacher time added if asked."""
        points = [(r.final_s + (r.teacher_s if with_teachers else 0.0), r.final_acc, r.name)
                  for r in self.results.values() if r.curve]
        return pareto_front(points)  # type: ignore[arg-type]

    def time_to_reach(self, accuracy: float, tag: str = 'baseline') -> tuple[Optional[float], Optional[str]]:
        """The earliest time any run tagged ``tag`` reaches ``accuracy`` (crossing rule), and which run."""
        best: tuple[Optional[float], Optional[str]] = (None, None)
        for r in self.tagged(tag):
            t = crossing_time(r.curve, accuracy)
            if t is not None and (best[0] is None or t < best[0]):
                best = (t, r.name)
        return best


def _lr(run: RunFiles) -> Optional[float]:
    lr = (run.config.get('optimizer') or {}).get('lr')
    return float(lr) if isinstance(lr, (int, float)) else None


def analyse(study: Study, runs_root: str, runs: Optional[dict[str, RunFiles]] = None,
            manifests: Optional[dict[str, dict[str, Any]]] = None,
            teacher_runs: Optional[dict[str, RunFiles]] = None, describe: Optional[Describe] = None) -> Analysis:
    """Read (or take) the records under ``runs_root`` and compute every run's numbers against the study baseline.
    ``teacher_runs``: records of teachers trained outside the study (e.g. a separate sweep), for their cost only.
    ``describe(run, its teachers)``: what the study's report needs to know of a run (its ``series`` and any other
    facts, e.g. the distillation settings); without it every run is in series ``''``."""
    runs = load_runs(runs_root) if runs is None else runs
    manifests = load_manifests(runs_root) if manifests is None else manifests
    index = TeacherIndex.build({**(teacher_runs or {}), **runs}, manifests.values())
    cache_index = CacheIndex(manifests)
    read = {key: [cache_index.find(f) for f in cache_folders(run)] for key, run in runs.items()}
    for key, infos in read.items():
        for info in infos:
            info.readers.append(key)
    tags = {r.name: list(r.tags) for r in study.runs}
    matryoshka_entries = {r.name: r for r in study.runs if r.kind == 'matryoshka'}
    metric = study.metric

    base = runs.get(study.baseline)
    base_curve = base.curve(metric) if base else []
    target = base_curve[-1][1] if base_curve else None
    baseline_s = base_curve[-1][0] if base_curve else None
    if base is None:
        log.warning('baseline %s has no records under %s: no time-to-target', study.baseline, runs_root)
    elif not base.finished:
        log.warning('baseline %s did not finish: its last evaluation is used as the target', study.baseline)

    order = [r.name for r in study.runs]
    keys = sorted(runs, key=lambda k: (order.index(k) if k in order else len(order), k))
    results: dict[str, RunResult] = {}
    for key in keys:
        run = runs[key]
        curve = run.curve(metric)
        m = _STUDENT.match(key)
        generation = member = None
        run_tags = tags.get(key, [])
        if m and m.group('entry') in matryoshka_entries:
            generation, member = int(m.group('g')), int(m.group('m'))
            run_tags = list(matryoshka_entries[m.group('entry')].tags) or ['matryoshka']
        checkpoints = list(run.teacher_checkpoints)  # and a cache's teachers, if its record did not list them
        checkpoints += [c for info in read[key] for c in info.teachers if c not in checkpoints]
        teachers: list[str] = []
        for ckpt in checkpoints:
            folder, node = index.find(ckpt)
            name = node.name if node is not None and node.name else folder
            if name not in teachers:  # one teacher run named twice is one teacher
                teachers.append(name)
        facts = dict(describe(run, teachers)) if describe else {}
        series = f'Matryoshka g{generation}' if generation is not None else str(facts.pop('series', ''))
        cost = index.cost(checkpoints)
        ttt = baseline_s if key == study.baseline else (crossing_time(curve, target) if target is not None else None)
        result = RunResult(
            name=key, tags=run_tags, duration=run.max_duration, finished=run.finished, curve=curve,
            teachers=teachers, lr=_lr(run), generation=generation, member=member, train_s=run.train_wct_s,
            cpu_s=run.cpu_s, time_to_target=ttt, teacher_s=cost.seconds,
            teacher_runs=[index.nodes[a].name if a in index.nodes and index.nodes[a].name else a
                          for a in cost.ancestors],
            teacher_missing=cost.missing, series=series, facts=facts, caches=[i.key for i in read[key]],
        )
        shares = [info.share for info in read[key]]
        result.cache_s = None if None in shares else sum(shares)  # type: ignore[arg-type]
        if ttt is not None and result.cache_s is not None:
            result.time_to_target_with_cache = ttt + result.cache_s
        if baseline_s is not None:
            result.speedup = speedup(baseline_s, ttt)
            result.speedup_with_teachers = None if cost.missing else speedup(baseline_s, ttt, cost.seconds)
            result.speedup_with_cache = None if result.cache_s is None else speedup(baseline_s, ttt, result.cache_s)
        if cost.missing:
            log.warning('%s: training time unknown for teacher run(s) %s', key, ', '.join(cost.missing))
        results[key] = result

    missing = [r.name for r in study.runs if r.kind == 'train' and r.name not in runs]
    generations: dict[str, list[list[str]]] = {}
    for name, entry in matryoshka_entries.items():
        students = sorted(((r.generation, r.member or 0, r.name) for r in results.values()
                           if r.name.startswith(f'{name}/') and r.generation is not None))
        if not students:
            missing.append(name)
        pool = list(entry.teachers)
        if not pool and name in manifests:  # the spec's own pool: name its members as the index knows them
            for e in manifests[name]['generations'][0]:
                node = index.find(e['checkpoint'])[1]
                pool.append(node.name if node is not None and node.name else e['checkpoint'])
        gens: list[list[str]] = [pool]
        for generation, _, student in students:
            while len(gens) <= generation:
                gens.append([])
            gens[generation].append(student)
        generations[name] = gens
    caches = {info.key: info for infos in read.values() for info in infos}
    return Analysis(study=study, results=results, target=target, baseline_s=baseline_s, missing=missing,
                    matryoshka=generations, caches=caches)
