"""A study: a named set of runs (recipe YAML, overrides, run name) under one runs root, in dependency order.

A study YAML (``benchmarks/studies/*.yaml``; OmegaConf, so ``${name}`` interpolations work)::

    name: fashion_mnist                  # run names are <name>-<run>
    runs_root: runs/study-fashion_mnist  # every run writes <runs_root>/<run>/ (checkpoints included)
    baseline: teacher-lr0.1              # the run whose final accuracy is the target of the report
    metric: eval/MulticlassAccuracy      # the accuracy the report reads from the run records
    overrides: {}                        # dotted keys applied to every run (e.g. train_loader.subset: 6000)
    runs:
      - name: teacher-lr0.1
        recipe: yamls/fashion_mnist/teacher_lr0.1.yaml
        tags: [teacher, baseline]
      - name: kd-kl-2ep
        recipe: yamls/fashion_mnist/kd_kl.yaml
        teachers: [teacher-lr0.1]        # study runs: their <runs_root>/<run>/checkpoints/latest-rank0.pt
        overrides: {max_duration: 2ep}   # dotted keys, as on the command line
        tags: [kd]
      - name: matryoshka
        kind: matryoshka                 # recipes/matryoshka.py: spec instead of recipe
        spec: yamls/pipelines/fashion_mnist/matryoshka.yaml
        teachers: [teacher-lr0.02, teacher-lr0.05, teacher-lr0.1, teacher-lr0.4]  # replace the spec's pool, in order
        generations: 1
        overrides: {max_duration: 5ep}   # applied to every student
        tags: [matryoshka]

Every kind of run is a command (:mod:`benchmarks.study.kinds`): ``train`` (``recipes/train.py``, ``recipe:``),
``teacher_cache`` (``recipes/teacher_cache.py``: its teachers' outputs for the views of the student ``recipe:``;
the command's options in ``cache:``, e.g. ``{store: dense}``), ``matryoshka``, ``prune_pipeline``, ``blockwise`` and
``glue`` (their driver's ``spec:``). ``overrides`` are dotted
keys of the run's YAML (a Matryoshka entry's: of every student's recipe). ``teachers`` are study runs whose final
checkpoints the run learns from (``train``: every algorithm of the recipe with ``teachers``, or, when they are
``teacher_cache`` runs, its knowledge distillation reads their caches, ``[{cache: <run folder>}]``;
``teacher_cache``: the checkpoints it caches, several averaged as one pool, with ``cache: {teacher: PATH or
[PATHS]}`` for teachers trained outside the study (give ``cache.teacher_model`` when their model is not the
recipe's); ``blockwise``: its
``teacher.checkpoint``, and under bin packing a blockwise teacher's task times; ``glue``: ``pretrained``);
``load_from`` (``train``) starts a run from another run's final weights (``load_path``). A run may be limited to some
of the study's ``seeds`` and given a ``phase`` (default 1): phase 1 of every seed runs before phase 2 of any.
``run_folder`` (default ``{run}``; with seeds under ``<runs_root>/seed<s>/`` unless it names ``{seed}``) and
``run_name`` (default ``{replica}-{run}``: ``<name>[-s<seed>]-<run>``; fields ``{name}``, ``{run}``, ``{seed}``) place
and name the runs; ``family: pruning`` calls ``benchmarks.pruning.describe.describe(study, run)`` after every run
finishes (its measurements of the trained models, options in ``compare``).

A YAML is read with the project's one spec loader (:func:`recipes.core.schema.load_spec`, schema
:class:`StudySpec`): unknown keys (top level and in a run entry) and wrong types are one-line errors; it may start with
``base: other_study.yaml`` and is then merged over it (mappings such as ``overrides`` merged key by key, lists such as
``runs`` replaced): a smaller study for a quick check is a few lines. ``seeds: [0, 1, 2]`` repeats every run with
each seed (:meth:`Study.replicas`); the report then gives means with 95% intervals. Tags are free labels (words) a
study's report may group runs by (:meth:`benchmarks.core.analysis.Analysis.tagged`); the core gives them no meaning.
"""

from __future__ import annotations

import importlib.util
import os
import re
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING

