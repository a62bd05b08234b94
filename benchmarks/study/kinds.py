"""The kinds of run a study holds, one table entry each: the command, how its ``key=value`` list is built, how its
YAML is resolved (checked before the first run trains), and how to tell that it is finished.

============== ============================ ===================================================================
kind           command                      finished when
============== ============================ ===================================================================
train          ``recipes/train.py``         its ``summary.json`` says finished (and, in a study with a
                                            ``family`` hook, which reads the model, its checkpoint is there)
teacher_cache  ``recipes/teacher_cache.py`` its manifest exists and every shard it plans (epoch x rank) is whole
matryoshka     ``recipes/matryoshka.py``    its manifest exists and every student of every generation finished
prune_pipeline ``recipes/prune_pipeline.py`` its manifest exists and every stage finished with its checkpoint
blockwise      ``recipes/blockwise.py``     its report ``blockwise.json`` exists (the driver's last stage)
glue           ``recipes/glue.py``          its results table and every (task, seed) result exist
============== ============================ ===================================================================

A run's own ``overrides`` and the study's common ones (with ``seed`` on a replica) are keys of the run's YAML, except
for Matryoshka (every student's recipe); the engine's keys (folder, name, teachers) come last, so they win. A
teacher_cache run's command is ``python recipes/teacher_cache.py -f <student recipe> --teacher <checkpoint> ...
--out <its folder> [--<option> value ...] key=value ...`` (its ``cache:`` options; ``--teacher-model`` from its
teachers' own configs when their model is not the recipe's), run by Python whatever the study's launcher: it is
not a distributed program (``--world-size`` and ``--dask`` are its options). The drivers are imported only when a
function here is called (they import Composer and torch).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import OmegaConf

from algorithms.callbacks.run_record import MANIFEST_FILE, run_finished
from benchmarks.study.spec import REPO, Study, StudyError, StudyRun
from recipes.core.cli import dotlist, format_value
from recipes.core.schema import load_spec, merge_yaml

KD = 'knowledge_distillation'


@dataclass(frozen=True)
class Kind:
    """One kind of run: its command module, how its YAML is read, its overrides, and when it is finished."""

    module: str  # e.g. 'recipes.prune_pipeline'; the command is its file, from the repository root
    loader: str  # 'module:function' that reads the YAML with overrides (raises ConfigError), as the command does
    overrides: Callable[[Study, StudyRun], list[str]]
    finished: Callable[[Study, StudyRun, Path], bool]
    launcher: Optional[str] = None  # the command's own launcher, whatever the study's (None: the study's)

    @property
    def entry_point(self) -> str:
        return self.module.replace('.', '/') + '.py'

    def load(self, path: Path, overrides: list[str]) -> dict[str, Any]:
        module, function = self.loader.split(':')
        return getattr(importlib.import_module(module), function)(path, overrides)


def resolve_yaml(path: str) -> Path:
    """A recipe or spec path as written in a study: relative to the current folder, else to the repository root."""
    p = Path(path)
    return p if p.is_file() or p.is_absolute() else REPO / p


def _common(study: Study, run: StudyRun) -> dict[str, Any]:
    return {**study.overrides, **run.overrides}


def _folder_keys(study: Study, run: StudyRun) -> list[str]:
    run_dir = study.run_dir(run.name)
    return [f'run_name={study.run_name(run.name)}', f'run_dir={run_dir}']


def _train_overrides(study: Study, run: StudyRun) -> list[str]:
    args = dotlist(_common(study, run))
    if run.teachers and study.run(run.teachers[0]).kind == 'teacher_cache':  # KD reads the caches (spec: all are)
        args.append(f'algorithms.{KD}.teachers={format_value([{"cache": study.run_dir(t)} for t in run.teachers])}')
    elif run.teachers:  # every algorithm of the recipe that has teachers learns from the study's
        from recipes.core.config import load_config

        cfg = load_config(resolve_yaml(run.recipe), args)
        names = [n for n, a in (cfg.get('algorithms') or {}).items() if isinstance(a, dict) and 'teachers' in a]
        checkpoints = format_value([study.checkpoint(t) for t in run.teachers])
        args += [f'algorithms.{n}.teachers={checkpoints}' for n in names or [KD]]
    if run.load_from:
        args.append(f'load_path={study.checkpoint(run.load_from)}')
    return [*args, *_folder_keys(study, run), f'save_folder={study.run_dir(run.name)}/checkpoints', 'autoresume=true']


def _train_finished(study: Study, run: StudyRun, folder: Path) -> bool:
    return run_finished(folder, need_checkpoint=bool(study.family))  # a family's hook reads the trained model


def _model_of(study: Study, run: StudyRun) -> Any:
    """The ``model`` section of a train run of ``study`` as its command resolves it."""
    from recipes.core.config import load_config

    return load_config(resolve_yaml(run.recipe), dotlist(_common(study, run)))['model']


def _cache_overrides(study: Study, run: StudyRun) -> list[str]:
    options = dict(run.cache)
    outside = options.pop('teacher', [])  # checkpoints trained outside the study
    checkpoints = [study.checkpoint(t) for t in run.teachers] + ([outside] if isinstance(outside, str) else outside)
    args = [word for c in checkpoints for word in ('--teacher', c)]
    args += ['--out', study.run_dir(run.name)]
    if 'teacher_model' not in options and run.teachers:  # the teachers' own model, when it is not the recipe's
        models = [_model_of(study, study.run(t)) for t in run.teachers]
        if any(m != models[0] for m in models):
            raise StudyError(f'runs ({run.name}).teachers: their models differ ({models}); one cache is made by '
                             'teachers of one model (give cache.teacher_model)')
        if models[0] != _model_of(study, run):
            options['teacher_model'] = models[0]
    for key, value in options.items():
        args += [f'--{key.replace("_", "-")}', json.dumps(value) if isinstance(value, dict) else str(value)]
    return [*args, *dotlist(_common(study, run))]


def _cache_finished(study: Study, run: StudyRun, folder: Path) -> bool:
    from algorithms.distillation import TeacherCache

    try:
        cache = TeacherCache(folder)
        epochs, ranks = list(cache.manifest['epochs']), int(cache.manifest.get('world_size', 1))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(epochs) and all(cache.has_shard(int(e), r) for e in epochs for r in range(ranks))


def _matryoshka_pool(study: Study, run: StudyRun) -> list[dict[str, Any]]:
    """The spec's pool as written (``base:`` followed), to pair its members' overrides with the study's teachers."""
    _, cfg = merge_yaml(resolve_yaml(run.recipe), None, key=f'runs ({run.name}).spec')
    pool = OmegaConf.to_container(cfg, resolve=False).get('pool')  # type: ignore[union-attr]
    if not isinstance(pool, list):
        raise StudyError(f'runs ({run.name}).spec: {run.recipe} has no pool list')
    return pool


