"""A numpy transcription of google/svcca's SVCCA procedure: the reference ``algorithms.analysis.svcca`` is checked
and timed against (``tests/algorithms/test_analysis_similarity.py``, ``benchmarks/measurements/svcca_speed.py``).

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
either express or implied. Changes: reduced to the functions above, written more compactly (the same arithmetic),
Python 3 only, ``verbose`` removed.
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
    x_idxs = np.abs(np.diagonal(sigma_xx)) >= epsilon
    y_idxs = np.abs(np.diagonal(sigma_yy)) >= epsilon
    return (sigma_xx[x_idxs][:, x_idxs], sigma_xy[x_idxs][:, y_idxs], sigma_yx[y_idxs][:, x_idxs],
            sigma_yy[y_idxs][:, y_idxs], x_idxs, y_idxs)


def compute_ccas(sigma_xx, sigma_xy, sigma_yx, sigma_yy, epsilon):
    """cca_core.compute_ccas: canonical correlations from the covariance blocks (absolute singular values)."""
    sigma_xx, sigma_xy, sigma_yx, sigma_yy, _, _ = remove_small(sigma_xx, sigma_xy, sigma_yx, sigma_yy, epsilon)
    numx, numy = sigma_xx.shape[0], sigma_yy.shape[0]
    if numx == 0 or numy == 0:
        return np.zeros(0)
    invsqrt_xx = positivedef_matrix_sqrt(np.linalg.pinv(sigma_xx + epsilon * np.eye(numx)))
    invsqrt_yy = positivedef_matrix_sqrt(np.linalg.pinv(sigma_yy + epsilon * np.eye(numy)))
    _, s, _ = np.linalg.svd(np.dot(invsqrt_xx, np.dot(sigma_xy, invsqrt_yy)))
    return np.abs(s)


def get_cca_coefs(acts1: np.ndarray, acts2: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
    """The ``cca_coef1`` of cca_core.get_cca_similarity (its covariance, rescaling and compute_ccas)."""
    assert acts1.shape[1] == acts2.shape[1], "dimensions don't match"
    assert acts1.shape[0] < acts1.shape[1], "input must be number of neurons by datapoints"
    numx = acts1.shape[0]
    covariance = np.cov(acts1, acts2)
    xmax, ymax = np.max(np.abs(covariance[:numx, :numx])), np.max(np.abs(covariance[numx:, numx:]))
    return compute_ccas(covariance[:numx, :numx] / xmax, covariance[:numx, numx:] / np.sqrt(xmax * ymax),
                        covariance[numx:, :numx] / np.sqrt(xmax * ymax), covariance[numx:, numx:] / ymax,
                        epsilon=epsilon)


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
    reduced = (_svd_reduce(np.asarray(acts, dtype=np.float64), keep) for acts in (acts1, acts2))
    coefs = get_cca_coefs(*reduced, epsilon=epsilon)
    return float(np.mean(coefs)) if coefs.size else 0.0