from algorithms.callbacks.run_record import LATEST_CHECKPOINT as CHECKPOINT
from recipes.core.errors import ConfigError
from recipes.core.schema import load_spec

REPO = Path(__file__).resolve().parents[2]
#: kind -> the kinds of run it may learn from (``teachers``); the commands themselves are in ``kinds.py``.
TEACHER_KINDS = {'train': ('train', 'teacher_cache'), 'teacher_cache': ('train',), 'matryoshka': ('train',),
                 'prune_pipeline': (), 'blockwise': ('train', 'blockwise'), 'glue': ('train',)}
KINDS = tuple(TEACHER_KINDS)
#: the kinds whose source is a training recipe (``recipe:``); the others read their driver's ``spec:``
RECIPE_KINDS = ('train', 'teacher_cache')
#: a teacher_cache run's ``cache:`` options (``recipes/teacher_cache.py``'s, ``--<key with dashes>``), their types
CACHE_OPTIONS = {'store': (str,), 'k': (int,), 'epochs': (str, int), 'temperature': (int, float),
                 'sample_power': (int, float), 'world_size': (int,), 'chunk': (int,), 'teacher_model': (dict,),
                 'teacher': (str, list)}  # teacher: checkpoints trained outside the study (with or instead of teachers)
#: kind -> how many teachers a run of it learns from at most (a Matryoshka run: as many as its spec's pool)
MAX_TEACHERS = {'blockwise': 1, 'glue': 1}
#: run key -> the one kind of run it is for
ONLY_FOR = {'generations': 'matryoshka', 'load_from': 'train'}
#: where a finished run of a kind keeps the final checkpoint its students read (relative to its folder)
CHECKPOINTS = {'blockwise': f'teacher/{CHECKPOINT}'}
_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')


def seed_root(runs_root: str, seed: int) -> str:
    """Where the runs of seed ``seed`` live: ``<runs_root>/seed<seed>``."""
    return f'{runs_root.rstrip("/")}/seed{seed}'


class StudyError(ValueError):
    """A study YAML that cannot be run: the message names the key and what was expected."""


@dataclass
class RunEntry:
    """The schema of one entry of ``runs:`` (see the module docstring)."""

    name: str = MISSING
    kind: str = 'train'
    recipe: Optional[str] = None  # kind train
    spec: Optional[str] = None  # the other kinds: their driver's spec
    overrides: dict[str, Any] = field(default_factory=dict)
    teachers: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    generations: Optional[int] = None
    description: str = ''
    load_from: Optional[str] = None
    seeds: Optional[list[int]] = None
    phase: int = 1
    cache: dict[str, Any] = field(default_factory=dict)  # kind teacher_cache: the command's options (CACHE_OPTIONS)


@dataclass
class StudySpec:
    """The schema of a study YAML (see the module docstring)."""

    name: str = MISSING
    runs_root: Optional[str] = None  # default: runs/study-<name>
    baseline: Optional[str] = None
    metric: str = 'eval/MulticlassAccuracy'
    overrides: dict[str, Any] = field(default_factory=dict)
    runs: list[RunEntry] = MISSING
    description: str = ''
    seeds: list[int] = field(default_factory=list)
    family: Optional[str] = None
    compare: dict[str, Any] = field(default_factory=dict)
    run_folder: str = '{run}'
    run_name: str = '{replica}-{run}'


@dataclass
class StudyRun:
    """One entry of a study: a recipe (or Matryoshka spec) with overrides, its teachers (study run names) and tags."""

    name: str
    recipe: str
    kind: str = 'train'
    overrides: dict[str, Any] = field(default_factory=dict)
    teachers: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    generations: Optional[int] = None
    load_from: Optional[str] = None  # a study run whose final weights this one starts from (``load_path``)
    seeds: Optional[list[int]] = None  # only these of the study's seeds (None: all)
    phase: int = 1
    cache: dict[str, Any] = field(default_factory=dict)  # a teacher_cache run's command options

    @property
    def needs(self) -> list[str]:
        """The study runs this one reads the checkpoints of: its teachers and ``load_from``."""
        return [*self.teachers, *([self.load_from] if self.load_from and self.load_from not in self.teachers else [])]


