"""Load a recipe YAML, merge ``key=value`` overrides, fill defaults and validate the whole run before it starts.

Every problem is a :class:`~recipes.core.errors.ConfigError` whose one-line message names the key and what was expected.
Validation reads no data and writes no folder; checks that need the model, the data or a builder's signature
live next to those (``recipes.models.registry``, ``recipes.data.registry``, ``recipes.core.registry``) and are called from
:func:`recipes.core.builders.build_run` before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from composer.core import Time
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from algorithms.common.time_strings import parse_time
from recipes.core.errors import ConfigError

REQUIRED = object()  # the default of a key that must be given

# key: (allowed types, default). ``dict`` sections are validated by their own builders.
TOP_LEVEL: dict[str, tuple[tuple[type, ...], Any]] = {
    'run_name': ((str,), REQUIRED),
    'seed': ((int,), 17),
    'model': ((dict,), REQUIRED),
    'train_loader': ((dict,), REQUIRED),
    'eval_loader': ((dict, type(None)), None),
    'global_train_batch_size': ((int,), REQUIRED),
    'global_eval_batch_size': ((int, type(None)), None),
    'device_train_microbatch_size': ((int, str, type(None)), None),
    'optimizer': ((dict,), REQUIRED),
    'scheduler': ((dict, type(None)), None),
    'max_duration': ((str,), REQUIRED),
    'eval_interval': ((str, int), '1ep'),
    'precision': ((str,), 'fp32'),
    'device': ((str, type(None)), None),
    'algorithms': ((dict,), {}),
    'callbacks': ((dict,), {}),
    'loggers': ((dict,), {}),
    'run_dir': ((str,), 'runs/${run_name}'),
    'save_folder': ((str, type(None)), '${run_dir}/checkpoints'),
    'save_interval': ((str,), '1ep'),
    'save_num_checkpoints_to_keep': ((int,), -1),
    'autoresume': ((bool,), False),
    'load_path': ((str, type(None)), None),
    'load_weights_only': ((bool,), False),
    'progress_bar': ((bool,), True),
    'log_to_console': ((bool,), False),
    'console_log_interval': ((str,), '1ep'),
}
TIME_KEYS = ('max_duration', 'eval_interval', 'save_interval', 'console_log_interval')
PRECISIONS = ('fp32', 'amp_fp16', 'amp_bf16')
DEVICES = ('cpu', 'gpu', 'mps')


def type_names(types: tuple[type, ...]) -> str:
    return ' or '.join('null' if t is type(None) else t.__name__ for t in types)


def check_type(key: str, value: Any, types: tuple[type, ...]) -> None:
    """Raise a ConfigError naming ``key`` unless ``value`` is one of ``types`` (a bool is not an int, an int is a float)."""
    if isinstance(value, bool) and bool not in types:
        ok = False
    elif float in types and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    else:
        ok = isinstance(value, types)
    if not ok:
        raise ConfigError(f'{key}: expected {type_names(types)}, got {type(value).__name__} {value!r}')


def check_time(key: str, value: Any, allow_zero: bool = True) -> Time:
    """Parse a Composer time string such as ``90ep``, ``70000ba``, ``286720000sp`` or ``0.3dur``; name ``key`` if bad
    (:func:`algorithms.common.time_strings.parse_time`, the project's one parser)."""
    try:
        return parse_time(value, key, allow_zero=allow_zero)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_keys(key: str, section: dict, allowed: Any) -> None:
    """Raise a ConfigError for the first key of ``section`` that is not in ``allowed``."""
    for name in section:
        if name not in allowed:
            where = f'{key}.{name}' if key else name
            raise ConfigError(f"unknown key '{where}'; allowed: {', '.join(sorted(allowed))}")


def merge_yaml(path: str | os.PathLike, overrides: list[str] | None, key: str = '-f') -> tuple[Path, DictConfig]:
    """``path`` read with its ``base:`` chain, dotted ``key=value`` overrides merged on top (not yet resolved)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f'{key}: YAML file not found: {path}')
    try:
        cfg = _load_with_base(path, seen=())
        if overrides:
            bad = [o for o in overrides if '=' not in o]
            if bad:
                raise ConfigError(f"override {bad[0]!r}: expected dotted.key=value")
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))  # type: ignore[assignment]
    except OmegaConfBaseException as e:
        raise ConfigError(f'{path}: {str(e).splitlines()[0]}') from None
    return path, cfg


def resolve_merged(path: Path, cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` (from :func:`merge_yaml`) as a plain dict, interpolations resolved; a ConfigError names ``path``."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise ConfigError(f'{path}: cannot resolve interpolation: {str(e).splitlines()[0]}') from None


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read ``path``, merge dotted ``key=value`` overrides on top, resolve interpolations and fill top-level defaults.

    A YAML may start with ``base: other.yaml`` (a path relative to it): it is then merged over that file, so a
    variant recipe states only what it changes.
    """
    path, cfg = merge_yaml(path, overrides)
    check_keys('', cfg, TOP_LEVEL)
    for key, (_, default) in TOP_LEVEL.items():
        if key not in cfg:
            if default is REQUIRED:
                raise ConfigError(f"missing required key '{key}'")
            cfg[key] = default
    return resolve_merged(path, cfg)


def load_mapping(path: str | os.PathLike, overrides: list[str] | None = None, key: str = '-f') -> dict[str, Any]:
    """A YAML of any schema read with the recipes' rules (``base:``, dotted ``key=value`` overrides, interpolations
    resolved) as a plain dict; drivers with their own schema (the blockwise trainer) validate it themselves."""
    return resolve_merged(*merge_yaml(path, overrides, key))


def load_yaml(path: Path) -> Any:
    """``OmegaConf.load(path)``; a YAML syntax error becomes one ConfigError line with the file, line and column."""
    try:
        return OmegaConf.load(path)
    except yaml.YAMLError as e:
        mark = getattr(e, 'problem_mark', None)
        where = f'{path}:{mark.line + 1}:{mark.column + 1}' if mark is not None else str(path)
        problem = getattr(e, 'problem', None) or str(e).splitlines()[0]
        raise ConfigError(f'{where}: YAML syntax error: {problem}') from None


def _load_with_base(path: Path, seen: tuple[Path, ...]) -> DictConfig:
    """Load ``path``; if it names ``base: other.yaml`` (relative to itself), merge it over that file."""
    cfg = load_yaml(path)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f'{path}: expected a mapping at the top level, got a list')
    if 'base' not in cfg:
        return cfg
    base = cfg.pop('base')
    if not isinstance(base, str):
        raise ConfigError(f'{path}: base: expected a path to a YAML file, got {base!r}')
    base_path = (path.parent / base).resolve()
    if not base_path.is_file():
        raise ConfigError(f'{path}: base: YAML file not found: {base_path}')
    if base_path in seen:
        raise ConfigError(f'{path}: base: circular reference to {base_path}')
    return OmegaConf.merge(_load_with_base(base_path, (*seen, path.resolve())), cfg)  # type: ignore[return-value]


def validate_top_level(cfg: dict[str, Any], world_size: int) -> None:
    """Types, time strings and the enumerations of the top-level keys; batch sizes divisible by ``world_size``."""
    for key, (types, _) in TOP_LEVEL.items():
        check_type(key, cfg[key], types)
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
