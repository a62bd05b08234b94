"""The algorithms a recipe can name: Composer's own plus this project's, built from YAML arguments.

Algorithms that name teachers get them from the run's :class:`~recipes.core.teachers.TeacherRegistry` (built with the
student's model builders, loaded with ``weights_only=True``, shared between algorithms that name the same ones), so
adding a distillation method here is one factory and one table entry.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Union

from composer.core import Time

from algorithms.distillation import KnowledgeDistillation
from algorithms.feature_distillation import CRD, FSP, PKT, AttentionTransfer, FitNets, SimilarityPreserving
from algorithms.pruning import FixedMaskTraining, MagnitudePruning, RandomSparseInit, StructuredPruning
from recipes.core.checkpoint_safety import check_checkpoint
from recipes.core.errors import ConfigError
from recipes.core.registry import ALGORITHMS
from recipes.core.teachers import TeacherRegistry

KD_KEY = 'algorithms.knowledge_distillation'


def knowledge_distillation(
    teachers: list,
    kd_loss: str = 'kl',
    kd_loss_weight: float = 1.0,
    temperature: float = 4.0,
    start: Union[str, Time] = '0dur',
    end: Union[str, Time] = '1dur',
    pool_mode: str = 'all',
    k: Optional[int] = None,
    seed: int = 0,
    score_metric: Optional[str] = None,
    *,
    registry: TeacherRegistry,
) -> KnowledgeDistillation:
    """:class:`KnowledgeDistillation` from YAML arguments.

    ``teachers`` is a list whose items are a checkpoint path or ``{checkpoint, model, score}`` (see
    :func:`recipes.core.teachers.build_teachers`); ``score`` (higher is better) is needed by ``pool_mode: greedy_topk``;
    ``score_metric`` (e.g. ``eval/MulticlassAccuracy``) takes each teacher's score from the last evaluation its
    checkpoint recorded instead. The other arguments are those of :class:`KnowledgeDistillation`.
    """
    built = registry.teachers(f'{KD_KEY}.teachers', teachers, score_metric)
    pool = registry.pool(built, mode=pool_mode, k=k, seed=seed)
    return KnowledgeDistillation(pool, kd_loss=kd_loss, kd_loss_weight=kd_loss_weight, temperature=temperature,
                                 start=start, end=end)


def fitnets(
    teachers: list,
    student_feature: str,
    teacher_feature: str,
    weight: float = 100.0,
    start: Union[str, Time] = '0dur',
    end: Union[str, Time] = '1dur',
    pool_mode: str = 'all',
    k: Optional[int] = None,
    seed: int = 0,
    *,
    registry: TeacherRegistry,
) -> FitNets:
    """:class:`FitNets` from YAML arguments; the regressor's shape is read off one forward pass of each model."""
    key = 'algorithms.fitnets'
    built = registry.teachers(f'{key}.teachers', teachers)
    s_shape = registry.feature_shape(f'{key}.student_feature', registry.student, student_feature)
    t_shape = registry.feature_shape(f'{key}.teacher_feature', built.models[0], teacher_feature)
    if len(s_shape) != len(t_shape):
        raise ConfigError(f'{key}: student feature {student_feature!r} {s_shape} and teacher feature '
                          f'{teacher_feature!r} {t_shape} are not both conv maps or both vectors')
    return FitNets(registry.pool(built, mode=pool_mode, k=k, seed=seed), student_feature, teacher_feature,
                   student_channels=s_shape[0], teacher_channels=t_shape[0], conv=len(s_shape) == 3, weight=weight,
                   start=start, end=end)


