"""Turn a loaded config into a Composer Trainer, in two steps.

:func:`prepare` validates everything and constructs the objects that need no I/O (model, optimizer, scheduler,
algorithms, callbacks, loggers): every mistake in the YAML surfaces here as a ``ConfigError``. Only then does
:func:`launch` write the run folder (the resolved config), open the dataloaders and construct the ``Trainer``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from composer import Trainer
from composer.core import Callback
from composer.utils import dist, reproducibility

from algorithms.callbacks import NonFiniteLossGuard, RunRecord
from algorithms.callbacks.run_record import CONFIG_FILE
from recipes.core import registry
from recipes.models import registry as models
from recipes.core.algorithm_factories import algorithm_table
from recipes.core.checkpoint_safety import (check_checkpoint, use_atomic_checkpoint_writes,
                                            use_weights_only_checkpoint_loading)
from recipes.core.config import load_config, validate_top_level
from recipes.data.registry import (build_dataloader, build_dataset, check_data, check_model_fits_loader, dataset_info,
                          resolve_options)
from recipes.core.errors import ConfigError
from recipes.core.run_lock import RunLock, lock_run_dir
from recipes.core.teachers import TeacherRegistry

log = logging.getLogger(__name__)

# Top-level config keys passed to composer.Trainer under the same name.
TRAINER_KEYS = (
    'run_name', 'seed', 'max_duration', 'eval_interval', 'precision', 'device', 'device_train_microbatch_size',
    'save_folder', 'save_interval', 'save_num_checkpoints_to_keep', 'autoresume', 'load_path', 'load_weights_only',
    'progress_bar', 'log_to_console', 'console_log_interval',
)


@dataclass
class PreparedRun:
    """A validated run: its resolved config and every object the Trainer needs except the dataloaders."""

    cfg: dict[str, Any]
    trainer_kwargs: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg['run_dir'])


def check_config(cfg: dict[str, Any]) -> None:
    """What can be checked of a resolved config without building its model or reading its data (which an earlier
    stage may still have to produce): the top level, and the names and arguments of the optimizer, scheduler,
    algorithms, callbacks and loggers. A driver that runs many configs calls it for every one before the first
    trains; :func:`prepare` then checks the rest."""
    validate_top_level(cfg, dist.get_world_size())
    registry.check_named('optimizer', registry.OPTIMIZERS, cfg['optimizer'], takes_params=True)
    if cfg['scheduler'] is not None:
        registry.check_named('scheduler', registry.SCHEDULERS, cfg['scheduler'])
    registry.check_by_name('algorithms', algorithm_table(None), cfg['algorithms'])  # type: ignore[arg-type]
    registry.check_by_name('callbacks', registry.CALLBACKS, cfg['callbacks'])
    registry.check_by_name('loggers', registry.LOGGERS, cfg['loggers'])


def load_checked(path: str | os.PathLike, overrides: list[str] | None = None) -> dict[str, Any]:
    """:func:`~recipes.core.config.load_config` then :func:`check_config`: a recipe as far as it can be checked
    without its model or data (how studies check every run before the first trains)."""
    cfg = load_config(path, overrides)
    check_config(cfg)
    return cfg


def prepare(cfg: dict[str, Any], extra_callbacks: list[Callback] | None = None) -> PreparedRun:
    """Validate ``cfg`` (as returned by :func:`recipes.core.config.load_config`) and build what needs no data or files."""
    validate_top_level(cfg, dist.get_world_size())
    loaders = [key for key in ('train_loader', 'eval_loader') if cfg[key] is not None]
    for key in loaders:
        check_data(cfg[key], key)
        check_model_fits_data(cfg['model'], cfg[key], key)
    if cfg['load_path'] is not None and '://' not in cfg['load_path']:
        check_checkpoint('load_path', cfg['load_path'])
    reproducibility.seed_all(cfg['seed'])  # the model's initial weights depend on the seed, not on what ran before
    model = models.build_model(**cfg['model'])
    for key in loaders:
        check_model_fits_loader(model, cfg[key], key)
    optimizer = registry.build_named('optimizer', registry.OPTIMIZERS, cfg['optimizer'], model.parameters())
    schedulers = []
    if cfg['scheduler'] is not None:
        schedulers.append(registry.build_named('scheduler', registry.SCHEDULERS, cfg['scheduler']))
    shape = dataset_info(cfg['train_loader']).get('input_shape')
    teachers = TeacherRegistry(default_model=cfg['model'], student=model, input_shape=shape, run_config=cfg,
                               train_size=lambda: len(build_dataset(resolve_options(cfg['train_loader']))))
    algorithms = registry.build_by_name('algorithms', algorithm_table(teachers), cfg['algorithms'])
    check_algorithms_fit(model, algorithms)
    check_sample_indices(cfg, algorithms)
    callbacks = registry.build_by_name('callbacks', registry.CALLBACKS, cfg['callbacks'])
    check_algorithms_fit(model, callbacks, key='callbacks')  # e.g. similarity_monitor's layers and reference
    loggers = registry.build_by_name('loggers', registry.LOGGERS, cfg['loggers'])
    callbacks += [RunRecord(cfg['run_dir'], teachers=teachers.checkpoints), NonFiniteLossGuard(),
                  *(extra_callbacks or [])]
    kwargs = dict(
        model=model, optimizers=optimizer, schedulers=schedulers, algorithms=algorithms, callbacks=callbacks,
        loggers=loggers, step_schedulers_every_batch=True, save_overwrite=not cfg['autoresume'],
        load_strict_model_weights=strict_weights(cfg, model, algorithms),
        **{key: cfg[key] for key in TRAINER_KEYS},
    )
    return PreparedRun(cfg=cfg, trainer_kwargs=kwargs)


def check_model_fits_data(model_cfg: dict[str, Any], loader_cfg: dict[str, Any], key: str) -> None:
    """A ConfigError if the model's ``num_classes`` or ``in_channels`` (given or default) differ from what the
    dataset of ``loader_cfg`` gives; models without such an option are not checked."""
    options = models.model_options(model_cfg.get('name'))
    info = dataset_info(loader_cfg)
    for option in ('num_classes', 'in_channels'):
        if option not in options or option not in info:
            continue
        value = model_cfg.get(option, options[option])
        if value != info[option]:
            raise ConfigError(f"model.{option}: {value} does not fit {key}.dataset {loader_cfg['dataset']!r}, "
                              f'which has {info[option]}; set model.{option}={info[option]}')


def check_algorithms_fit(model: Any, algorithms: list[Any], key: str = 'algorithms') -> None:
    """A ConfigError if an algorithm (or a callback: ``key='callbacks'``) does not fit the model: it may define
    ``check_model(model)``, raising ``KeyError``/``ValueError`` (a feature or layer name the model lacks, a mask of
    the wrong shape, a reference checkpoint that is missing, unsafe or of another architecture)."""
    for algorithm in algorithms:
        check = getattr(algorithm, 'check_model', None)
        if check is None:
            continue
        try:
            check(model)
        except (KeyError, ValueError) as e:
            raise ConfigError(f'{key} ({type(algorithm).__name__}): {e.args[0] if e.args else e}') from None


def strict_weights(cfg: dict[str, Any], model: Any, algorithms: list[Any]) -> bool:
    """Whether ``load_path`` is loaded strictly. Not strictly only in one case: weights-only loading (e.g. pruning a
    trained model while distilling) of a checkpoint without distillation heads into a student whose algorithms add
    some (CRD embeddings and banks, FitNets regressors: they start fresh), when every other key matches."""
    path = cfg['load_path']
    if path is None or not cfg['load_weights_only'] or '://' in path:
        return True
    if not any(getattr(a, 'heads', lambda: None)() is not None for a in algorithms):
        return True
    from algorithms.common.checkpoint_loading import safe_load
    from algorithms.distillation.distillation_term import HEADS_ATTR

    saved = safe_load(path, mmap=True).get('state', {}).get('model', {})  # keys only: mapped, not read
    if any(k.startswith(f'{HEADS_ATTR}.') for k in saved):
        return True
    return set(saved) != set(model.state_dict())  # not strict only when every other key matches


def check_sample_indices(cfg: dict[str, Any], algorithms: list[Any]) -> None:
    """A ConfigError unless the train loader yields sample indices exactly when an algorithm reads them (CRD's
    memory banks do: ``needs_sample_indices``), and no eval loader yields them (the model would see a triple)."""
    readers = [type(a).__name__ for a in algorithms if getattr(a, 'needs_sample_indices', False)]
    yields = bool((cfg['train_loader'] or {}).get('indices'))
    if readers and not yields:
        raise ConfigError(f'algorithms ({readers[0]}): needs the index of every training sample; set '
                          'train_loader.indices: true')
    if yields and not readers:
        raise ConfigError('train_loader.indices: true, but no algorithm reads sample indices (CRD does); the model '
                          'would receive (x, y, index): remove it')
    if (cfg['eval_loader'] or {}).get('indices'):
        raise ConfigError('eval_loader.indices: evaluation takes (x, y) batches; remove it')


def data_device(device: str | None) -> torch.device:
    """Where in-memory data lives: this rank's GPU when training on one (``device: gpu``, or unset with CUDA
    available, as Composer chooses), else the CPU."""
    if device == 'gpu' or (device is None and torch.cuda.is_available()):
        return torch.device('cuda', dist.get_local_rank())
    return torch.device('cpu')


def launch(run: PreparedRun) -> Trainer:
    """Build the dataloaders (a loader that resolves to no example fails here, before the run folder exists), lock
    the run folder (a ConfigError if another live run holds it: :mod:`recipes.core.run_lock`), write
    ``<run_dir>/config.yaml`` and build the Trainer (which resumes if asked to)."""
    cfg = run.cfg
    loaders = _dataloaders(cfg)
    lock = None
    if dist.get_global_rank() == 0:
        lock = lock_run_dir(run.run_dir)  # before anything is written into the folder
    try:
        if lock is not None:
            (run.run_dir / CONFIG_FILE).write_text(yaml.safe_dump(cfg, sort_keys=False))
        return _trainer(run, loaders, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _dataloaders(cfg: dict[str, Any]) -> tuple[Any, Any]:
    world, device = dist.get_world_size(), data_device(cfg['device'])
    train_dl = build_dataloader(cfg['train_loader'], cfg['global_train_batch_size'] // world, 'train_loader',
                                seed=cfg['seed'], device=device)
    eval_dl = None
    if cfg['eval_loader'] is not None:
        eval_dl = build_dataloader(cfg['eval_loader'], cfg['global_eval_batch_size'] // world, 'eval_loader',
                                   seed=cfg['seed'], device=device)
    return train_dl, eval_dl


def _trainer(run: PreparedRun, loaders: tuple[Any, Any], lock: RunLock | None) -> Trainer:
    train_dl, eval_dl = loaders
    use_weights_only_checkpoint_loading()
    use_atomic_checkpoint_writes()
    kwargs = dict(run.trainer_kwargs)
    if lock is not None:  # released when the Trainer closes
        kwargs['callbacks'] = [*kwargs['callbacks'], lock]
    return Trainer(train_dataloader=train_dl, eval_dataloader=eval_dl, **kwargs)