def _matryoshka_overrides(study: Study, run: StudyRun) -> list[str]:
    args = [f'name={study.run_name(run.name)}', f'out_dir={study.run_dir(run.name)}']
    if run.generations is not None:
        args.append(f'generations={run.generations}')
    if run.teachers:
        pool = _matryoshka_pool(study, run)
        if len(pool) != len(run.teachers):
            raise StudyError(f'runs ({run.name}).teachers: {len(run.teachers)} teachers for a pool of {len(pool)}')
        members = [{'checkpoint': study.checkpoint(t), 'overrides': dict(m.get('overrides') or {})}
                   for t, m in zip(run.teachers, pool)]
        args.append(f'pool={json.dumps(members)}')
    students = _common(study, run)
    if students:
        args.append(f'overrides={json.dumps(students)}')
    return args


def _matryoshka_finished(study: Study, run: StudyRun, folder: Path) -> bool:
    if not (folder / MANIFEST_FILE).is_file():
        return False
    spec = KINDS['matryoshka'].load(resolve_yaml(run.recipe), run_overrides(study, run))
    return all(run_finished(folder / f'g{g}' / f'm{i}') for g in range(1, spec['generations'] + 1)
               for i in range(len(spec['pool'])))


def _prune_overrides(study: Study, run: StudyRun) -> list[str]:
    return [*dotlist(_common(study, run)), f'out_dir={study.run_dir(run.name)}']


def _prune_finished(study: Study, run: StudyRun, folder: Path) -> bool:
    if not (folder / MANIFEST_FILE).is_file():
        return False
    from recipes.prune_pipeline import stage_configs

    spec = KINDS['prune_pipeline'].load(resolve_yaml(run.recipe), run_overrides(study, run))
    return all(run_finished(s['cfg']['run_dir'], need_checkpoint=True) for s in stage_configs(spec))


