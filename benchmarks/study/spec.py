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
``matryoshka``, ``prune_pipeline``, ``blockwise`` and ``glue`` (their driver's ``spec:``). ``overrides`` are dotted
keys of the run's YAML (a Matryoshka entry's: of every student's recipe). ``teachers`` are study runs whose final
checkpoints the run learns from (``train``: every algorithm of the recipe with ``teachers``; ``blockwise``: its
``teacher.checkpoint``, and under bin packing a blockwise teacher's task times; ``glue``: ``pretrained``);
``load_from`` (``train``) starts a run from another run's final weights (``load_path``). A run may be limited to some
of the study's ``seeds`` and given a ``phase`` (default 1): phase 1 of every seed runs before phase 2 of any.
``run_folder`` (default ``{run}``; with seeds under ``<runs_root>/seed<s>/`` unless it names ``{seed}``) and
``run_name`` (default ``{replica}-{run}``: ``<name>[-s<seed>]-<run>``; fields ``{name}``, ``{run}``, ``{seed}``) place
and name the runs; ``family: pruning`` calls ``benchmarks.pruning.describe.describe(study, run)`` after every run
finishes (its measurements of the trained models, options in ``compare``).

A YAML is read with the recipes' loader (:func:`recipes.core.config.load_mapping`): it may start with
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

from algorithms.callbacks.run_record import LATEST_CHECKPOINT as CHECKPOINT
from recipes.core.config import load_mapping
from recipes.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
#: kind -> the kinds of run it may learn from (``teachers``); the commands themselves are in ``kinds.py``.
TEACHER_KINDS = {'train': ('train',), 'matryoshka': ('train',), 'prune_pipeline': (),
                 'blockwise': ('train', 'blockwise'), 'glue': ('train',)}
KINDS = tuple(TEACHER_KINDS)
#: where a finished run of a kind keeps the final checkpoint its students read (relative to its folder)
CHECKPOINTS = {'blockwise': f'teacher/{CHECKPOINT}'}
STUDY_KEYS = ('name', 'runs_root', 'baseline', 'metric', 'overrides', 'runs', 'description', 'seeds', 'family',
              'compare', 'run_folder', 'run_name')
RUN_KEYS = ('name', 'kind', 'recipe', 'spec', 'overrides', 'teachers', 'tags', 'generations', 'description',
            'load_from', 'seeds', 'phase')
_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')


def seed_root(runs_root: str, seed: int) -> str:
    """Where the runs of seed ``seed`` live: ``<runs_root>/seed<seed>``."""
    return f'{runs_root.rstrip("/")}/seed{seed}'


class StudyError(ValueError):
    """A study YAML that cannot be run: the message names the key and what was expected."""


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


def load_spec(path: str | os.PathLike, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A study YAML of another schema (the pruning, bias and blockwise studies) read with the recipes' loader
    (``base:`` merged as for recipes, interpolations resolved), its top-level keys checked: a :class:`StudyError`
    naming the first missing or unknown key."""
    try:
        data = load_mapping(path, key='study')
    except ConfigError as e:
        raise StudyError(str(e)) from None
    allowed = (*required, *optional)
    for key in data:
        if key not in allowed:
            raise StudyError(f"{path}: unknown key '{key}'; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in data:
            raise StudyError(f"{path}: missing required key '{key}'")
    return data


def _expect(key: str, value: Any, types: tuple[type, ...], what: str) -> None:
    if not isinstance(value, types) or isinstance(value, bool):
        raise StudyError(f'{key}: expected {what}, got {value!r}')


def _ints(key: str, value: Any) -> list[int]:
    _expect(key, value, (list,), 'a list of distinct ints')
    if len(set(value)) != len(value) or not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        raise StudyError(f'{key}: expected a list of distinct ints, got {value!r}')
    return list(value)


def _format(key: str, value: Any, fields: tuple[str, ...]) -> str:
    """A ``run_folder`` / ``run_name`` pattern: a string whose only ``{fields}`` are ``fields``."""
    _expect(key, value, (str,), 'a string')
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as e:
        raise StudyError(f'{key}: {e}: {value!r}') from None
    if not used <= set(fields) or 'run' not in used:
        raise StudyError(f"{key}: expected a pattern with {{run}} and only {', '.join(f'{{{f}}}' for f in fields)}, "
                         f'got {value!r}')
    return value


def _parse_run(i: int, entry: Any) -> StudyRun:
    where = f'runs[{i}]'
    _expect(where, entry, (dict,), 'a mapping')
    for key in entry:
        if key not in RUN_KEYS:
            raise StudyError(f"unknown key '{where}.{key}'; allowed: {', '.join(RUN_KEYS)}")
    name = entry.get('name')
    if not isinstance(name, str) or not _NAME.match(name):
        raise StudyError(f'{where}.name: expected a folder-safe name (letters, digits, _ . -), got {name!r}')
    where = f'runs[{i}] ({name})'
    kind = entry.get('kind', 'train')
    if kind not in KINDS:
        raise StudyError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    source_key = 'recipe' if kind == 'train' else 'spec'
    other = 'spec' if kind == 'train' else 'recipe'
    if other in entry:
        raise StudyError(f"{where}.{other}: not allowed for kind {kind!r}; use '{source_key}'")
    source = entry.get(source_key)
    _expect(f'{where}.{source_key}', source, (str,), 'a YAML path')
    overrides = entry.get('overrides') or {}
    _expect(f'{where}.overrides', overrides, (dict,), 'a mapping of dotted keys to values')
    teachers = entry.get('teachers') or []
    _expect(f'{where}.teachers', teachers, (list,), 'a list of study run names')
    tags = entry.get('tags') or []
    _expect(f'{where}.tags', tags, (list,), 'a list of tags')
    for tag in tags:
        if not isinstance(tag, str) or not _NAME.match(tag):
            raise StudyError(f'{where}.tags: expected words (letters, digits, _ . -), got {tag!r}')
    generations = entry.get('generations')
    if generations is not None:
        if kind != 'matryoshka':
            raise StudyError(f'{where}.generations: only for kind matryoshka')
        _expect(f'{where}.generations', generations, (int,), 'a positive int')
        if generations < 1:
            raise StudyError(f'{where}.generations: expected a positive int, got {generations}')
    load_from = entry.get('load_from')
    if load_from is not None:
        if kind != 'train':
            raise StudyError(f'{where}.load_from: only for kind train')
        _expect(f'{where}.load_from', load_from, (str,), 'a study run name')
    seeds = entry.get('seeds')
    phase = entry.get('phase', 1)
    _expect(f'{where}.phase', phase, (int,), 'a positive int')
    if phase < 1:
        raise StudyError(f'{where}.phase: expected a positive int, got {phase}')
    return StudyRun(name=name, recipe=source, kind=kind, overrides=dict(overrides), teachers=list(teachers),
                    tags=list(tags), generations=generations, load_from=load_from,
                    seeds=None if seeds is None else _ints(f'{where}.seeds', seeds), phase=phase)


def load_study(path: str | os.PathLike, runs_root: Optional[str] = None,
               overrides: Optional[dict[str, Any]] = None) -> Study:
    """Read and check a study YAML; ``runs_root`` replaces the YAML's, ``overrides`` are added to its common ones."""
    path = Path(path)
    try:
        data = load_mapping(path, key='study')
    except ConfigError as e:
        raise StudyError(str(e)) from None
    for key in data:
        if key not in STUDY_KEYS:
            raise StudyError(f"unknown key '{key}'; allowed: {', '.join(STUDY_KEYS)}")
    _expect('name', data.get('name'), (str,), 'a string')
    if data.get('baseline') is not None:
        _expect('baseline', data['baseline'], (str,), 'a string')
    _expect('runs', data.get('runs'), (list,), 'a list of runs')
    seeds = _ints('seeds', data.get('seeds') or [])
    common = data.get('overrides') or {}
    _expect('overrides', common, (dict,), 'a mapping of dotted keys to values')
    compare = data.get('compare') or {}
    _expect('compare', compare, (dict,), "a mapping (the family's options)")
    family = data.get('family')
    if family is not None:
        _expect('family', family, (str,), 'a study family name')
        if not _NAME.match(family) or importlib.util.find_spec(f'benchmarks.{family}.describe') is None:
            raise StudyError(f'family: expected a folder benchmarks/<family>/ with describe.py, got {family!r}')
    runs = [_parse_run(i, entry) for i, entry in enumerate(data['runs'])]
    study = Study(
        name=data['name'], runs_root=runs_root or data.get('runs_root') or f"runs/study-{data['name']}",
        baseline=data.get('baseline'), runs=runs, metric=data.get('metric', 'eval/MulticlassAccuracy'),
        overrides={**common, **(overrides or {})}, path=path, description=str(data.get('description') or ''),
        seeds=seeds, family=family, compare=dict(compare),
        run_folder=_format('run_folder', data.get('run_folder', '{run}'), ('run', 'seed')),
        run_name_format=_format('run_name', data.get('run_name', '{replica}-{run}'),
                                ('replica', 'name', 'run', 'seed')),
    )
    check_study(study)
    return study


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
