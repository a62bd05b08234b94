"""What a distillation run is, read from its config: the ``describe`` of the distillation studies' reports
(:mod:`benchmarks.kd.report`, :mod:`benchmarks.bert.report`) for :func:`benchmarks.core.analysis.analyse`.

``series``: ``plain`` (no teacher), ``KD-KL`` / ``KD-MSE`` (one teacher), ``pool <mode>`` (several), prefixed
``cached`` for a student that read teacher caches (``teachers: [{cache: DIR}]``: one cache of an averaged pool is one
teacher to read); the facts: ``kd_loss``, ``kd_fraction`` (the share of training with distillation, from its
``start``/``end`` window), ``pool_mode`` (``single`` for one teacher or cache), ``k``, ``caches`` (the cache
folders read; empty online), ``temperature`` and ``kd_loss_weight`` (KnowledgeDistillation's defaults, 4 and 1, when
the config leaves them out). Per step, :func:`teacher_forwards` (0 for a cached student: it runs no teacher) and
:func:`cache_reads`.
"""
from __future__ import annotations

from typing import Any

from benchmarks.core.analysis import RunResult
from benchmarks.core.records import RunFiles, duration_fraction
from benchmarks.core.teacher_cost import cache_folders

__all__ = ['kd_facts', 'teacher_forwards', 'cache_reads']


def kd_facts(run: RunFiles, teachers: list[str]) -> dict[str, Any]:
    """The series and distillation settings of ``run`` (``teachers``: its distinct teacher runs)."""
    kd = run.kd
    if kd is None:
        return {'series': 'plain', 'kd_fraction': 0.0}
    loss = str(kd.get('kd_loss', 'kl'))
    start = duration_fraction(kd.get('start', '0dur'), run.max_duration)
    end = duration_fraction(kd.get('end', '1dur'), run.max_duration)
    fraction = (end if end is not None else 1.0) - (start or 0.0)
    caches = cache_folders(run)
    mode = 'single' if len(caches or teachers) == 1 else str(kd.get('pool_mode', 'all'))
    series = f'KD-{loss.upper()}' if mode == 'single' else f'pool {mode}'
    return {'series': f'cached {series}' if caches else series, 'kd_loss': loss,
            'kd_fraction': max(0.0, min(1.0, fraction)), 'pool_mode': mode, 'k': kd.get('k'), 'caches': caches,
            'temperature': float(kd.get('temperature', 4.0)), 'kd_loss_weight': float(kd.get('kd_loss_weight', 1.0))}


def _per_step(result: RunResult, members: int) -> int:
    """Members of the pool (teachers or caches) that serve one step under the run's selection rule."""
    mode = result.facts.get('pool_mode')
    if mode is None:
        return 0
    if mode == 'all':
        return members
    if mode in ('random_k', 'greedy_topk'):
        return result.facts.get('k') or members
    return 1


def teacher_forwards(result: RunResult) -> int:
    """Teacher forward passes per training step while ``result`` distils (0 without a teacher, and 0 for a
    student of teacher caches, which reads their outputs instead: :func:`cache_reads`)."""
    return 0 if result.facts.get('caches') else _per_step(result, len(result.teachers))


def cache_reads(result: RunResult) -> int:
    """Cache reads per training step while ``result`` distils (0 for an online student)."""
    caches = result.facts.get('caches') or []
    return _per_step(result, len(caches)) if caches else 0
