"""SVCCA: Singular Vector Canonical Correlation Analysis (Raghu et al., NeurIPS 2017), in torch, float64.

The procedure is google/svcca's (``cca_core.get_cca_similarity`` and the SVCCA steps of its tutorials):

1. ``acts`` are ``neurons x datapoints`` (entry ``(i, j)``: neuron ``i`` on datapoint ``j``); fewer neurons than
   datapoints. Centre every neuron (row).
2. SVD: keep the top ``k`` singular directions, ``svacts = U_k^T acts`` (= ``diag(s_k) V_k``), where ``k`` is given
   or the fewest directions holding ``keep`` (e.g. 99%) of the variance, the variance of a direction being ``s^2``.
3. CCA of the two reduced sets as ``cca_core`` does it: covariance blocks (``np.cov``, ``n - 1``), each rescaled by
   the largest absolute entry of its own block (``Sxy`` by the square root of both), directions whose variance is
   below ``epsilon`` dropped, ``epsilon * I`` added, pseudo-inverse square roots ``Sxx^{-1/2}``, ``Syy^{-1/2}``; the
   canonical correlations are the singular values of ``Sxx^{-1/2} Sxy Syy^{-1/2}``.
4. Similarity = the mean of all ``min(k1, k2)`` canonical correlations (``np.mean(results["cca_coef1"])`` as in the
   tutorials; ``cca_core``'s own ``results["mean"]`` also drops the trailing coefficients holding the last 2% of
   their sum, which raises it). Distance = ``1 - mean``.

Step 2 runs through the eigen-decomposition of the ``neurons x neurons`` centred Gram matrix instead of an SVD of
the ``neurons x datapoints`` matrix: the same directions and variances at a fraction of the cost (``benchmarks/
svcca_speed.py``), without a centred copy of the activations; ``U_k^T acts`` is computed from the data, so a
rotation of the kept subspace is exact.
Everything runs in float64 on the device the inputs are on.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch

__all__ = ['SVCCAResult', 'svcca', 'cca_coefficients', 'top_directions', 'as_float64']

log = logging.getLogger(__name__)

Keep = Union[float, int]


@dataclass(frozen=True)
class SVCCAResult:
    """What :func:`svcca` found.

    Attributes:
        mean: the SVCCA similarity, mean canonical correlation in [0, 1].
        coefs: the canonical correlations, descending (float64 tensor on the inputs' device).
        kept1: SVD directions kept of ``acts1``.
        kept2: SVD directions kept of ``acts2``.
    """

    mean: float
    coefs: torch.Tensor
    kept1: int
    kept2: int

    @property
    def distance(self) -> float:
        """``1 - mean``, the distance the seed's chapter II reports."""
        return 1.0 - self.mean


def as_float64(acts: Any, name: str) -> torch.Tensor:
    """``acts`` (a tensor or a numpy array) as a 2-D float64 tensor on its own device; ValueError if not finite."""
    if isinstance(acts, np.ndarray):
        acts = torch.from_numpy(acts)
    if not isinstance(acts, torch.Tensor):
        raise ValueError(f'{name}: expected a torch tensor or a numpy array, got {type(acts).__name__}')
    if acts.ndim != 2:
        raise ValueError(f'{name}: expected a 2-D array, got shape {tuple(acts.shape)}')
    acts = acts.detach().to(torch.float64)
    if not bool(torch.isfinite(acts).all()):
        raise ValueError(f'{name}: contains NaN or infinite values')
    return acts


def _check_pair(x: torch.Tensor, y: torch.Tensor, names: tuple[str, str]) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(f'{names[0]} and {names[1]} must have the same number of datapoints (columns), '
                         f'got {x.shape[1]} and {y.shape[1]}')
    if x.device != y.device:
        raise ValueError(f'{names[0]} is on {x.device} but {names[1]} on {y.device}')


def top_directions(acts: torch.Tensor, keep: Keep) -> torch.Tensor:
    """The centred projection of ``neurons x datapoints`` activations on their top singular directions.

    ``keep``: an ``int`` k (1 <= k <= neurons) keeps the top k; a ``float`` in (0, 1] keeps the fewest directions
    whose share of the variance (sum of ``s_i^2``) reaches ``keep``. Returns ``U_k^T (acts - mean)``
    (``k x datapoints``), ``U`` the left singular vectors of the centred activations.

    The centred Gram matrix is ``acts acts^T - n m m^T``: no centred copy of ``acts`` is made. That subtraction
    costs float64 digits when a neuron's mean dwarfs its spread; past ``mean^2 > 1e4 var`` (4 of 16 digits) the
    activations are centred explicitly instead.
    """
    neurons, n = acts.shape
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real):
        raise ValueError(f'keep: expected an int number of directions or a float share of variance, got {keep!r}')
    if isinstance(keep, numbers.Integral) and not 1 <= int(keep) <= neurons:
        raise ValueError(f'keep: {keep} directions asked of a layer of {neurons} neurons (need 1..{neurons})')
    if not isinstance(keep, numbers.Integral) and not 0.0 < float(keep) <= 1.0:
        raise ValueError(f'keep: a share of variance must be in (0, 1], got {keep}')
    mean = acts.mean(dim=1, keepdim=True)
    gram = acts @ acts.T - n * (mean @ mean.T)
    if bool((mean.squeeze(1) ** 2 > 1e4 * torch.diagonal(gram) / n).any()):
        acts = acts - mean
        mean = torch.zeros_like(mean)
        gram = acts @ acts.T
    eigvals, eigvecs = torch.linalg.eigh(gram)  # ascending; eigvals are s_i^2
    eigvals, eigvecs = eigvals.flip(0).clamp_min(0), eigvecs.flip(1)
    if isinstance(keep, numbers.Integral):
        k = int(keep)
    else:
        cumulative = torch.cumsum(eigvals, 0)
        total = float(cumulative[-1])
        k = 1 if total <= 0.0 else min(neurons, int((cumulative < float(keep) * total).sum()) + 1)
    directions = eigvecs[:, :k].T
    return directions @ acts - directions @ mean


