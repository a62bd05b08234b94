"""The algorithms a recipe can name: Composer's own plus this project's, built from YAML arguments.

A distillation factory is derived, not written: its YAML arguments are the teacher arguments of
:func:`teacher_pool` (one declaration for every method) plus the algorithm class's own arguments, read off the class's
signature (following ``**kwargs`` to its parent), less those a YAML never gives (:data:`HIDDEN`) and those the
factory reads off the models (a :class:`DistillationMethod`'s ``prepare``). Teachers come from the run's
:class:`~recipes.core.teachers.TeacherRegistry` (built with the student's model builders, loaded with
``weights_only=True``, shared between algorithms that name the same ones). Adding a distillation method is one
entry in :data:`DISTILLATION_METHODS`; the registry checks YAML arguments against the derived ``__signature__``.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from algorithms.distillation import CachedTeacherPool, KnowledgeDistillation, TeacherPool
from algorithms.feature_distillation import CRD, FSP, PKT, AttentionTransfer, FitNets, SimilarityPreserving
from algorithms.pruning import FixedMaskTraining, MagnitudePruning, RandomSparseInit, StructuredPruning
from recipes.core.cache_replay import build_cached_pool, check_cache_fits, uses_cache
from recipes.core.checkpoint_safety import check_checkpoint
from recipes.core.errors import ConfigError
from recipes.core.registry import ALGORITHMS, _runtime_types
from recipes.core.teachers import TeacherRegistry, Teachers

#: Arguments of a distillation class that no YAML gives: the teachers (built by :func:`teacher_pool`), the loss key,
#: the teachers' scores (given in the teacher specs), CRD's per-sample labels and a feature term's loss function.
HIDDEN = ('teachers', 'key', 'scores', 'labels', 'loss', 'loss_fn')


def teacher_pool(key: str, registry: TeacherRegistry, teachers: list, pool_mode: str = 'all',
                 k: Optional[int] = None, seed: int = 0, score_metric: Optional[str] = None
                 ) -> tuple[Teachers, TeacherPool]:
    """The teacher arguments every distillation factory takes, and the teachers and pool they make.

    ``teachers`` is a list whose items are a checkpoint path or ``{checkpoint, model, score}`` (see
    :func:`recipes.core.teachers.build_teachers`); ``pool_mode``, ``k`` and ``seed`` are the
    :class:`~algorithms.distillation.TeacherPool`'s rule; ``score`` (higher is better) is needed by
    ``pool_mode: greedy_topk``, and ``score_metric`` (e.g. ``eval/MulticlassAccuracy``) takes each teacher's score
    from the last evaluation its checkpoint recorded instead. Items ``{cache: DIR, ...}`` read a teacher cache
    instead (:func:`recipes.core.cache_replay.build_cached_pool`).
    """
    if uses_cache(teachers):
        if score_metric is not None:
            raise ConfigError(f'{key}.score_metric: a cache has no evaluation record; give each cache a score')
        return build_cached_pool(f'{key}.teachers', registry, teachers, pool_mode=pool_mode, k=k, seed=seed)
    built = registry.teachers(f'{key}.teachers', teachers, score_metric)
    return built, registry.pool(built, mode=pool_mode, k=k, seed=seed)


TEACHER_ARGUMENTS = tuple(inspect.signature(teacher_pool).parameters)[2:]  # teachers, pool_mode, k, seed, score_metric


def _yaml_annotation(annotation: Any) -> Any:
    """What a YAML can give for ``annotation``: a ``Sequence`` is a list, a ``Union``'s members that no YAML value
    can be (a module, a loss function) are dropped; ``Any`` where nothing checkable is left."""
    if typing.get_origin(annotation) in (collections.abc.Sequence, typing.Sequence):
        return list
    if typing.get_origin(annotation) in (Union, types.UnionType):
        kept = [a for a in map(_yaml_annotation, typing.get_args(annotation)) if _runtime_types(a) is not None]
        return Union[tuple(kept)] if kept else Any
    return annotation if _runtime_types(annotation) is not None else Any


def class_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The arguments of ``cls(...)`` with their resolved annotations, following ``**kwargs`` to the parent classes'
    ``__init__`` (as :class:`~algorithms.feature_distillation.AttentionTransfer` passes them on)."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # unresolvable forward references: names only
            hints = {}
        forwards = False
        for p in list(inspect.signature(init).parameters.values())[1:]:  # without self
            forwards = forwards or p.kind == p.VAR_KEYWORD
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in params:
                params[p.name] = p.replace(annotation=hints.get(p.name, p.annotation))
        if not forwards:
            break
    return params


@dataclass(frozen=True)
class DistillationMethod:
    """A distillation class and what its factory adds: ``prepare(key, registry, teachers, kwargs)`` returns the
    class's keyword arguments with ``computed`` ones filled in (read off the models); ``optional`` names class
    arguments a YAML may leave out because ``prepare`` fills them (default ``None``)."""

    cls: type
    prepare: Optional[Callable[[str, TeacherRegistry, Teachers, dict[str, Any]], dict[str, Any]]] = None
    computed: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    doc: str = ''

    def own_parameters(self) -> list[inspect.Parameter]:
        """The class's own YAML arguments: its signature less the hidden, teacher and computed ones."""
        out = []
        skip = set(HIDDEN) | set(TEACHER_ARGUMENTS) | set(self.computed)
        for name, p in class_parameters(self.cls).items():
            if name in skip:
                continue
            annotation = _yaml_annotation(p.annotation)
            if name in self.optional:
                p, annotation = p.replace(default=None), Optional[annotation]
            out.append(p.replace(annotation=annotation))
        return out

    def signature(self) -> inspect.Signature:
        """``(teachers, <the class's own arguments>, *, <the other teacher arguments>, registry)``."""
        hints = typing.get_type_hints(teacher_pool)
        teacher = [p.replace(annotation=hints[p.name]) for p in inspect.signature(teacher_pool).parameters.values()][2:]
        own = sorted(self.own_parameters(), key=lambda p: p.kind)  # positional ones first, as Python requires
        tail = [p.replace(kind=p.KEYWORD_ONLY) for p in teacher[1:]]
        registry = inspect.Parameter('registry', inspect.Parameter.KEYWORD_ONLY, annotation=TeacherRegistry)
        return inspect.Signature([teacher[0], *own, *tail, registry])

    def factory(self, name: str) -> Callable[..., Any]:
        """The YAML factory of ``algorithms.<name>``, with the derived ``__signature__`` the registry checks."""
        signature, key = self.signature(), f'algorithms.{name}'

        def factory(*args: Any, **kwargs: Any) -> Any:
            values = signature.bind(*args, **kwargs)
            values.apply_defaults()
            kw = dict(values.arguments)
            registry = kw.pop('registry')
            built, pool = teacher_pool(key, registry, **{n: kw.pop(n) for n in TEACHER_ARGUMENTS})
            if isinstance(pool, CachedTeacherPool):
                if self.cls is not KnowledgeDistillation:
                    raise ConfigError(f'{key}.teachers: a teacher cache holds logits only; {name} needs the teachers '
                                      'themselves (only knowledge_distillation reads a cache)')
                check_cache_fits(key, registry, pool, kw['kd_loss'], kw['temperature'], kw['start'], kw['end'])
            if self.prepare is not None:
                kw = self.prepare(key, registry, built, kw)
            try:
                return self.cls(pool, **kw)
            except ValueError as e:
                raise ConfigError(f'{key}: {e}') from None

        factory.__name__ = factory.__qualname__ = name
        factory.__signature__ = signature
        factory.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        factory.__doc__ = (f':class:`{self.cls.__name__}` from YAML arguments: the teacher arguments of '
                           f':func:`teacher_pool` and the class\'s own. {self.doc}').strip()
        return factory


