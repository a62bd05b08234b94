"""Name -> constructor tables for what a recipe names: optimizers, schedulers, algorithms, callbacks, loggers.

Each entry's keyword arguments are checked against its signature (unknown names, missing required ones, simple
types and Composer time strings) so that a typo fails before training, naming the YAML key.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Any, Callable

import torch
from composer import algorithms as ca
from composer import callbacks as cc
from composer import loggers as cl
from composer import optim as co
from composer.core import Time

from algorithms.analysis import SimilarityMonitor
from algorithms.label_smoothing import LabelSmoothing
from algorithms.profiling import EnergyMonitor

from recipes.core.config import check_keys, check_time, check_type
from recipes.core.errors import ConfigError

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    'decoupled_sgdw': co.DecoupledSGDW,
    'decoupled_adamw': co.DecoupledAdamW,
    'sgd': torch.optim.SGD,
    'adamw': torch.optim.AdamW,
}
SCHEDULERS: dict[str, Callable[..., Any]] = {
    'constant': co.ConstantScheduler,
    'cosine': co.CosineAnnealingScheduler,
    'cosine_with_warmup': co.CosineAnnealingWithWarmupScheduler,
    'linear_with_warmup': co.LinearWithWarmupScheduler,
    'multistep': co.MultiStepScheduler,
    'multistep_with_warmup': co.MultiStepWithWarmupScheduler,
}
# Recipe-level factories (e.g. knowledge distillation, which needs teachers built from model configs) are added
# by ``recipes.core.algorithm_factories`` so that this table stays a plain name -> constructor map.
ALGORITHMS: dict[str, Callable[..., Any]] = {
    'label_smoothing': LabelSmoothing,
    'channels_last': ca.ChannelsLast,
    'blurpool': ca.BlurPool,
    'progressive_resizing': ca.ProgressiveResizing,
    'ema': ca.EMA,
    'gradient_clipping': ca.GradientClipping,
    'mixup': ca.MixUp,
    'cutmix': ca.CutMix,
}
CALLBACKS: dict[str, Callable[..., Any]] = {
    'speed_monitor': cc.SpeedMonitor,
    'lr_monitor': cc.LRMonitor,
    'memory_monitor': cc.MemoryMonitor,
    'optimizer_monitor': cc.OptimizerMonitor,
    'runtime_estimator': cc.RuntimeEstimator,
    'system_metrics_monitor': cc.SystemMetricsMonitor,
    'similarity_monitor': SimilarityMonitor,  # per-layer SVCCA/CKA to a reference checkpoint, every epoch
    'energy_monitor': EnergyMonitor,  # GPU (NVML) / CPU package (RAPL) energy and CPU utilisation at 1 Hz
}
LOGGERS: dict[str, Callable[..., Any]] = {
    'file': cl.FileLogger,
    'tensorboard': cl.TensorboardLogger,
    'wandb': cl.WandBLogger,
    'mlflow': cl.MLFlowLogger,
}

_SIMPLE = (int, float, str, bool, list, dict, type(None))


def _runtime_types(annotation: Any) -> tuple[tuple[type, ...], bool] | None:
    """The runtime types an annotation allows and whether a Composer time string is allowed; None if not checkable."""
    if annotation in _SIMPLE:
        return (annotation,), False
    if annotation is Time:
        return (str, int), True
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, typing.Sequence):
        return (list,), False
    if origin in (dict, typing.Mapping):
        return (dict,), False
    if origin in (typing.Union, types.UnionType):
        allowed: list[type] = []
        is_time = False
        for arg in typing.get_args(annotation):
            sub = _runtime_types(arg)
            if sub is None:
                return None
            allowed.extend(sub[0])
            is_time = is_time or sub[1]
        return tuple(dict.fromkeys(allowed)), is_time
    return None


def check_kwargs(key: str, fn: Callable[..., Any], kwargs: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    """Check ``kwargs`` against ``fn``'s signature: names, required arguments, simple types and time strings."""
    sig = inspect.signature(fn)
    target = fn.func if isinstance(fn, functools.partial) else fn
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # unresolvable forward references: check names only
        hints = {}
    bound = tuple(fn.keywords) if isinstance(fn, functools.partial) else ()  # set by the recipe, not the YAML
    params = {
        n: p for n, p in sig.parameters.items()
        if n not in skip and n not in bound and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        check_keys(key, kwargs, params)
    for name, p in params.items():
        if p.default is p.empty and name not in kwargs:
            raise ConfigError(f"missing required key '{key}.{name}'")
    for name, value in kwargs.items():
        checkable = _runtime_types(hints[name]) if name in hints else None
        if checkable is None:
            continue
        allowed, is_time = checkable
        check_type(f'{key}.{name}', value, allowed)
        if is_time and isinstance(value, str):
            check_time(f'{key}.{name}', value)
        elif is_time and isinstance(value, list):
            for i, v in enumerate(value):
                check_time(f'{key}.{name}[{i}]', v)


def lookup(key: str, table: dict[str, Callable[..., Any]], name: Any) -> Callable[..., Any]:
    """The constructor registered under ``name``; a ConfigError naming ``key`` and the allowed names otherwise."""
    if not isinstance(name, str) or name not in table:
        raise ConfigError(f"{key}: unknown name {name!r}; expected one of {', '.join(sorted(table))}")
    return table[name]


def build_named(key: str, table: dict[str, Callable[..., Any]], section: dict[str, Any], *args: Any) -> Any:
    """Build ``{name: ..., **kwargs}`` (an optimizer, a scheduler) after checking the kwargs."""
    kwargs = dict(section)
    fn = lookup(f'{key}.name', table, kwargs.pop('name', None))
    check_kwargs(key, fn, kwargs, skip=('params',) if args else ())
    return construct(key, fn, *args, **kwargs)


def check_named(key: str, table: dict[str, Callable[..., Any]], section: dict[str, Any],
                takes_params: bool = False) -> None:
    """Check ``{name: ..., **kwargs}`` (an optimizer, a scheduler) as :func:`build_named` does, without building."""
    kwargs = dict(section)
    check_kwargs(key, lookup(f'{key}.name', table, kwargs.pop('name', None)), kwargs,
                 skip=('params',) if takes_params else ())


def check_by_name(key: str, table: dict[str, Callable[..., Any]], section: dict[str, Any]) -> None:
    """Check ``{name: kwargs-or-null, ...}`` (algorithms, callbacks, loggers) as :func:`build_by_name` does, without
    building."""
    for name, kwargs in section.items():
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ConfigError(f'{key}.{name}: expected a mapping of arguments or null, got {kwargs!r}')
        check_kwargs(f'{key}.{name}', lookup(key, table, name), kwargs or {})


def build_by_name(key: str, table: dict[str, Callable[..., Any]], section: dict[str, Any]) -> list[Any]:
    """Build ``{name: kwargs-or-null, ...}`` (algorithms, callbacks, loggers) after checking every entry first."""
    checked = []
    for name, kwargs in section.items():
        fn = lookup(key, table, name)
        kwargs = kwargs or {}
        if not isinstance(kwargs, dict):
            raise ConfigError(f'{key}.{name}: expected a mapping of arguments or null, got {kwargs!r}')
        check_kwargs(f'{key}.{name}', fn, kwargs)
        checked.append((f'{key}.{name}', fn, kwargs))
    return [construct(k, fn, **kw) for k, fn, kw in checked]


def construct(key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; turn a constructor's own TypeError/ValueError into a ConfigError naming ``key``."""
    try:
        return fn(*args, **kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f'{key}: {e}') from None
    except KeyError as e:  # e.g. a feature name that matches no module
        raise ConfigError(f'{key}: {e.args[0] if e.args else e}') from None
