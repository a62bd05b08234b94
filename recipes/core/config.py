"""Load a recipe YAML, merge ``key=value`` overrides, fill defaults and validate the whole run before it starts.

Every problem is a :class:`~recipes.core.errors.ConfigError` whose one-line message names the key and what was expected.
Validation reads no data and writes no folder; checks that need the model, the data or a builder's signature
live next to those (``recipes.models.registry``, ``recipes.data.registry``, ``recipes.core.registry``) and are called from
:func:`recipes.core.builders.build_run` before anything is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING

from recipes.core.errors import ConfigError
# check_keys/check_type are re-exported for recipes.core.registry, merge_yaml for benchmarks.study.engine
from recipes.core.schema import check_keys, check_time, check_type, load_spec, merge_yaml, union, validate  # noqa: F401

TIME_KEYS = ('max_duration', 'eval_interval', 'save_interval', 'console_log_interval')
PRECISIONS = ('fp32', 'amp_fp16', 'amp_bf16')
DEVICES = ('cpu', 'gpu', 'mps')


@dataclass
class Recipe:
    """The top level of a recipe YAML. The ``dict`` sections are checked by their own builders (model, data,
    optimizer, scheduler, algorithms, callbacks, loggers: their keys depend on the name they choose)."""

    run_name: str = MISSING
    seed: int = 17
    model: dict[str, Any] = MISSING
    train_loader: dict[str, Any] = MISSING
    eval_loader: Optional[dict[str, Any]] = None
    global_train_batch_size: int = MISSING
    global_eval_batch_size: Optional[int] = None  # None: the train batch size
    device_train_microbatch_size: Any = union(int, str, None)  # an int or 'auto'
    optimizer: dict[str, Any] = MISSING
    scheduler: Optional[dict[str, Any]] = None
    max_duration: str = MISSING
    eval_interval: Any = union(str, int, default='1ep')
    precision: str = 'fp32'
    device: Optional[str] = None
    algorithms: dict[str, Any] = field(default_factory=dict)
    callbacks: dict[str, Any] = field(default_factory=dict)
    loggers: dict[str, Any] = field(default_factory=dict)
    run_dir: str = 'runs/${run_name}'
    save_folder: Optional[str] = '${run_dir}/checkpoints'
    save_interval: str = '1ep'
    save_num_checkpoints_to_keep: int = -1
    autoresume: bool = False
    load_path: Optional[str] = None
    load_weights_only: bool = False
    progress_bar: bool = True
    log_to_console: bool = False
    console_log_interval: str = '1ep'


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read ``path``, merge dotted ``key=value`` overrides on top, resolve interpolations and fill top-level defaults
    (:class:`Recipe`, through :func:`recipes.core.schema.load_spec`).

    A YAML may start with ``base: other.yaml`` (a path relative to it): it is then merged over that file, so a
    variant recipe states only what it changes.
    """
    return load_spec(path, overrides, Recipe)


def load_mapping(path: str | os.PathLike, overrides: list[str] | None = None, key: str = '-f') -> dict[str, Any]:
    """A YAML of any schema read with the recipes' rules (``base:``, dotted overrides, interpolations resolved) as a
    plain dict: ``load_spec(path, overrides, key=key)`` without a schema (``benchmarks.study.spec`` reads studies
    with it)."""
    return load_spec(path, overrides, key=key)


def validate_top_level(cfg: dict[str, Any], world_size: int) -> None:
    """Types (:class:`Recipe`: ``cfg`` may have been changed since it was loaded), time strings and the enumerations
    of the top-level keys; batch sizes divisible by ``world_size``."""
    validate(cfg, Recipe)
    for key in TIME_KEYS:
        check_time(key, cfg[key], allow_zero=key != 'max_duration')
    if cfg['precision'] not in PRECISIONS:
        raise ConfigError(f"precision: expected one of {', '.join(PRECISIONS)}, got {cfg['precision']!r}")
    if cfg['device'] is not None and cfg['device'] not in DEVICES:
        raise ConfigError(f"device: expected null (auto) or one of {', '.join(DEVICES)}, got {cfg['device']!r}")
    mb = cfg['device_train_microbatch_size']
    if isinstance(mb, str) and mb != 'auto':
        raise ConfigError(f"device_train_microbatch_size: expected an int or 'auto', got {mb!r}")
    if cfg['global_eval_batch_size'] is None:
        cfg['global_eval_batch_size'] = cfg['global_train_batch_size']
    for key in ('global_train_batch_size', 'global_eval_batch_size'):
        if cfg[key] <= 0 or cfg[key] % world_size:
            raise ConfigError(
                f'{key}: {cfg[key]} is not a positive multiple of the number of ranks ({world_size}); '
                'it is the global batch size, split evenly across ranks',
            )
    if cfg['autoresume'] and not cfg['save_folder']:
        raise ConfigError('autoresume: true needs save_folder to be set')
    if cfg['load_path'] is not None and '://' not in cfg['load_path'] and not Path(cfg['load_path']).is_file():
        raise ConfigError(f"load_path: checkpoint file not found: {cfg['load_path']}")