def _blockwise_overrides(study: Study, run: StudyRun) -> list[str]:
    args = [*dotlist(_common(study, run)), *_folder_keys(study, run)]
    if run.teachers:  # the teacher's checkpoint; a blockwise teacher's task times for bin packing
        teacher = run.teachers[0]
        args.append(f'teacher.checkpoint={study.checkpoint(teacher)}')
        _, cfg = merge_yaml(resolve_yaml(run.recipe), args)  # as written: the teacher is not trained yet
        if OmegaConf.select(cfg, 'schedule.policy') == 'bin_packing' and study.run(teacher).kind == 'blockwise':
            from recipes.blockwise import TIMES_FILE
            args.append(f'schedule.times={study.run_dir(teacher)}/{TIMES_FILE}')
    return args


def _blockwise_finished(study: Study, run: StudyRun, folder: Path) -> bool:
    from recipes.blockwise import REPORT_FILE

    return (folder / REPORT_FILE).is_file()


def _glue_overrides(study: Study, run: StudyRun) -> list[str]:
    common = _common(study, run)
    seed = common.pop('seed', None)  # a GLUE spec fine-tunes each task once per seed of its list
    args = [*dotlist(common), f'name={study.run_name(run.name)}', f'out_dir={study.run_dir(run.name)}']
    if seed is not None:
        args.append(f'seeds=[{seed}]')
    if run.teachers:
        args.append(f'pretrained={study.checkpoint(run.teachers[0])}')
    return args


def _glue_finished(study: Study, run: StudyRun, folder: Path) -> bool:
    from recipes.glue import RESULT_FILE, TABLE_JSON, GlueSpec

    if not (folder / TABLE_JSON).is_file():
        return False
    # its tasks and seeds (the schema's defaults), without the driver's check of the pre-trained checkpoint
    spec = load_spec(resolve_yaml(run.recipe), run_overrides(study, run), GlueSpec)
    return all((folder / str(t).lower() / f'seed{s}' / RESULT_FILE).is_file() for t in spec['tasks']
               for s in spec['seeds'])


KINDS: dict[str, Kind] = {
    'train': Kind('recipes.train', 'recipes.core.builders:load_checked', _train_overrides, _train_finished),
    'teacher_cache': Kind('recipes.teacher_cache', 'recipes.teacher_cache:load_command', _cache_overrides,
                          _cache_finished, launcher='python'),
    'matryoshka': Kind('recipes.matryoshka', 'recipes.matryoshka:load_spec', _matryoshka_overrides,
                       _matryoshka_finished),
    'prune_pipeline': Kind('recipes.prune_pipeline', 'recipes.prune_pipeline:load_spec', _prune_overrides,
                           _prune_finished),
    'blockwise': Kind('recipes.blockwise', 'recipes.pipelines.blockwise_config:load_blockwise', _blockwise_overrides,
                      _blockwise_finished),
    'glue': Kind('recipes.glue', 'recipes.glue:load_spec', _glue_overrides, _glue_finished),
}


def run_overrides(study: Study, run: StudyRun) -> list[str]:
    """The ``key=value`` overrides that make ``run`` a member of ``study`` (see the module docstring)."""
    return KINDS[run.kind].overrides(study, run)


def is_finished(study: Study, run: StudyRun) -> bool:
    """Whether ``run`` of ``study`` is finished (see the table in the module docstring)."""
    return KINDS[run.kind].finished(study, run, Path(study.run_dir(run.name)))


def run_in_process(run: StudyRun, overrides: list[str]) -> None:
    """Run ``run`` in this process, through the same code as its printed command: a training run through
    :func:`recipes.core.cli.train_stage`, a driver through its ``main`` (a non-zero exit status raises)."""
    if run.kind == 'train':
        from recipes.core.cli import train_stage
        from recipes.core.config import load_config

        train_stage(load_config(resolve_yaml(run.recipe), overrides))
        return
    status = importlib.import_module(KINDS[run.kind].module).main(['-f', str(resolve_yaml(run.recipe)), *overrides])
    if status:
        raise RuntimeError(f'{KINDS[run.kind].entry_point} exited with status {status}')