@dataclass
class Study:
    """A loaded study (see the module docstring for the YAML)."""

    name: str
    runs_root: str
    baseline: Optional[str]
    runs: list[StudyRun]
    metric: str = 'eval/MulticlassAccuracy'
    overrides: dict[str, Any] = field(default_factory=dict)
    path: Optional[Path] = None
    description: str = ''  # free text shown in the report (e.g. the conditions the runs ran under)
    seeds: list[int] = field(default_factory=list)  # repeats; empty: one pass with the recipes' own seeds
    seed: Optional[int] = None  # set on one replica (see replicas())
    family: Optional[str] = None  # benchmarks.<family>.describe: its describe(study, run) after every run
    compare: dict[str, Any] = field(default_factory=dict)  # the family's own options (free-form)
    run_folder: str = '{run}'
    run_name_format: str = '{replica}-{run}'
    base: str = ''  # the study's own name (a replica's name adds -s<seed>)
    phase: Optional[int] = None  # set on one pass (see passes())

    def __post_init__(self) -> None:
        self.base = self.base or self.name

    def replicas(self) -> list['Study']:
        """One study per seed, in the order to run them: seed 0 of every run, then seed 1, ... (so that drift of the
        machine spreads over every configuration). Replica ``s`` writes under ``<runs_root>/seed<s>/`` (unless
        ``run_folder`` names ``{seed}``), names its runs ``<name>-s<s>-<run>`` and sets ``seed=s`` on every run; its
        students learn from its own teachers; it holds the runs of seed ``s`` (a run's own ``seeds``). Without
        ``seeds``, the study itself."""
        if not self.seeds or self.seed is not None:
            return [self]
        own_folder = '{seed}' in self.run_folder
        return [replace(self, name=f'{self.name}-s{s}', seed=s,
                        runs_root=self.runs_root if own_folder else seed_root(self.runs_root, s),
                        runs=[r for r in self.runs if r.seeds is None or s in r.seeds],
                        overrides={**self.overrides, 'seed': s}) for s in self.seeds]

    def passes(self) -> list['Study']:
        """The replicas in running order, phase by phase: phase 1 of every seed, then phase 2 of every seed, ...
        (a pass runs only the runs of its ``phase``)."""
        phases = sorted({r.phase for r in self.runs})
        if len(phases) == 1:
            return self.replicas()
        return [replace(replica, phase=p) for p in phases for replica in self.replicas()]

    def run(self, name: str) -> StudyRun:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)

    def run_dir(self, name: str) -> str:
        """``<runs_root>/<run_folder>``: a run's folder (a driver's output folder), e.g. ``<runs_root>/<name>``."""
        return f'{self.runs_root.rstrip("/")}/{self.run_folder.format(run=name, seed=self.seed)}'

    def checkpoint(self, name: str) -> str:
        """The final checkpoint of study run ``name``, as its students name it."""
        return f'{self.run_dir(name)}/{CHECKPOINTS.get(self.run(name).kind, CHECKPOINT)}'

    def run_name(self, name: str) -> str:
        return self.run_name_format.format(replica=self.name, name=self.base, run=name, seed=self.seed)


def _positive(key: str, value: int) -> None:
    if value < 1:
        raise StudyError(f'{key}: expected a positive int, got {value}')


def _distinct(key: str, values: list[int]) -> list[int]:
    if len(set(values)) != len(values):
        raise StudyError(f'{key}: expected a list of distinct ints, got {values!r}')
    return list(values)


def _format(key: str, value: str, fields: tuple[str, ...]) -> str:
    """A ``run_folder`` / ``run_name`` pattern: a string whose only ``{fields}`` are ``fields``."""
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as e:
        raise StudyError(f'{key}: {e}: {value!r}') from None
    if not used <= set(fields) or 'run' not in used:
        raise StudyError(f"{key}: expected a pattern with {{run}} and only {', '.join(f'{{{f}}}' for f in fields)}, "
                         f'got {value!r}')
    return value


