"""Linear CKA: centred kernel alignment with linear kernels (Kornblith et al., ICML 2019), in float64.

For ``x`` (``datapoints x p``) and ``y`` (``datapoints x q``), columns centred::

    CKA(x, y) = ||y^T x||_F^2 / (||x^T x||_F * ||y^T y||_F)

It lies in [0, 1], is invariant to orthogonal transformations and isotropic scaling of either side, but not to a
general invertible linear map (unlike CCA). Note the orientation: CKA follows its paper (datapoints in rows),
:func:`~algorithms.analysis.svcca` follows google/svcca (neurons in rows).
"""

from __future__ import annotations

from typing import Any

import torch

from .svcca import _check_pair, as_float64

__all__ = ['linear_cka']


def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA of two representations of the same datapoints in the same order.

    Args:
        x: ``datapoints x features`` (torch tensor or numpy array); ``y``: ``datapoints x features2``.

    Computed on the inputs' device in float64, through the ``features x features`` cross-covariances (the
    paper's feature-space form) or, when that is cheaper, the ``datapoints x datapoints`` Gram matrices (same
    value).

    Raises:
        ValueError: not 2-D, NaN/inf, different datapoint counts or devices, or a side with no variance.
    """
    x, y = as_float64(x, 'x'), as_float64(y, 'y')
    _check_pair(x.T, y.T, ('x', 'y'))
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if p * q + p * p + q * q <= n * (p + q):  # feature space: O(n (p + q)^2)
        cross = torch.linalg.matrix_norm(y.T @ x) ** 2
        norm_x, norm_y = torch.linalg.matrix_norm(x.T @ x), torch.linalg.matrix_norm(y.T @ y)
    else:  # datapoint space: O(n^2 (p + q))
        gx, gy = x @ x.T, y @ y.T
        cross = (gx * gy).sum()
        norm_x, norm_y = torch.linalg.matrix_norm(gx), torch.linalg.matrix_norm(gy)
    for name, norm in (('x', norm_x), ('y', norm_y)):
        if float(norm) == 0.0:
            raise ValueError(f'{name}: has no variance (every datapoint the same); CKA is undefined')
    return float(cross / (norm_x * norm_y))
