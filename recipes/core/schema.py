"""The one spec loader and the one schema style for every YAML the project reads (recipes, driver specs, studies).

A schema is a ``@dataclass`` per section: typed fields, defaults, ``omegaconf.MISSING`` for a required key, a nested
dataclass (or a list of them) for a nested section, ``dict[str, Any]`` for a free-form section that its own builder
checks (an algorithm's arguments against its signature). OmegaConf structured configs merge the YAML over the
declaration: defaults, required keys, interpolations. OmegaConf converts where it can (``3`` into ``true`` for a
bool, ``5`` into ``'5'`` for a str), so :func:`validate` first walks the given values along the declaration: an
unknown key at any depth (dotted, list items included) and a value of the wrong type are refused as they are written.
A field that takes several types (OmegaConf has no unions) is ``Any`` declared with :func:`union`.

    @dataclass
    class Member:
        checkpoint: str = MISSING
        overrides: dict[str, Any] = field(default_factory=dict)

    spec = load_spec('spec.yaml', ['pool.0.checkpoint=a.pt'], Spec)   # a plain dict, defaults filled

Every problem is one :class:`~recipes.core.errors.ConfigError` line naming the dotted key and what was expected,
plus the file it came from (``(in spec.yaml)``) when there is one.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import yaml
from composer.core import Time
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException

from algorithms.common.time_strings import parse_time
from recipes.core.errors import ConfigError

__all__ = ['load_spec', 'validate', 'union', 'option_names', 'merge_yaml', 'resolve_merged', 'load_yaml',
           'check_type', 'check_keys', 'check_time']

NoneType = type(None)


def union(*types: Optional[type], default: Any = None) -> Any:
    """A field that takes any of ``types`` (``None`` for null), e.g. ``eval_interval: Any = union(str, int,
    default='1ep')``; the types are checked by :func:`validate`, as written."""
    allowed = tuple(NoneType if t is None else t for t in types)
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: typing.cast(Any, default).copy(), metadata={'types': allowed})
    return dataclasses.field(default=default, metadata={'types': allowed})


def option_names(schema: type) -> tuple[str, ...]:
    """The keys a section of ``schema`` takes, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(schema))


# --- reading: base chain, overrides, interpolation ---------------------------------------------------------------
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
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f'{path}: base: circular reference to {base_path}')
    return OmegaConf.merge(_load_with_base(base_path, (*seen, path.resolve())), cfg)  # type: ignore[return-value]


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


def load_spec(path: str | os.PathLike, overrides: list[str] | None = None, schema: Optional[type] = None,
              key: str = '-f') -> dict[str, Any]:
    """Read ``path`` (``base:`` chain relative to the file, cycles refused), merge dotted ``key=value``
    ``overrides``, validate against dataclass ``schema`` (unknown keys, types, required keys, defaults) and resolve
    interpolations; returns a plain dict. ``schema=None`` reads a free-form mapping. ``key`` names the path in a
    not-found error (``-f`` for a command's option)."""
    path, cfg = merge_yaml(path, overrides, key)
    if schema is None:
        return resolve_merged(path, cfg)
    return validate(cfg, schema, where=f' (in {path})')


# --- validation --------------------------------------------------------------------------------------------------
def type_names(types: tuple[type, ...]) -> str:
    return ' or '.join('null' if t is NoneType else t.__name__ for t in types)


def check_type(key: str, value: Any, types: tuple[type, ...]) -> None:
    """Raise a ConfigError naming ``key`` unless ``value`` is one of ``types`` (a bool is not an int, an int is a
    float)."""
    if isinstance(value, bool) and bool not in types:
        ok = False
    elif float in types and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    else:
        ok = isinstance(value, types)
    if not ok:
        raise ConfigError(f'{key}: expected {type_names(types)}, got {type(value).__name__} {value!r}')


def check_keys(key: str, section: Mapping, allowed: Any, what: str = '') -> None:
    """Raise a ConfigError for the first key of ``section`` that is not in ``allowed``."""
    for name in section:
        if name not in allowed:
            raise ConfigError(f"unknown key '{_join(key, name)}'{what}; allowed: {', '.join(sorted(allowed))}")