def _run(i: int, entry: dict[str, Any]) -> StudyRun:
    """A validated ``runs[i]`` entry (:class:`RunEntry`) as a :class:`StudyRun`: what the types do not say."""
    name, kind = entry['name'], entry['kind']
    if not _NAME.match(name):
        raise StudyError(f'runs[{i}].name: expected a folder-safe name (letters, digits, _ . -), got {name!r}')
    where = f'runs[{i}] ({name})'
    if kind not in KINDS:
        raise StudyError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    source_key, other = ('recipe', 'spec') if kind in RECIPE_KINDS else ('spec', 'recipe')
    if entry[other] is not None:
        raise StudyError(f"{where}.{other}: not allowed for kind {kind!r}; use '{source_key}'")
    if entry[source_key] is None:
        raise StudyError(f'{where}.{source_key}: expected a YAML path, got None')
    bad_tags = [t for t in entry['tags'] if not _NAME.match(t)]
    if bad_tags:
        raise StudyError(f'{where}.tags: expected words (letters, digits, _ . -), got {bad_tags[0]!r}')
    for key, only in ONLY_FOR.items():
        if entry[key] is not None and kind != only:
            raise StudyError(f'{where}.{key}: only for kind {only}')
    if len(entry['teachers']) > MAX_TEACHERS.get(kind, len(entry['teachers'])):
        raise StudyError(f"{where}.teachers: a {kind} run learns from at most {MAX_TEACHERS[kind]} teacher, got "
                         f"{entry['teachers']}")
    if entry['cache'] and kind != 'teacher_cache':
        raise StudyError(f'{where}.cache: only for kind teacher_cache')
    for key, value in entry['cache'].items():
        types = CACHE_OPTIONS.get(key)
        if types is None or isinstance(value, bool) or not isinstance(value, types):
            raise StudyError(f"{where}.cache.{key}: expected one of {', '.join(CACHE_OPTIONS)} with a value of type "
                             f"{'/'.join(t.__name__ for t in types or (object,))}, got {value!r}")
    outside = entry['cache'].get('teacher')
    if isinstance(outside, list) and not all(isinstance(t, str) for t in outside):
        raise StudyError(f'{where}.cache.teacher: expected a checkpoint path or a list of them, got {outside!r}')
    if kind == 'teacher_cache' and not entry['teachers'] and not outside:
        raise StudyError(f'{where}.teachers: a teacher_cache run caches the outputs of at least one study run (or '
                         'of the checkpoints in cache.teacher)')
    if entry['generations'] is not None:
        _positive(f'{where}.generations', entry['generations'])
    _positive(f'{where}.phase', entry['phase'])
    seeds = None if entry['seeds'] is None else _distinct(f'{where}.seeds', entry['seeds'])
    return StudyRun(name=name, recipe=entry[source_key], kind=kind, overrides=entry['overrides'],
                    teachers=entry['teachers'], tags=entry['tags'], generations=entry['generations'],
                    load_from=entry['load_from'], seeds=seeds, phase=entry['phase'], cache=dict(entry['cache']))


def _study(data: dict[str, Any], path: Path, runs_root: Optional[str], overrides: Optional[dict[str, Any]]) -> Study:
    """A validated study YAML (:class:`StudySpec`) as a :class:`Study`, checked (:func:`check_study`)."""
    family = data['family']
    if family is not None and (not _NAME.match(family)
                               or importlib.util.find_spec(f'benchmarks.{family}.describe') is None):
        raise StudyError(f'family: expected a folder benchmarks/<family>/ with describe.py, got {family!r}')
    study = Study(
        name=data['name'], runs_root=runs_root or data['runs_root'] or f"runs/study-{data['name']}",
        baseline=data['baseline'], runs=[_run(i, entry) for i, entry in enumerate(data['runs'])],
        metric=data['metric'], overrides={**data['overrides'], **(overrides or {})}, path=path,
        description=data['description'], seeds=_distinct('seeds', data['seeds']), family=family,
        compare=data['compare'], run_folder=_format('run_folder', data['run_folder'], ('run', 'seed')),
        run_name_format=_format('run_name', data['run_name'], ('replica', 'name', 'run', 'seed')),
    )
    check_study(study)
    return study