def _pinv_sqrt(sym: torch.Tensor) -> torch.Tensor:
    """``positivedef_matrix_sqrt(np.linalg.pinv(sym))`` of cca_core for a symmetric PSD matrix, in one eigh.

    pinv's default cutoff (1e-15 of the largest eigenvalue) is kept; eigenvalues at or below it count as zero.
    """
    eigvals, eigvecs = torch.linalg.eigh(sym)
    cutoff = 1e-15 * eigvals.abs().max()
    inv_sqrt = torch.where(eigvals > cutoff, eigvals.clamp_min(cutoff).rsqrt(), torch.zeros_like(eigvals))
    return (eigvecs * inv_sqrt) @ eigvecs.T


def cca_coefficients(x: torch.Tensor, y: torch.Tensor, epsilon: float = 0.0) -> torch.Tensor:
    """Canonical correlations of ``x`` and ``y`` (float64, ``neurons x datapoints``), descending: cca_core's
    ``get_cca_similarity(x, y, epsilon)["cca_coef1"]``. Empty when every direction of one side is below
    ``epsilon`` (cca_core then reports a mean of 0)."""
    n = x.shape[1]
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    sxx, syy, sxy = (x @ x.T) / (n - 1), (y @ y.T) / (n - 1), (x @ y.T) / (n - 1)
    xmax, ymax = sxx.abs().max(), syy.abs().max()
    if float(xmax) == 0.0 or float(ymax) == 0.0:
        return torch.zeros(0, dtype=x.dtype, device=x.device)
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / torch.sqrt(xmax * ymax)
    x_idx = torch.diagonal(sxx).abs() >= epsilon  # cca_core.remove_small
    y_idx = torch.diagonal(syy).abs() >= epsilon
    if not bool(x_idx.any()) or not bool(y_idx.any()):
        return torch.zeros(0, dtype=x.dtype, device=x.device)
    sxx, syy, sxy = sxx[x_idx][:, x_idx], syy[y_idx][:, y_idx], sxy[x_idx][:, y_idx]
    sxx = sxx + epsilon * torch.eye(sxx.shape[0], dtype=sxx.dtype, device=sxx.device)
    syy = syy + epsilon * torch.eye(syy.shape[0], dtype=syy.dtype, device=syy.device)
    whitened = _pinv_sqrt(sxx) @ sxy @ _pinv_sqrt(syy)
    return torch.linalg.svdvals(whitened)


def svcca(acts1: Any, acts2: Any, keep: Keep = 0.99, epsilon: float = 1e-10) -> SVCCAResult:
    """SVCCA similarity of two layers' activations on the same datapoints in the same order.

    Args:
        acts1: ``neurons1 x datapoints`` activations (torch tensor or numpy array). A conv layer's ``[B, C, H, W]``
            output becomes ``C x (B*H*W)`` or ``C x B`` with :func:`~algorithms.analysis.conv_activations`.
        acts2: ``neurons2 x datapoints``, the same datapoints (``neurons2`` may differ from ``neurons1``).
        keep: SVD directions kept per layer: a float share of the variance (0.99, the SVCCA paper's rule) or an
            int number of directions (google/svcca's tutorial keeps 20); an int larger than a layer's neurons is
            an error. ``keep = neurons`` keeps every direction: plain CCA.
        epsilon: cca_core's regulariser: directions whose rescaled variance is below it are dropped and
            ``epsilon * I`` is added to the covariances (1e-10, as google/svcca's tutorials call it).

    Returns:
        :class:`SVCCAResult` (``mean``: the similarity; ``coefs``; ``kept1``/``kept2``).

    Raises:
        ValueError: not 2-D, NaN/inf, different datapoint counts, different devices, or a layer with at least as
            many neurons as datapoints (CCA then finds perfect correlations by chance: give more datapoints, e.g.
            spatial positions, or pool).
    """
    x, y = as_float64(acts1, 'acts1'), as_float64(acts2, 'acts2')
    _check_pair(x, y, ('acts1', 'acts2'))
    for name, a in (('acts1', x), ('acts2', y)):
        if a.shape[0] >= a.shape[1]:
            raise ValueError(f'{name}: {a.shape[0]} neurons need more datapoints than that, got {a.shape[1]} '
                             '(inputs are neurons x datapoints: transpose? use more data or spatial positions)')
    sx, sy = top_directions(x, keep), top_directions(y, keep)
    coefs = cca_coefficients(sx, sy, epsilon)
    if coefs.numel() == 0:
        log.warning('svcca: one side has no direction with variance above epsilon=%g; similarity 0', epsilon)
        mean = 0.0
    else:
        mean = float(coefs.mean())
    return SVCCAResult(mean=mean, coefs=coefs, kept1=sx.shape[0], kept2=sy.shape[0])
