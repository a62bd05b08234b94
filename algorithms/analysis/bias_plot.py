"""The bias scatter of the seed's chapter III: each class's change in FPR (x) against its change in FNR (y), one
colour per method, each method's cloud with its 95% confidence ellipse.

A point on the diagonal ``dFPR = dFNR`` changed both errors alike; SDE is the mean distance to it, CEV the spread
of the cloud (:mod:`algorithms.analysis.bias`). The ellipse is the covariance ellipse of the points: centred on
their mean, axes along the eigenvectors of their sample covariance (``n - 1``), half-axes ``sqrt(q * lambda)`` with
``q`` the chi-square quantile of 2 degrees of freedom at ``level`` (``-2 ln(1 - level)``: 5.991 at 95%), the
region holding ``level`` of a Gaussian with that mean and covariance.

Matplotlib is imported lazily with the Agg backend.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from .plots import pyplot, save_figure

__all__ = ['EllipseParams', 'chi2_2dof_quantile', 'ellipse_params', 'bias_scatter']

log = logging.getLogger(__name__)


class EllipseParams(NamedTuple):
    """A confidence ellipse as ``matplotlib.patches.Ellipse`` takes it: ``centre`` ``(x, y)``, full ``width``
    (major axis) and ``height`` (minor axis), ``angle`` of the major axis in degrees counter-clockwise from x, in
    ``[0, 180)``."""

    centre: tuple[float, float]
    width: float
    height: float
    angle: float


def chi2_2dof_quantile(level: float) -> float:
    """The ``level`` quantile of a chi-square of 2 degrees of freedom, ``-2 ln(1 - level)`` (5.991 at 0.95)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f'level must be in (0, 1), got {level}')
    return -2.0 * math.log1p(-level)


def ellipse_params(points: Any, level: float = 0.95) -> EllipseParams:
    """The ``level`` confidence (covariance) ellipse of ``[n, 2]`` points (``n >= 2``; rows with a NaN dropped)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f'points must be [n, 2], got shape {pts.shape}')
    pts = pts[~np.isnan(pts).any(axis=1)]
    if len(pts) < 2:
        raise ValueError(f'an ellipse needs at least 2 points, got {len(pts)}')
    q = chi2_2dof_quantile(level)
    eigvals, eigvecs = np.linalg.eigh(np.cov(pts, rowvar=False))  # ascending
    eigvals = np.clip(eigvals, 0.0, None)
    major = eigvecs[:, 1]
    angle = math.degrees(math.atan2(major[1], major[0])) % 180.0
    centre = pts.mean(axis=0)
    return EllipseParams((float(centre[0]), float(centre[1])), 2.0 * math.sqrt(q * eigvals[1]),
                         2.0 * math.sqrt(q * eigvals[0]), angle)


def bias_scatter(changes: Mapping[str, tuple[Any, Any]], path: Union[str, Path], title: Optional[str] = None,
                 level: float = 0.95) -> Path:
    """Write the scatter of per-class ``dFPR`` (x) against ``dFNR`` (y), in percent, to ``path`` (PNG); return it.

    Args:
        changes: ``{method: (d_fpr, d_fnr)}`` in legend order, e.g. ``{'pruned': (r.d_fpr, r.d_fnr), 'KD': ...}``
            from :class:`~algorithms.analysis.BiasReport`\\ s. Classes with a NaN change are not drawn.
        title: the figure title; ``level``: the ellipses' confidence level (a method with fewer than 3 drawable
            classes gets no ellipse).
    """
    if not changes:
        raise ValueError('bias_scatter: no method to draw')
    plt = pyplot('the bias scatter')
    from matplotlib.patches import Ellipse

    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    colours = plt.get_cmap('tab10')
    for k, (name, (d_fpr, d_fnr)) in enumerate(changes.items()):
        pts = np.stack([np.asarray(d_fpr, dtype=np.float64), np.asarray(d_fnr, dtype=np.float64)], axis=1)
        pts = pts[~np.isnan(pts).any(axis=1)]
        colour = colours(k % 10)
        ax.scatter(pts[:, 0], pts[:, 1], s=18, color=colour, alpha=0.8, label=name)
        if len(pts) >= 3:
            e = ellipse_params(pts, level)
            ax.add_patch(Ellipse(e.centre, e.width, e.height, angle=e.angle, fill=False, edgecolor=colour, lw=1.5))
        else:
            log.info('bias_scatter: %s has %d classes to draw, no ellipse', name, len(pts))
    ax.axhline(0.0, color='grey', lw=0.6)
    ax.axvline(0.0, color='grey', lw=0.6)
    ax.axline((0.0, 0.0), slope=1.0, color='grey', lw=0.8, ls='--', label='dFPR = dFNR')
    ax.autoscale_view()
    ax.set_xlabel('change in FPR (%)')
    ax.set_ylabel('change in FNR (%)')
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, 'bias scatter')