def load_study(path: str | os.PathLike, runs_root: Optional[str] = None,
               overrides: Optional[dict[str, Any]] = None) -> Study:
    """Read and check a study YAML; ``runs_root`` replaces the YAML's, ``overrides`` are added to its common ones.
    Every problem is one :class:`StudyError` line naming the key and the file."""
    path = Path(path)
    try:
        data = load_spec(path, None, StudySpec, key='study')
    except ConfigError as e:
        raise StudyError(str(e)) from None
    try:
        return _study(data, path, runs_root, overrides)
    except StudyError as e:
        raise StudyError(f'{e} (in {path})') from None


def check_study(study: Study) -> None:
    """Unique names; teachers (and ``load_from``) that are study runs of a kind the run can learn from, in the same
    seeds and no later phase; no cycles; a baseline that is a plain run; folders that tell the seeds apart."""
    names = [r.name for r in study.runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StudyError(f'runs: duplicate names: {", ".join(dupes)}')
    by_name = {r.name: r for r in study.runs}
    for r in study.runs:
        if r.seeds is not None and not set(r.seeds) <= set(study.seeds):
            raise StudyError(f'runs ({r.name}).seeds: {r.seeds} are not all among the study\'s seeds {study.seeds}')
        for t in r.needs:
            key = 'load_from' if t == r.load_from and t not in r.teachers else 'teachers'
            if t not in by_name:
                raise StudyError(f'runs ({r.name}).{key}: {t!r} is not a run of this study')
            other = by_name[t]
            if other.kind not in (TEACHER_KINDS[r.kind] if key == 'teachers' else ('train',)):
                what = 'a trained run' if r.kind != 'blockwise' else 'a train or blockwise run'
                raise StudyError(f'runs ({r.name}).{key}: {t!r} is a {other.kind} entry, not {what}')
            if other.phase > r.phase or not set(r.seeds or study.seeds) <= set(other.seeds or study.seeds):
                raise StudyError(f'runs ({r.name}).{key}: {t!r} must run in every seed of {r.name!r}, in no later '
                                 'phase')
        cached = [by_name[t].kind == 'teacher_cache' for t in r.teachers]
        if any(cached) and not all(cached):
            raise StudyError(f'runs ({r.name}).teachers: give teacher_cache runs or trained runs, not both (a pool '
                             'reads caches or runs teachers)')
    if study.baseline is not None and (study.baseline not in by_name or by_name[study.baseline].kind != 'train'):
        raise StudyError(f'baseline: {study.baseline!r} is not a trained run of this study')
    if not study.seeds and '{seed}' in study.run_folder + study.run_name_format:
        raise StudyError('run_folder / run_name: {seed} without seeds')
    stages(study)  # raises on cycles


def stages(study: Study, names: Optional[list[str]] = None) -> list[list[StudyRun]]:
    """The runs (all, or ``names``) grouped into stages: a run's teachers are in earlier stages, so the runs of a
    stage are independent of each other. Within a stage, runs that teach others come first, then study order."""
    by_name = {r.name: r for r in study.runs}
    level: dict[str, int] = {}

    def depth(name: str, path: tuple[str, ...]) -> int:
        if name in path:
            raise StudyError(f"runs: circular teachers: {' -> '.join((*path, name))}")
        if name not in level:
            level[name] = 1 + max((depth(t, (*path, name)) for t in by_name[name].needs), default=-1)
        return level[name]

    selected = names if names is not None else [r.name for r in study.runs]
    for n in selected:
        depth(n, ())
    teaching = {t for r in study.runs for t in r.needs}
    order = {r.name: i for i, r in enumerate(study.runs)}
    out: list[list[StudyRun]] = [[] for _ in range(1 + max((level[n] for n in selected), default=-1))]
    for n in sorted(selected, key=lambda n: (n not in teaching, order[n])):
        out[level[n]].append(by_name[n])
    return [s for s in out if s]


def with_dependencies(study: Study, names: list[str]) -> list[str]:
    """``names`` and, recursively, the study runs they learn from."""
    unknown = [n for n in names if n not in {r.name for r in study.runs}]
    if unknown:
        raise StudyError(f"--only: not runs of this study: {', '.join(unknown)}")
    out: list[str] = []
    stack = list(names)
    while stack:
        n = stack.pop()
        if n not in out:
            out.append(n)
            stack.extend(study.run(n).needs)
    return out
