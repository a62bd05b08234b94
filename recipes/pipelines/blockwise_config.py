"""The blockwise trainer's YAML: its schema, defaults and one-line errors (see ``recipes/blockwise.py`` for the
stages and ``yamls/pipelines/*/blockwise_*.yaml`` for examples); one dataclass per section (:mod:`recipes.core.schema`).

    run_name: fmnist-blockwise-resnet8
    teacher:
      recipe: yamls/fashion_mnist/resnet8.yaml    # the teacher's training recipe: model, data, fine-tuning optimizer
      overrides: {train_loader.subset: 55000}      # applied to the recipe (dotted keys)
      checkpoint: null                             # a trained teacher; null: train the recipe first
    blockwise: {mode: parallel, block: ds2, epochs: 30, check_every: 2, max_drop: 1.0, val_size: 5000}
    schedule: {policy: work_stealing, workers: 2}
    fine_tune: {overrides: {max_duration: 20ep}, freeze: ['1x1', fc]}

The recipe and the trainer's own sections are checked before anything runs: an unknown key, a wrong type, an
unknown block, mode or policy, a missing file is one ``ConfigError`` line naming the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING

from algorithms.blockwise import LocalTrainingSettings

from recipes.core.config import load_config
from recipes.core.errors import ConfigError
from recipes.core.schema import check_time, load_spec

__all__ = ['BlockwiseSpec', 'load_blockwise', 'recipe_config']

MODES = ('parallel', 'top_down', 'bottom_up')


@dataclass
class TeacherSection:
    recipe: str = MISSING  # the teacher's training recipe: model, data, fine-tuning optimizer
    overrides: dict[str, Any] = field(default_factory=dict)  # applied to the recipe (dotted keys)
    checkpoint: Optional[str] = None  # a trained teacher; None: train the recipe first


@dataclass
class BlockwiseSection(LocalTrainingSettings):
    """The blockwise section: the library's local-training settings (declared once, in
    :class:`~algorithms.blockwise.LocalTrainingSettings`) and the trainer's own keys."""

    mode: str = 'parallel'
    block: str = 'ds2'
    layers: Optional[list[Any]] = None
    skip_costlier: bool = True
    batch_size: int = 128
    eval_batch_size: int = 250
    val_size: int = 5000
    train_subset: Optional[int] = None
    device: Optional[str] = None
    cache: bool = True
    crop_padding: int = 0
    flip: bool = False


@dataclass
class ScheduleSection:
    policy: str = 'work_stealing'
    workers: int = 1
    address: Optional[str] = None
    gpus: bool = False
    times: Optional[str] = None
    torch_threads: Optional[int] = 1


@dataclass
class FineTuneSection:
    overrides: dict[str, Any] = field(default_factory=dict)
    freeze: list[Any] = field(default_factory=list)


@dataclass
class BlockwiseSpec:
    """A blockwise trainer's YAML (``fine_tune: null`` skips fine-tuning)."""

    run_name: str = MISSING
    run_dir: str = 'runs/${run_name}'
    seed: int = 17
    teacher: TeacherSection = MISSING
    blockwise: BlockwiseSection = field(default_factory=BlockwiseSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    fine_tune: Optional[FineTuneSection] = field(default_factory=FineTuneSection)
    energy: bool = True


def _positive(section: str, cfg: dict[str, Any], keys: tuple[str, ...], least: float = 1) -> None:
    for key in keys:
        value = cfg[key]
        if value is not None and value < least:
            raise ConfigError(f'{section}.{key}: expected a number >= {least}, got {value!r}')


def recipe_config(cfg: dict[str, Any], extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The teacher's recipe with ``teacher.overrides`` and then ``extra`` applied, loaded and validated."""
    from recipes.core.cli import dotlist

    overrides = {**cfg['teacher']['overrides'], **(extra or {})}
    return load_config(cfg['teacher']['recipe'], dotlist(overrides))


def load_blockwise(path: str | os.PathLike, overrides: Optional[list[str]] = None) -> dict[str, Any]:
    """Read and validate a blockwise YAML (``base:`` and overrides as for recipes); returns the completed config."""
    from algorithms.blockwise import BLOCKS, POLICIES
    from recipes.core.builders import prepare

    cfg = load_spec(path, overrides, BlockwiseSpec)
    bw, sched = cfg['blockwise'], cfg['schedule']
    if bw['mode'] not in MODES:
        raise ConfigError(f"blockwise.mode: expected one of {', '.join(MODES)}, got {bw['mode']!r}")
    if bw['block'] not in BLOCKS:
        raise ConfigError(f"blockwise.block: unknown block {bw['block']!r}; allowed: {', '.join(BLOCKS)}")
    _positive('blockwise', bw, ('epochs', 'check_every', 'decay_steps', 'batch_size', 'eval_batch_size', 'val_size',
                                'train_subset'))
    _positive('blockwise', bw, ('max_drop', 'crop_padding'), least=0)
    for key in ('lr', 'lr_decay', 'alpha'):
        if not bw[key] > 0:
            raise ConfigError(f'blockwise.{key}: expected a positive number, got {bw[key]!r}')
    if sched['policy'] not in POLICIES:
        raise ConfigError(f"schedule.policy: expected one of {', '.join(POLICIES)}, got {sched['policy']!r}")
    _positive('schedule', sched, ('workers', 'torch_threads'))
    if sched['policy'] == 'serial' and sched['workers'] != 1:
        raise ConfigError(f"schedule.workers: the 'serial' policy runs in the driver's process; got {sched['workers']}")
    if bw['mode'] != 'parallel' and sched['policy'] != 'serial':
        raise ConfigError(f"schedule.policy: blockwise.mode {bw['mode']!r} replaces layers one after another; "
                          "set schedule.policy: serial (only mode 'parallel' has independent tasks)")
    if sched['policy'] == 'bin_packing' and sched['times'] is None:
        raise ConfigError('schedule.times: bin_packing needs the task times of an earlier run '
                          '(<run_dir>/task_times.json); set schedule.times')
    for key, where in ((cfg['teacher']['recipe'], 'teacher.recipe'), (sched['times'], 'schedule.times'),
                       (cfg['teacher']['checkpoint'], 'teacher.checkpoint')):
        if key is not None and not Path(key).is_file():
            raise ConfigError(f'{where}: file not found: {key}')
    if cfg['teacher']['checkpoint'] is not None:
        from recipes.core.checkpoint_safety import check_checkpoint
        check_checkpoint('teacher.checkpoint', cfg['teacher']['checkpoint'])
    recipe = recipe_config(cfg)
    if recipe['eval_loader'] is None:
        raise ConfigError(f"teacher.recipe: {cfg['teacher']['recipe']} has no eval_loader (the student's test data)")
    if cfg['fine_tune'] is not None:
        tuned = recipe_config(cfg, cfg['fine_tune']['overrides'])
        check_time('fine_tune.overrides.max_duration', tuned['max_duration'], allow_zero=False)
        prepare(tuned)  # every key of the fine-tuning run checked now, not after the tasks
    return cfg
