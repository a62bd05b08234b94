"""The automated gradual pruning (AGP) schedule of Zhu & Gupta, "To prune, or not to prune" (2017).

``s_t = s_f + (s_0 - s_f) * (1 - (t - t0) / (n * dt))^3`` for ``t0 <= t <= t0 + n * dt``, evaluated at the pruning
steps ``t = t0, t0 + dt, ...`` and **held at** ``s_f`` **afterwards** (one public implementation returns 0 after the
end; this one clamps, as the paper intends). Before ``t0`` nothing is pruned. The seed's chapter III: start at 10%,
prune every 5 epochs, reach the target by the half-way point of training.
"""

from __future__ import annotations

import math

__all__ = ['agp_sparsity']


def agp_sparsity(t: float, final: float, initial: float = 0.0, start: float = 0.0, end: float = 1.0,
                 interval: float = 0.0) -> float:
    """The AGP target sparsity at time ``t`` (any unit: epochs, steps, fractions of training).

    Args:
        t: the current time.
        final: ``s_f``, the sparsity reached at ``end`` and held after it, in ``[0, 1)``.
        initial: ``s_0``, the sparsity at ``start`` (``0 <= initial <= final``).
        start, end: ``t0`` and ``t0 + n * dt``.
        interval: ``dt``, the time between pruning steps; ``t`` is rounded down to the last pruning step. 0 means
            continuous (prune at every call).
    """
    if not 0.0 <= initial <= final < 1.0:
        raise ValueError(f'expected 0 <= initial ({initial}) <= final ({final}) < 1')
    if not end > start:
        raise ValueError(f'end ({end}) must be after start ({start})')
    if interval < 0:
        raise ValueError(f'interval must be >= 0, got {interval}')
    if t < start:
        return 0.0
    if t >= end:
        return final
    if interval > 0:
        t = start + math.floor((t - start) / interval + 1e-9) * interval
    progress = (t - start) / (end - start)
    return final + (initial - final) * (1.0 - progress) ** 3
