"""Time-to-target, speedup and the Pareto front, from (training wall-clock, accuracy) points.

The rule between evaluations (stated in every report, see :data:`CROSSING_RULE`): a run's accuracy is known only at
its evaluations; between two consecutive evaluations ``(t0, a0)`` and ``(t1, a1)`` with ``a0 < target <= a1`` it is
taken to grow linearly in training wall-clock, so the run reaches the target at
``t0 + (target - a0) / (a1 - a0) * (t1 - t0)``. If the first evaluation already reaches the target, the crossing
time is that evaluation's time (nothing is known before it). A run whose evaluations never reach the target has no
crossing time ("not reached").

Speedups are ratios: over seeds they are summarised on the log scale (geometric mean and the exponentiated
t-interval of the logs, :func:`benchmarks.core.intervals.ratio_interval`), never by a linear mean +- t sd.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, TypeVar

CROSSING_RULE = (
    'A run reaches the target at its first evaluation whose accuracy is >= the target; the crossing time is '
    'interpolated linearly in accuracy vs training wall-clock between that evaluation and the one before it: '
    't = t0 + (target - a0) / (a1 - a0) * (t1 - t0). If the first evaluation already reaches the target, its '
    'time is used (nothing is known before it). A run that never reaches the target has no time-to-target '
    '("not reached"); its best accuracy is reported instead.'
)

T = TypeVar('T')


def crossing_time(points: Sequence[tuple[float, float]], target: float) -> Optional[float]:
    """The training wall-clock at which the accuracy curve ``points`` = ``[(t, acc), ...]`` (in evaluation order)
    first reaches ``target``, by :data:`CROSSING_RULE`; ``None`` if it never does."""
    previous: Optional[tuple[float, float]] = None
    for t, acc in points:
        if acc >= target:
            if previous is None:
                return float(t)
            t0, a0 = previous
            if acc == a0:  # cannot happen with a0 < target <= acc, kept for safety
                return float(t)
            return float(t0 + (target - a0) / (acc - a0) * (t - t0))
        previous = (t, acc)
    return None


def speedup(baseline_s: float, candidate_s: Optional[float], extra_s: float = 0.0) -> Optional[float]:
    """``baseline_s / (candidate_s + extra_s)``: how many times faster the candidate reaches the target (``extra_s``
    is added cost such as the teachers' training); ``None`` if the candidate never reaches it."""
    if candidate_s is None:
        return None
    total = candidate_s + extra_s
    if total <= 0:
        return None
    return baseline_s / total


def pareto_front(points: Sequence[tuple[float, float, T]]) -> list[tuple[float, float, T]]:
    """The points ``(time, accuracy, label)`` that no other point beats: none is at least as fast and at least as
    accurate while strictly better in one. Returned in increasing time (and so increasing accuracy): the best
    accuracy reachable within a given wall-clock is that of the last front point at or before it."""
    ordered = sorted(points, key=lambda p: (p[0], -p[1]))
    front: list[tuple[float, float, T]] = []
    for point in ordered:
        if not front or point[1] > front[-1][1]:
            front.append(point)
    return front


def best_within(front: Sequence[tuple[float, float, T]], budget_s: float) -> Optional[float]:
    """The best accuracy a Pareto ``front`` reaches within ``budget_s`` seconds (``None`` if none is that fast)."""
    best = None
    for t, acc, _ in front:
        if t <= budget_s:
            best = acc
    return best