def _fitnets(key: str, registry: TeacherRegistry, built: Teachers, kw: dict[str, Any]) -> dict[str, Any]:
    s_shape = registry.feature_shape(f'{key}.student_feature', registry.student, kw['student_feature'])
    t_shape = registry.feature_shape(f'{key}.teacher_feature', built.models[0], kw['teacher_feature'])
    if len(s_shape) != len(t_shape):
        raise ConfigError(f"{key}: student feature {kw['student_feature']!r} {s_shape} and teacher feature "
                          f"{kw['teacher_feature']!r} {t_shape} are not both conv maps or both vectors")
    return {**kw, 'student_channels': s_shape[0], 'teacher_channels': t_shape[0], 'conv': len(s_shape) == 3}


def _crd(key: str, registry: TeacherRegistry, built: Teachers, kw: dict[str, Any]) -> dict[str, Any]:
    kw = {**kw, 'teacher_feature': kw['teacher_feature'] or kw['student_feature']}
    s_shape = registry.feature_shape(f'{key}.student_feature', registry.student, kw['student_feature'])
    t_shape = registry.feature_shape(f'{key}.teacher_feature', built.models[0], kw['teacher_feature'])
    if kw['num_data'] is None:
        kw['num_data'] = getattr(registry, 'num_train', None)
        if kw['num_data'] is None:
            raise ConfigError(f'{key}.num_data: the size of the training set is unknown here; give num_data')
    return {**kw, 'student_dim': math.prod(s_shape), 'teacher_dim': math.prod(t_shape)}


