"""Means with 95% intervals over repeated runs (seeds), and verdicts decided by them.

The interval is Student's t-interval of the mean, ``mean +- t_{0.975, n-1} * sd / sqrt(n)`` (sample standard
deviation); with one run there is no interval (``lo = hi = None``). A claim "A > B" (or "x > threshold") is:

* **holds** when the whole interval of the difference lies on the claimed side,
* **does not hold** when it lies wholly on the other side,
* **within noise** when it contains zero (or, with one run, always: one run cannot separate signal from noise).

A ratio (a speedup, any "times as fast") is summarised on the log scale instead (:func:`ratio_interval`): the
t-interval of the logs of the per-seed ratios, exponentiated, around their geometric mean. A linear interval of
ratios can go below zero (``2.31 [-0.39, 5.02]x``), which no ratio can; the log interval cannot, and it treats
"twice as fast" and "half as fast" as equally far from 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

__all__ = ['Interval', 'mean_interval', 'ratio_interval', 'verdict', 't_quantile', 'RULE', 'RATIO_RULE']

RULE = ('95% t-interval of the mean over seeds (mean +- t(0.975, n-1) * sd / sqrt(n)); a claim holds when the '
        "interval of its difference lies wholly on the claimed side, does not hold when wholly on the other, and is "
        'within noise when it straddles zero or when there is a single run')
RATIO_RULE = ('a speedup, like any ratio, is summarised on the log scale: the geometric mean of the per-seed '
              'ratios and exp of the 95% t-interval of their logs, shown as geometric mean [lo, hi] (never negative); '
              'a claim "ratio > c" holds when lo > c')

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
        """``'91.23 [90.80, 91.66]'`` (or ``'91.23 (1 run)'``); a value that rounds to zero is written ``0``, never
        ``-0``."""
        def num(x: float) -> str:
            text = f'{x * scale:.{digits}f}'
            return text[1:] if text.startswith('-') and float(text) == 0 else text

        if self.lo is None or self.hi is None:
            return f'{num(self.mean)} (1 run)'
        return f'{num(self.mean)} [{num(self.lo)}, {num(self.hi)}]'


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


def ratio_interval(values: Sequence[float]) -> Interval:
    """The geometric mean of the positive ratios ``values`` and ``exp`` of the 95% t-interval of their logs (see
    the module docstring); ``mean`` holds the geometric mean. ValueError on a ratio <= 0 (no log)."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if any(v <= 0 for v in values):
        raise ValueError(f'a ratio must be positive to be summarised on the log scale, got {min(values)}')
    logs = mean_interval([math.log(v) for v in values])
    return Interval(math.exp(logs.mean), None if logs.lo is None else math.exp(logs.lo),
                    None if logs.hi is None else math.exp(logs.hi), logs.n)


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
