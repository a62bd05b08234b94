"""``algorithms.analysis.cca_coefficients`` alone (not through ``svcca``, whose inputs are already centred):
it centres its inputs as google/svcca's ``cca_core.get_cca_similarity`` does, and equals a covariance reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.analysis import cca_coefficients


def layers(neurons1: int, neurons2: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two layers (neurons x datapoints) sharing a 4-dimensional signal, plus independent noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((4, n))
    x = rng.standard_normal((neurons1, 4)) @ z + 0.7 * rng.standard_normal((neurons1, n))
    y = rng.standard_normal((neurons2, 4)) @ z + 1.0 * rng.standard_normal((neurons2, n))
    return x, y


def inverse_sqrt(sym: np.ndarray) -> np.ndarray:
    """``Sigma^{-1/2}`` of a symmetric positive definite matrix from its eigendecomposition."""
    eigvals, eigvecs = np.linalg.eigh(sym)
    return (eigvecs / np.sqrt(eigvals)) @ eigvecs.T


def covariance_reference(x: np.ndarray, y: np.ndarray, epsilon: float) -> np.ndarray:
    """Canonical correlations written out from the definition, in numpy: centre each neuron, the covariances,
    cca_core's rescaling by their largest entry and ``epsilon * I`` regulariser, then the singular values of
    ``Sigma_xx^{-1/2} Sigma_xy Sigma_yy^{-1/2}`` (descending)."""
    n = x.shape[1]
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    sxx, syy, sxy = np.cov(x), np.cov(y), x @ y.T / (n - 1)
    xmax, ymax = np.abs(sxx).max(), np.abs(syy).max()
    sxx = sxx / xmax + epsilon * np.eye(len(sxx))
    syy = syy / ymax + epsilon * np.eye(len(syy))
    sxy = sxy / np.sqrt(xmax * ymax)
    return np.linalg.svd(inverse_sqrt(sxx) @ sxy @ inverse_sqrt(syy), compute_uv=False)


def coefficients(x: np.ndarray, y: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
    return cca_coefficients(torch.from_numpy(x), torch.from_numpy(y), epsilon).numpy()


@pytest.mark.parametrize('epsilon', [0.0, 1e-10, 1e-3])
@pytest.mark.parametrize('neurons1, neurons2, seed', [(6, 6, 0), (8, 5, 1), (3, 10, 2)])
def test_equals_the_covariance_reference(neurons1, neurons2, seed, epsilon):
    rng = np.random.default_rng(100 + seed)
    x, y = layers(neurons1, neurons2, 400, seed)
    x, y = x + rng.normal(0, 3, (neurons1, 1)), y + rng.normal(0, 3, (neurons2, 1))  # not centred
    ours = coefficients(x, y, epsilon)
    assert ours.shape == (min(neurons1, neurons2),)
    assert np.all(np.diff(ours) <= 0)  # descending
    np.testing.assert_allclose(ours, covariance_reference(x, y, epsilon), rtol=0, atol=1e-10)


def test_per_neuron_offsets_change_nothing():
    x, y = layers(8, 6, 500, seed=3)
    x, y = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    centred = coefficients(x, y)
    rng = np.random.default_rng(4)
    for scale in (0.5, 5.0, 50.0):
        shifted = coefficients(x + rng.normal(0, scale, (8, 1)), y + rng.normal(0, scale, (6, 1)))
        np.testing.assert_allclose(shifted, centred, rtol=0, atol=1e-9)
    # One side shifted by a constant, the other not: still nothing changes.
    np.testing.assert_allclose(coefficients(x + 7.0, y), centred, rtol=0, atol=1e-9)


def test_plain_cca_equals_the_cosines_of_the_principal_angles():
    # A second, covariance-free route (epsilon 0): the canonical correlations are the cosines of the principal
    # angles between the row spaces of the centred layers, the singular values of Qx^T Qy.
    x, y = layers(7, 5, 300, seed=5)
    x, y = x + 2.0, y - 4.0 * np.arange(5)[:, None]
    qx = np.linalg.qr((x - x.mean(axis=1, keepdims=True)).T)[0]
    qy = np.linalg.qr((y - y.mean(axis=1, keepdims=True)).T)[0]
    np.testing.assert_allclose(coefficients(x, y), np.linalg.svd(qx.T @ qy, compute_uv=False), rtol=0, atol=1e-10)
