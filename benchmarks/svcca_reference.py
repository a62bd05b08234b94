"""A numpy transcription of google/svcca's SVCCA procedure: the reference ``algorithms.analysis.svcca`` is checked
and timed against (``tests/test_analysis_similarity.py``, ``benchmarks/svcca_speed.py``).

Transcribed from https://github.com/google/svcca: ``cca_core.py`` (``positivedef_matrix_sqrt``, ``remove_small``,
``compute_ccas``, the covariance and rescaling steps of ``get_cca_similarity``) and the SVCCA cell of
``tutorials/001_Introduction.ipynb`` (centre, ``np.linalg.svd``, keep ``diag(s[:k]) V[:k]``, then
``get_cca_similarity(..., epsilon=1e-10)`` and ``np.mean(results["cca_coef1"])``). Only what the similarity needs
is kept: the printing, the coefficient/direction bookkeeping and the ``sum_threshold`` trimmed ``"mean"`` are left
out. Choosing ``k`` from a share of variance (``s^2``) is not in google/svcca (its tutorial keeps a fixed 20); it
follows the SVCCA paper's 99% rule, the same way as ``algorithms.analysis.svcca``.

Copyright 2018 Google Inc. Licensed under the Apache License, Version 2.0 (the "License"); you may not use this
file except in compliance with the License. You may obtain a copy of the License at
http://www.apache.org/licenses/LICENSE-2.0. Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND,
either express or implied. Changes: reduced to the functions above, Python 3 only, ``verbose`` removed.
"""

from __future__ import annotations

from typing import Union

import numpy as np

__all__ = ['positivedef_matrix_sqrt', 'remove_small', 'compute_ccas', 'get_cca_coefs', 'svcca_reference']


def positivedef_matrix_sqrt(array: np.ndarray) -> np.ndarray:
    """cca_core.positivedef_matrix_sqrt: matrix square root through eigh."""
    w, v = np.linalg.eigh(array)
    wsqrt = np.sqrt(w)
    return np.dot(v, np.dot(np.diag(wsqrt), np.conj(v).T))


def remove_small(sigma_xx, sigma_xy, sigma_yx, sigma_yy, epsilon):
    """cca_core.remove_small: drop the directions whose variance is below epsilon."""
    x_diag = np.abs(np.diagonal(sigma_xx))
    y_diag = np.abs(np.diagonal(sigma_yy))
    x_idxs = (x_diag >= epsilon)
    y_idxs = (y_diag >= epsilon)
    sigma_xx_crop = sigma_xx[x_idxs][:, x_idxs]
    sigma_xy_crop = sigma_xy[x_idxs][:, y_idxs]
    sigma_yx_crop = sigma_yx[y_idxs][:, x_idxs]
    sigma_yy_crop = sigma_yy[y_idxs][:, y_idxs]
    return sigma_xx_crop, sigma_xy_crop, sigma_yx_crop, sigma_yy_crop, x_idxs, y_idxs


def compute_ccas(sigma_xx, sigma_xy, sigma_yx, sigma_yy, epsilon):
    """cca_core.compute_ccas: canonical correlations from the covariance blocks (absolute singular values)."""
    (sigma_xx, sigma_xy, sigma_yx, sigma_yy,
     x_idxs, y_idxs) = remove_small(sigma_xx, sigma_xy, sigma_yx, sigma_yy, epsilon)
    numx = sigma_xx.shape[0]
    numy = sigma_yy.shape[0]
    if numx == 0 or numy == 0:
        return np.zeros(0)
    sigma_xx += epsilon * np.eye(numx)
    sigma_yy += epsilon * np.eye(numy)
    inv_xx = np.linalg.pinv(sigma_xx)
    inv_yy = np.linalg.pinv(sigma_yy)
    invsqrt_xx = positivedef_matrix_sqrt(inv_xx)
    invsqrt_yy = positivedef_matrix_sqrt(inv_yy)
    arr = np.dot(invsqrt_xx, np.dot(sigma_xy, invsqrt_yy))
    u, s, v = np.linalg.svd(arr)
    return np.abs(s)


def get_cca_coefs(acts1: np.ndarray, acts2: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
    """The ``cca_coef1`` of cca_core.get_cca_similarity (its covariance, rescaling and compute_ccas)."""
    assert acts1.shape[1] == acts2.shape[1], "dimensions don't match"
    assert acts1.shape[0] < acts1.shape[1], "input must be number of neurons by datapoints"
    numx = acts1.shape[0]
    covariance = np.cov(acts1, acts2)
    sigmaxx = covariance[:numx, :numx]
    sigmaxy = covariance[:numx, numx:]
    sigmayx = covariance[numx:, :numx]
    sigmayy = covariance[numx:, numx:]
    xmax = np.max(np.abs(sigmaxx))
    ymax = np.max(np.abs(sigmayy))
    sigmaxx /= xmax
    sigmayy /= ymax
    sigmaxy /= np.sqrt(xmax * ymax)
    sigmayx /= np.sqrt(xmax * ymax)
    return compute_ccas(sigmaxx, sigmaxy, sigmayx, sigmayy, epsilon=epsilon)


def _svd_reduce(acts: np.ndarray, keep: Union[float, int]) -> np.ndarray:
    """The tutorial's SVD step: centre, svd, ``diag(s[:k]) V[:k]``."""
    cacts = acts - np.mean(acts, axis=1, keepdims=True)
    _, s, v = np.linalg.svd(cacts, full_matrices=False)
    if isinstance(keep, (int, np.integer)):
        k = int(keep)
    else:
        share = np.cumsum(s ** 2) / np.sum(s ** 2)
        k = min(len(s), int(np.sum(share < keep)) + 1)
    return np.dot(s[:k] * np.eye(k), v[:k])


def svcca_reference(acts1: np.ndarray, acts2: np.ndarray, keep: Union[float, int] = 0.99,
                    epsilon: float = 1e-10) -> float:
    """SVCCA similarity as google/svcca's tutorial computes it: the mean of all canonical correlations."""
    acts1 = np.asarray(acts1, dtype=np.float64)
    acts2 = np.asarray(acts2, dtype=np.float64)
    coefs = get_cca_coefs(_svd_reduce(acts1, keep), _svd_reduce(acts2, keep), epsilon=epsilon)
    return float(np.mean(coefs)) if coefs.size else 0.0
