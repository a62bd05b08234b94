"""What a distillation run is, read from its config: the ``describe`` of the distillation studies' reports
(:mod:`benchmarks.kd.report`, :mod:`benchmarks.bert.report`) for :func:`benchmarks.core.analysis.analyse`.

``series``: ``plain`` (no teacher), ``KD-KL`` / ``KD-MSE`` (one teacher), ``pool <mode>`` (several); the facts:
``kd_loss``, ``kd_fraction`` (the share of training with distillation, from its ``start``/``end`` window),
``pool_mode`` (``single`` for one teacher) and ``k``.
"""
from __future__ import annotations

from typing import Any

from benchmarks.core.analysis import RunResult
from benchmarks.core.records import RunFiles, duration_fraction

__all__ = ['kd_facts', 'teacher_forwards']


def kd_facts(run: RunFiles, teachers: list[str]) -> dict[str, Any]:
    """The series and distillation settings of ``run`` (``teachers``: its distinct teacher runs)."""
    kd = run.kd
    if kd is None:
        return {'series': 'plain', 'kd_fraction': 0.0}
    loss = str(kd.get('kd_loss', 'kl'))
    start = duration_fraction(kd.get('start', '0dur'), run.max_duration)
    end = duration_fraction(kd.get('end', '1dur'), run.max_duration)
    fraction = (end if end is not None else 1.0) - (start or 0.0)
    mode = 'single' if len(teachers) == 1 else str(kd.get('pool_mode', 'all'))
    series = f'KD-{loss.upper()}' if mode == 'single' else f'pool {mode}'
    return {'series': series, 'kd_loss': loss, 'kd_fraction': max(0.0, min(1.0, fraction)), 'pool_mode': mode,
            'k': kd.get('k')}


def teacher_forwards(result: RunResult) -> int:
    """Teacher forward passes per training step while ``result`` distils (0 without a teacher)."""
    mode = result.facts.get('pool_mode')
    if mode is None:
        return 0
    if mode == 'all':
        return len(result.teachers)
    if mode in ('random_k', 'greedy_topk'):
        return result.facts.get('k') or len(result.teachers)
    return 1
