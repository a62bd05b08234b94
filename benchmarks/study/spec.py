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

A YAML is read with the recipes' loader (:func:`recipes.core.config.load_mapping`): it may start with
``base: other_study.yaml`` and is then merged over it (mappings such as ``overrides`` merged key by key, lists such as
``runs`` replaced): a smaller study for a quick check is a few lines. ``seeds: [0, 1, 2]`` repeats every run with
each seed (:meth:`Study.replicas`); the report then gives means with 95% intervals. Tags are free labels (words) a
study's report may group runs by (:meth:`benchmarks.core.analysis.Analysis.tagged`); the core gives them no meaning.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from algorithms.callbacks.run_record import LATEST_CHECKPOINT as CHECKPOINT
from recipes.core.config import load_mapping
from recipes.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
KINDS = ('train', 'matryoshka')
STUDY_KEYS = ('name', 'runs_root', 'baseline', 'metric', 'overrides', 'runs', 'description', 'seeds')
RUN_KEYS = ('name', 'kind', 'recipe', 'spec', 'overrides', 'teachers', 'tags', 'generations', 'description')
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


@dataclass
class Study:
    """A loaded study (see the module docstring for the YAML)."""

    name: str
    runs_root: str
    baseline: str
    runs: list[StudyRun]
    metric: str = 'eval/MulticlassAccuracy'
    overrides: dict[str, Any] = field(default_factory=dict)
    path: Optional[Path] = None
    description: str = ''  # free text shown in the report (e.g. the conditions the runs ran under)
    seeds: list[int] = field(default_factory=list)  # repeats; empty: one pass with the recipes' own seeds
    seed: Optional[int] = None  # set on one replica (see replicas())

    def replicas(self) -> list['Study']:
        """One study per seed, in the order to run them: seed 0 of every run, then seed 1, ... (so that drift of the
        machine spreads over every configuration). Replica ``s`` writes under ``<runs_root>/seed<s>/``, names its
        runs ``<name>-s<s>-<run>`` and sets ``seed=s`` on every run; its students learn from its own teachers.
        Without ``seeds``, the study itself."""
        if not self.seeds:
            return [self]
        return [replace(self, name=f'{self.name}-s{s}', runs_root=seed_root(self.runs_root, s), seeds=[], seed=s,
                        overrides={**self.overrides, 'seed': s}) for s in self.seeds]

    def run(self, name: str) -> StudyRun:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(name)

    def run_dir(self, name: str) -> str:
        """``<runs_root>/<name>``: a run's folder (a Matryoshka entry's output folder)."""
        return f'{self.runs_root.rstrip("/")}/{name}'

    def checkpoint(self, name: str) -> str:
        """The final checkpoint of study run ``name``, as its students name it."""
        return f'{self.run_dir(name)}/{CHECKPOINT}'

    def run_name(self, name: str) -> str:
        return f'{self.name}-{name}'


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
    return StudyRun(name=name, recipe=source, kind=kind, overrides=dict(overrides), teachers=list(teachers),
                    tags=list(tags), generations=generations)


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
    for key in ('name', 'baseline'):
        _expect(key, data.get(key), (str,), 'a string')
    _expect('runs', data.get('runs'), (list,), 'a list of runs')
    seeds = data.get('seeds') or []
    _expect('seeds', seeds, (list,), 'a list of distinct ints')
    if len(set(seeds)) != len(seeds) or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        raise StudyError(f'seeds: expected a list of distinct ints, got {seeds!r}')
    common = data.get('overrides') or {}
    _expect('overrides', common, (dict,), 'a mapping of dotted keys to values')
    runs = [_parse_run(i, entry) for i, entry in enumerate(data['runs'])]
    study = Study(
        name=data['name'], runs_root=runs_root or data.get('runs_root') or f"runs/study-{data['name']}",
        baseline=data['baseline'], runs=runs, metric=data.get('metric', 'eval/MulticlassAccuracy'),
        overrides={**common, **(overrides or {})}, path=path, description=str(data.get('description') or ''),
        seeds=list(seeds),
    )
    check_study(study)
    return study


def check_study(study: Study) -> None:
    """Unique names, teachers that are earlier-trainable study runs, no cycles, a baseline that is a plain run."""
    names = [r.name for r in study.runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StudyError(f'runs: duplicate names: {", ".join(dupes)}')
    kinds = {r.name: r.kind for r in study.runs}
    for r in study.runs:
        for t in r.teachers:
            if t not in kinds:
                raise StudyError(f'runs ({r.name}).teachers: {t!r} is not a run of this study')
            if kinds[t] != 'train':
                raise StudyError(f'runs ({r.name}).teachers: {t!r} is a {kinds[t]} entry, not a trained run')
    if study.baseline not in kinds or kinds[study.baseline] != 'train':
        raise StudyError(f'baseline: {study.baseline!r} is not a trained run of this study')
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
            level[name] = 1 + max((depth(t, (*path, name)) for t in by_name[name].teachers), default=-1)
        return level[name]

    selected = names if names is not None else [r.name for r in study.runs]
    for n in selected:
        depth(n, ())
    teaching = {t for r in study.runs for t in r.teachers}
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
            stack.extend(study.run(n).teachers)
    return out