def crd(
    teachers: list,
    student_feature: str = 'avgpool',
    teacher_feature: Optional[str] = None,
    num_data: Optional[int] = None,
    weight: float = 0.8,
    feat_dim: int = 128,
    nce_k: int = 16384,
    nce_t: float = 0.07,
    nce_m: float = 0.5,
    sampler_seed: int = 0,
    start: Union[str, Time] = '0dur',
    end: Union[str, Time] = '1dur',
    pool_mode: str = 'all',
    k: Optional[int] = None,
    seed: int = 0,
    *,
    registry: TeacherRegistry,
) -> CRD:
    """:class:`CRD` from YAML arguments (RepDistiller's defaults); the embeddings' input sizes are read off one forward
    pass of each model; ``num_data`` (the memory banks' rows) defaults to the training set's size, as the run's
    registry knows it (``registry.num_train``). The train dataset must yield sample indices (``indices: true``)."""
    key = 'algorithms.crd'
    built = registry.teachers(f'{key}.teachers', teachers)
    teacher_feature = teacher_feature or student_feature
    s_shape = registry.feature_shape(f'{key}.student_feature', registry.student, student_feature)
    t_shape = registry.feature_shape(f'{key}.teacher_feature', built.models[0], teacher_feature)
    if num_data is None:
        num_data = getattr(registry, 'num_train', None)
        if num_data is None:
            raise ConfigError(f'{key}.num_data: the size of the training set is unknown here; give num_data')
    try:
        return CRD(registry.pool(built, mode=pool_mode, k=k, seed=seed), student_dim=math.prod(s_shape),
                   teacher_dim=math.prod(t_shape), num_data=num_data, student_feature=student_feature,
                   teacher_feature=teacher_feature, feat_dim=feat_dim, nce_k=nce_k, nce_t=nce_t, nce_m=nce_m,
                   weight=weight, sampler_seed=sampler_seed, start=start, end=end)
    except ValueError as e:
        raise ConfigError(f'{key}: {e}') from None


def fsp(
    teachers: list,
    student_features: list,
    end: Union[str, Time],
    teacher_features: Optional[list] = None,
    weight: float = 1.0,
    start: Union[str, Time] = '0dur',
    pool_mode: str = 'all',
    k: Optional[int] = None,
    seed: int = 0,
    *,
    registry: TeacherRegistry,
) -> FSP:
    """:class:`FSP` from YAML arguments: an initialisation stage that trains on the FSP loss alone until ``end``
    (RepDistiller: 30 epochs); the features' channel counts are checked on one forward pass of each model."""
    key = 'algorithms.fsp'
    built = registry.teachers(f'{key}.teachers', teachers)
    teacher_features = teacher_features if teacher_features is not None else student_features
    if len(student_features) != len(teacher_features) or len(student_features) < 2:
        raise ConfigError(f'{key}: give two or more student_features and as many teacher_features')
    for s_name, t_name in zip(student_features, teacher_features):
        s_shape = registry.feature_shape(f'{key}.student_features', registry.student, s_name)
        t_shape = registry.feature_shape(f'{key}.teacher_features', built.models[0], t_name)
        if len(s_shape) != 3 or len(t_shape) != 3 or s_shape[0] != t_shape[0]:
            raise ConfigError(f'{key}: FSP needs conv features with equal channel counts; student {s_name!r} is '
                              f'{s_shape}, teacher {t_name!r} is {t_shape}')
    return FSP(registry.pool(built, mode=pool_mode, k=k, seed=seed), student_features, teacher_features, end=end,
               weight=weight, start=start)


def _feature_factory(cls: type, name: str, default_weight: float) -> Callable[..., Any]:
    """A YAML factory for a :class:`~algorithms.feature_distillation.FeatureDistillation` subclass."""

    def factory(
        teachers: list,
        student_features: list,
        teacher_features: Optional[list] = None,
        weight: float = default_weight,
        start: Union[str, Time] = '0dur',
        end: Union[str, Time] = '1dur',
        pool_mode: str = 'all',
        k: Optional[int] = None,
        seed: int = 0,
        *,
        registry: TeacherRegistry,
    ) -> Any:
        built = registry.teachers(f'algorithms.{name}.teachers', teachers)
        return cls(registry.pool(built, mode=pool_mode, k=k, seed=seed), student_features, teacher_features,
                   weight=weight, start=start, end=end)

    factory.__name__ = name
    factory.__doc__ = (f':class:`{cls.__name__}` from YAML arguments: ``student_features`` (and ``teacher_features``, '
                       f'default the same names) are module paths paired in order; weight {default_weight} as '
                       'RepDistiller.')
    return factory


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
TEACHER_FACTORIES: dict[str, Callable[..., Any]] = {
    'knowledge_distillation': knowledge_distillation,
    'fitnets': fitnets,
    'attention_transfer': _feature_factory(AttentionTransfer, 'attention_transfer', 1000.0),
    'similarity_preserving': _feature_factory(SimilarityPreserving, 'similarity_preserving', 3000.0),
    'pkt': _feature_factory(PKT, 'pkt', 30000.0),
    'crd': crd,
    'fsp': fsp,
}


def algorithm_table(registry: TeacherRegistry) -> dict[str, Callable[..., Any]]:
    """Name -> constructor for the ``algorithms`` section of a run whose teachers come from ``registry``."""
    return {**ALGORITHMS, **PROJECT_ALGORITHMS,
            **{name: functools.partial(fn, registry=registry) for name, fn in TEACHER_FACTORIES.items()}}
