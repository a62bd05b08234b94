"""Teachers for any algorithm that names them: ``build_teachers(specs, default_model)``.

A YAML names teachers as checkpoint paths or as ``{checkpoint, model, score}``; ``model`` defaults to the student's
``model`` section. Each teacher is built with the same model builders as students and its weights are loaded with
``weights_only=True`` before training starts. One :class:`TeacherRegistry` per run builds each (checkpoint, model)
pair once and hands every algorithm that names the same teachers with the same selection rule the same
:class:`~algorithms.distillation.TeacherPool`, so their teacher forwards are shared; it also lists the run's
teacher checkpoints for the run record (and so for the benchmarks' teacher cost).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

from algorithms.common.feature_taps import feature_shape

from torch import nn

from algorithms.callbacks import checkpoint_record
from algorithms.distillation import TeacherPool, load_teacher_weights
from recipes.models import registry as models
from recipes.core.checkpoint_safety import checkpoint_error
from recipes.core.errors import ConfigError
from recipes.core.schema import validate


@dataclass
class TeacherSpec:
    """One teacher of a YAML's list, written as a mapping (a plain path is ``{checkpoint: path}``).

    ``cache: DIR`` reads the teacher's outputs from a cache (``recipes/teacher_cache.py``) instead of running it:
    ``checkpoint`` is then optional (given, its content hash must be the cache's), and ``verify_every: N`` recomputes
    the teachers the cache records on every N-th step, ``wait_s`` reads a cache still being produced (see
    :mod:`recipes.core.cache_replay`)."""

    checkpoint: Optional[str] = None
    model: Optional[dict[str, Any]] = None  # None: the student's model section
    score: Optional[float] = None  # higher is better; what a greedy pool ranks by
    cache: Optional[str] = None
    verify_every: Optional[int] = None
    wait_s: Optional[float] = None  # read beside a producer: wait up to this long for each missing planned epoch


@dataclass
class Teachers:
    """Built teachers: the loaded models, their checkpoint paths and their scores (None when not given)."""

    models: list[nn.Module]
    checkpoints: list[str]
    scores: Optional[list[float]]


@dataclass
class TeacherRegistry:
    """What one run's algorithms share: teachers built once per (checkpoint, model), pools, the checkpoint list;
    and what they may need to know of the run: the student and the shape of one input (``None`` if unknown)."""

    default_model: dict[str, Any]
    student: Optional[nn.Module] = None
    input_shape: Optional[tuple[int, ...]] = None
    built: dict[str, nn.Module] = field(default_factory=dict)
    pools: dict[str, TeacherPool] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)
    train_size: Optional[Callable[[], int]] = None  # the training set's length, computed only when asked for
    run_config: Optional[dict[str, Any]] = None  # the run's resolved config (what a teacher cache is checked against)
    _num_train: Optional[int] = None

    @property
    def num_train(self) -> Optional[int]:
        """The number of training samples after ``subset`` and down-sampling (CRD's memory-bank rows), or None."""
        if self._num_train is None and self.train_size is not None:
            self._num_train = int(self.train_size())
        return self._num_train

    def teachers(self, key: str, specs: Any, score_metric: Optional[str] = None) -> Teachers:
        return build_teachers(specs, self.default_model, key=key, score_metric=score_metric, registry=self)

    def pool(self, teachers: Teachers, mode: str = 'all', k: Optional[int] = None, seed: int = 0) -> TeacherPool:
        """The pool of ``teachers`` with this rule: the same object for every algorithm that asks for the same."""
        ident = json.dumps([[id(m) for m in teachers.models], mode, k, seed, teachers.scores])
        if ident not in self.pools:
            self.pools[ident] = TeacherPool(teachers.models, mode=mode, k=k, scores=teachers.scores, seed=seed)
        return self.pools[ident]

    def feature_shape(self, key: str, model: Optional[nn.Module], name: str) -> tuple[int, ...]:
        """The output shape of ``model``'s module ``name`` for one input (ConfigError naming ``key`` if unknown)."""
        if model is None or self.input_shape is None:
            raise ConfigError(f'{key}: cannot infer the shape of feature {name!r}: the dataset does not state its '
                              'input shape')
        try:
            return feature_shape(model, name, self.input_shape)
        except KeyError as e:
            raise ConfigError(f'{key}: {e.args[0]}') from None


def _one(key: str, spec: Union[str, dict[str, Any]], default_model: dict[str, Any], score_metric: Optional[str],
         registry: Optional[TeacherRegistry]) -> tuple[nn.Module, str, Optional[float]]:
    spec = validate({'checkpoint': spec} if isinstance(spec, str) else spec, TeacherSpec, key)
    if any(spec[name] is not None for name in ('cache', 'verify_every', 'wait_s')):
        raise ConfigError(f'{key}: give every teacher of a pool as a cache or none (a pool reads caches or runs '
                          'teachers, not both)')
    path = spec['checkpoint']
    if path is None:
        raise ConfigError(f"missing required key '{key}.checkpoint' (or give cache: DIR, a teacher cache)")
    if not os.path.isfile(path):
        raise ConfigError(f'{key}.checkpoint: teacher checkpoint not found: {path}')
    model_cfg = spec['model'] or default_model
    ident = json.dumps([os.path.realpath(path), model_cfg], sort_keys=True)
    teacher = registry.built.get(ident) if registry is not None else None
    if teacher is None:
        teacher = models.build_model(**model_cfg)
        try:
            load_teacher_weights(teacher, path)
        except Exception as e:  # not a checkpoint, refused as unsafe, keys or shapes that do not fit: one line
            raise checkpoint_error(f'{key}.checkpoint', path, e) from None
        if registry is not None:
            registry.built[ident] = teacher
    score = spec['score']
    if score is None and score_metric is not None:
        metrics = checkpoint_record(path).get('metrics', {})
        if score_metric not in metrics:
            raise ConfigError(f"{key}: {path} has no metric {score_metric!r} (score_metric); it has {sorted(metrics)}")
        score = metrics[score_metric]
    return teacher, path, score


def build_teachers(specs: Sequence[Any], default_model: dict[str, Any], key: str = 'teachers',
                   score_metric: Optional[str] = None, registry: Optional[TeacherRegistry] = None) -> Teachers:
    """Build and load the teachers a YAML lists under ``key`` (every problem a ConfigError naming the key).

    ``specs`` items are a checkpoint path or ``{checkpoint, model, score}``; ``model`` defaults to
    ``default_model`` (the student's); ``score`` (higher is better) or ``score_metric`` (a metric of the teacher's
    last recorded evaluation, e.g. ``eval/MulticlassAccuracy``) gives the scores a greedy pool ranks by.
    """
    if not isinstance(specs, (list, tuple)) or not specs:
        raise ConfigError(f'{key}: expected at least one teacher')
    built = [_one(f'{key}[{i}]', spec, default_model, score_metric, registry) for i, spec in enumerate(specs)]
    scores = [s for _, _, s in built]
    if all(s is None for s in scores):
        scores = None
    elif any(s is None for s in scores):
        raise ConfigError(f'{key}: give a score to every teacher or to none')
    paths = [p for _, p, _ in built]
    if registry is not None:
        registry.checkpoints.extend(p for p in paths if p not in registry.checkpoints)
    return Teachers(models=[t for t, _, _ in built], checkpoints=paths, scores=scores)
