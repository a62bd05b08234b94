"""The algorithms a recipe can name: Composer's own plus this project's, built from YAML arguments.

Algorithms that name teachers get them from the run's :class:`~recipes.teachers.TeacherRegistry` (built with the
student's model builders, loaded with ``weights_only=True``, shared between algorithms that name the same ones), so
adding a distillation method here is one factory and one table entry.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Union

from composer.core import Time

from algorithms.distillation import KnowledgeDistillation
from recipes.registry import ALGORITHMS
from recipes.teachers import TeacherRegistry

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
    :func:`recipes.teachers.build_teachers`); ``score`` (higher is better) is needed by ``pool_mode: greedy_topk``;
    ``score_metric`` (e.g. ``eval/MulticlassAccuracy``) takes each teacher's score from the last evaluation its
    checkpoint recorded instead. The other arguments are those of :class:`KnowledgeDistillation`.
    """
    built = registry.teachers(f'{KD_KEY}.teachers', teachers, score_metric)
    pool = registry.pool(built, mode=pool_mode, k=k, seed=seed)
    return KnowledgeDistillation(pool, kd_loss=kd_loss, kd_loss_weight=kd_loss_weight, temperature=temperature,
                                 start=start, end=end)


#: Project algorithms whose factories take the run's teacher registry (keyword ``registry``).
TEACHER_FACTORIES: dict[str, Callable[..., Any]] = {
    'knowledge_distillation': knowledge_distillation,
}


def algorithm_table(registry: TeacherRegistry) -> dict[str, Callable[..., Any]]:
    """Name -> constructor for the ``algorithms`` section of a run whose teachers come from ``registry``."""
    return {**ALGORITHMS, **{name: functools.partial(fn, registry=registry) for name, fn in TEACHER_FACTORIES.items()}}
