"""The algorithms a recipe can name: Composer's own plus this project's, built from YAML arguments.

Knowledge distillation needs teacher models, which a YAML describes as checkpoints (and, optionally, their
architecture; by default the student's). :func:`knowledge_distillation` builds them with the same model builders
as students and loads their weights with ``weights_only=True``, before training starts.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Optional, Union

from composer.core import Time

from algorithms.callbacks import checkpoint_record
from algorithms.distillation import KnowledgeDistillation, load_teacher_weights
from recipes import models
from recipes.config import check_keys, check_type
from recipes.errors import ConfigError
from recipes.registry import ALGORITHMS

KD_KEY = 'algorithms.knowledge_distillation'
TEACHER_KEYS = ('checkpoint', 'model', 'score')


def _build_teacher(key: str, spec: Union[str, dict[str, Any]], teacher_model: dict[str, Any],
                   score_metric: Optional[str]) -> tuple[Any, Any]:
    """One teacher from ``path`` or ``{checkpoint, model, score}``: (the loaded ComposerClassifier, its score)."""
    if isinstance(spec, str):
        spec = {'checkpoint': spec}
    check_type(key, spec, (dict,))
    check_keys(key, spec, TEACHER_KEYS)
    if 'checkpoint' not in spec:
        raise ConfigError(f"missing required key '{key}.checkpoint'")
    path = spec['checkpoint']
    check_type(f'{key}.checkpoint', path, (str,))
    if not os.path.isfile(path):
        raise ConfigError(f'{key}.checkpoint: teacher checkpoint not found: {path}')
    model_cfg = spec.get('model') or teacher_model
    check_type(f'{key}.model', model_cfg, (dict,))
    teacher = models.build_model(**model_cfg)
    try:
        load_teacher_weights(teacher, path)
    except ValueError as e:
        raise ConfigError(f'{key}.checkpoint: {e}') from None
    score = spec.get('score')
    if score is not None:
        check_type(f'{key}.score', score, (float,))
    elif score_metric is not None:
        metrics = checkpoint_record(path).get('metrics', {})
        if score_metric not in metrics:
            raise ConfigError(f"{KD_KEY}.score_metric: {path} has no metric {score_metric!r}; it has {sorted(metrics)}")
        score = metrics[score_metric]
    return teacher, score


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
    teacher_model: Optional[dict] = None,
) -> KnowledgeDistillation:
    """:class:`KnowledgeDistillation` from YAML arguments.

    ``teachers`` is a list whose items are a checkpoint path or ``{checkpoint, model, score}``; ``model`` defaults
    to ``teacher_model``, which defaults to the student's ``model`` section; ``score`` (higher is better) is needed
    by ``pool_mode: greedy_topk``; ``score_metric`` (e.g. ``eval/MulticlassAccuracy``) takes each teacher's score
    from the last evaluation its checkpoint recorded instead. The other arguments are those of
    :class:`KnowledgeDistillation`.
    """
    if not teachers:
        raise ConfigError(f'{KD_KEY}.teachers: expected at least one teacher')
    built = [_build_teacher(f'{KD_KEY}.teachers[{i}]', spec, teacher_model or {}, score_metric)
             for i, spec in enumerate(teachers)]
    scores = [s for _, s in built]
    if all(s is None for s in scores):
        scores = None
    elif any(s is None for s in scores):
        raise ConfigError(f'{KD_KEY}.teachers: give a score to every teacher or to none')
    return KnowledgeDistillation(
        [t for t, _ in built], kd_loss=kd_loss, kd_loss_weight=kd_loss_weight, temperature=temperature,
        start=start, end=end, pool_mode=pool_mode, k=k, scores=scores, seed=seed,
    )


def algorithm_table(cfg: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    """Name -> constructor for the ``algorithms`` section of ``cfg`` (teachers default to the student's model)."""
    return {**ALGORITHMS, 'knowledge_distillation': functools.partial(knowledge_distillation, teacher_model=cfg['model'])}