def check_time(key: str, value: Any, allow_zero: bool = True) -> Time:
    """Parse a Composer time string such as ``90ep``, ``70000ba``, ``286720000sp`` or ``0.3dur``; name ``key`` if bad
    (:func:`algorithms.common.time_strings.parse_time`, the project's one parser)."""
    try:
        return parse_time(value, key, allow_zero=allow_zero)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def validate(values: Mapping[str, Any], schema: type, key: str = '', where: str = '') -> dict[str, Any]:
    """``values`` (a mapping or DictConfig) checked against dataclass ``schema`` and completed with its defaults,
    interpolations resolved; returns a plain dict. ``key`` is the section's dotted place (``train_loader``), prefixed
    to every key an error names; ``where`` is appended to every message (the file, the dataset)."""
    raw = OmegaConf.to_container(values, resolve=False) if isinstance(values, DictConfig) else values
    try:
        check_type(key or 'the top level', raw, (dict,))
        base = OmegaConf.structured(schema)
        _walk(raw, schema, key, base)
        merged = OmegaConf.merge(base, values)
        return OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)  # type: ignore[return-value]
    except ConfigError as e:
        raise ConfigError(f'{e}{where}') from None
    except MissingMandatoryValue as e:
        raise ConfigError(f"missing required key '{_join(key, e.full_key)}'{where}") from None
    except InterpolationResolutionError as e:
        raise ConfigError(f'{_join(key, e.full_key)}: cannot resolve interpolation: {_first_line(e)}{where}') \
            from None
    except OmegaConfBaseException as e:
        raise ConfigError(f'{_join(key, e.full_key)}: {_first_line(e)}{where}') from None


def _walk(values: Mapping[str, Any], schema: type, key: str, base: Any) -> None:
    """Refuse unknown keys and values of the wrong type in ``values`` as written (before OmegaConf converts them);
    a free-form section given in ``values`` replaces its default in ``base`` rather than being merged into it."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    check_keys(key, values, fields)
    hints = typing.get_type_hints(schema)
    for name, value in values.items():
        _check_value(_join(key, name), value, hints[name], fields[name].metadata.get('types'))
        tp = _strip_optional(hints[name])
        if base is not None and _origin(tp) is dict and isinstance(value, Mapping):
            base[name] = {}
        elif base is not None and dataclasses.is_dataclass(tp) and isinstance(value, Mapping) \
                and not OmegaConf.is_missing(base, name) and isinstance(base[name], DictConfig):
            _walk(value, tp, _join(key, name), base[name])


def _check_value(key: str, value: Any, tp: Any, union_types: Optional[tuple[type, ...]] = None) -> None:
    if isinstance(value, str) and '${' in value:
        return  # an interpolation: its resolved value is checked by OmegaConf
    if union_types:
        check_type(key, value, union_types)
        return
    if tp is Any:
        return
    nullable = _is_optional(tp)
    if nullable:
        if value is None:
            return
        tp = _strip_optional(tp)
    if dataclasses.is_dataclass(tp):
        check_type(key, value, (dict, NoneType) if nullable else (dict,))
        _walk(value, tp, key, None)
    elif _origin(tp) is list:
        check_type(key, value, (list, NoneType) if nullable else (list,))
        item = (typing.get_args(tp) or (Any,))[0]
        for i, v in enumerate(value):
            _check_value(f'{key}[{i}]', v, item)
    elif _origin(tp) is dict:
        check_type(key, value, (dict, NoneType) if nullable else (dict,))
        item = (typing.get_args(tp) or (Any, Any))[1]
        for k, v in value.items():
            _check_value(_join(key, str(k)), v, item)
    elif isinstance(tp, type):
        check_type(key, value, (tp, NoneType) if nullable else (tp,))


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp) or (tp if tp in (list, dict) else None)


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Union and NoneType in typing.get_args(tp)


def _strip_optional(tp: Any) -> Any:
    if _is_optional(tp):
        rest = [a for a in typing.get_args(tp) if a is not NoneType]
        return rest[0] if len(rest) == 1 else Any
    return tp


def _join(prefix: str, name: Any) -> str:
    name = str(name or '')
    if not prefix:
        return name
    if not name:
        return prefix
    return f'{prefix}{name}' if name.startswith('[') else f'{prefix}.{name}'


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__

