"""Means with 95% intervals over repeated runs (seeds), and verdicts decided by them.

The interval is Student's t-interval of the mean, ``mean +- t_{0.975, n-1} * sd / sqrt(n)`` (sample standard
deviation); with one run there is no interval (``lo = hi = None``). A claim "A > B" (or "x > threshold") is:

* **holds** when the whole interval of the difference lies on the claimed side,
* **does not hold** when it lies wholly on the other side,
* **within noise** when it contains zero (or, with one run, always: one run cannot separate signal from noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

__all__ = ['Interval', 'mean_interval', 'verdict', 't_quantile', 'RULE']

RULE = ('95% t-interval of the mean over seeds (mean +- t(0.975, n-1) * sd / sqrt(n)); a claim holds when the '
        "interval of its difference lies wholly on the claimed side, does not hold when wholly on the other, and is "
        'within noise when it straddles zero or when there is a single run')

# Two-sided 95% quantiles t(0.975, df) for df = 1..30; beyond 30, the normal 1.96 is within 4%.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile(df: int) -> float:
    """t(0.975, df): the multiplier of a two-sided 95% interval."""
    if df < 1:
        raise ValueError(f'df must be >= 1, got {df}')
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` runs with its 95% interval (``lo``/``hi`` None for a single run)."""

    mean: float
    lo: Optional[float]
    hi: Optional[float]
    n: int

    def fmt(self, digits: int = 2, scale: float = 1.0) -> str:
        """``'91.23 [90.80, 91.66]'`` (or ``'91.23 (1 run)'``)."""
        m = f'{self.mean * scale:.{digits}f}'
        if self.lo is None or self.hi is None:
            return f'{m} (1 run)'
        return f'{m} [{self.lo * scale:.{digits}f}, {self.hi * scale:.{digits}f}]'


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean of ``values`` and its 95% t-interval."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        raise ValueError('no values')
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, None, None, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def verdict(difference: Interval, claim_positive: bool = True) -> str:
    """``'holds'`` / ``'does not hold'`` / ``'within noise'`` for the claim that ``difference`` is positive
    (``claim_positive``) or negative, by its interval (see the module docstring)."""
    if difference.lo is None or difference.hi is None:
        return 'within noise'
    lo, hi = (difference.lo, difference.hi) if claim_positive else (-difference.hi, -difference.lo)
    if lo > 0:
        return 'holds'
    if hi < 0:
        return 'does not hold'
    return 'within noise'