def _names(value: Any) -> list:
    return [value] if isinstance(value, str) else list(value)


def _fsp(key: str, registry: TeacherRegistry, built: Teachers, kw: dict[str, Any]) -> dict[str, Any]:
    student = _names(kw['student_features'])
    teacher = _names(kw['teacher_features']) if kw['teacher_features'] is not None else student
    if len(student) != len(teacher) or len(student) < 2:
        raise ConfigError(f'{key}: give two or more student_features and as many teacher_features')
    for s_name, t_name in zip(student, teacher):
        s_shape = registry.feature_shape(f'{key}.student_features', registry.student, s_name)
        t_shape = registry.feature_shape(f'{key}.teacher_features', built.models[0], t_name)
        if len(s_shape) != 3 or len(t_shape) != 3 or s_shape[0] != t_shape[0]:
            raise ConfigError(f'{key}: FSP needs conv features with equal channel counts; student {s_name!r} is '
                              f'{s_shape}, teacher {t_name!r} is {t_shape}')
    return {**kw, 'student_features': student, 'teacher_features': teacher}


_FEATURES = ('``student_features`` (and ``teacher_features``, default the same names) are module paths paired in '
             'order; the weight is RepDistiller\'s.')

#: The distillation methods a YAML can name: one entry each.
DISTILLATION_METHODS: dict[str, DistillationMethod] = {
    'knowledge_distillation': DistillationMethod(KnowledgeDistillation),
    'fitnets': DistillationMethod(FitNets, _fitnets, computed=('student_channels', 'teacher_channels', 'conv'),
                                  doc="The regressor's shape is read off one forward pass of each model."),
    'attention_transfer': DistillationMethod(AttentionTransfer, doc=_FEATURES),
    'similarity_preserving': DistillationMethod(SimilarityPreserving, doc=_FEATURES),
    'pkt': DistillationMethod(PKT, doc=_FEATURES),
    'crd': DistillationMethod(CRD, _crd, computed=('student_dim', 'teacher_dim'), optional=('num_data',),
                              doc="RepDistiller's defaults; the embeddings' input sizes are read off one forward pass "
                                  'of each model; ``num_data`` (the memory banks\' rows) defaults to the training '
                                  "set's size, as the run's registry knows it. The train dataset must yield sample "
                                  'indices (``indices: true``).'),
    'fsp': DistillationMethod(FSP, _fsp, doc='An initialisation stage that trains on the FSP loss alone until '
                                             '``end`` (RepDistiller: 30 epochs); the features\' channel counts are '
                                             'checked on one forward pass of each model.'),
}


def post_pruning_reinit(checkpoint: str, reinit: bool = True) -> FixedMaskTraining:
    """Train with the masks of a pruned model's ``checkpoint`` enforced: from the student's fresh initialisation
    (``reinit: true``, post-pruning re-initialisation) or from the checkpoint's weights (``reinit: false``)."""
    check_checkpoint('algorithms.post_pruning_reinit.checkpoint', checkpoint)
    return FixedMaskTraining.from_checkpoint(checkpoint, reinit=reinit)


#: The project's algorithms that need no teachers, by the name a YAML uses.
PROJECT_ALGORITHMS: dict[str, Callable[..., Any]] = {
    'magnitude_pruning': MagnitudePruning,
    'structured_pruning': StructuredPruning,
    'random_sparse_init': RandomSparseInit,
    'post_pruning_reinit': post_pruning_reinit,
}

#: Project algorithms whose factories take the run's teacher registry (keyword ``registry``).
TEACHER_FACTORIES: dict[str, Callable[..., Any]] = {name: m.factory(name) for name, m in DISTILLATION_METHODS.items()}


def algorithm_table(registry: TeacherRegistry) -> dict[str, Callable[..., Any]]:
    """Name -> constructor for the ``algorithms`` section of a run whose teachers come from ``registry``."""
    return {**ALGORITHMS, **PROJECT_ALGORITHMS,
            **{name: functools.partial(fn, registry=registry) for name, fn in TEACHER_FACTORIES.items()}}
