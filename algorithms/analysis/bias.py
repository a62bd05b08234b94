"""Bias of a compressed model against its original: per-class error-rate changes, CEV, SDE and PIEs.

The metrics of the seed's chapter III (Blakeney et al., "Simon says: evaluating and mitigating bias in pruned
neural networks with knowledge distillation", 2021; digested in this project's ``SEED_NOTES.md`` section 3):

* per class ``i``, one-vs-rest on integer predictions: ``FPR_i = FP_i / (FP_i + TN_i)``,
  ``FNR_i = FN_i / (FN_i + TP_i)``, for the compressed model (``X_i``) and the original (``X^_i``);
* normalised change ``dX_i = 100 (X_i - X^_i) / X^_i``, for FPR and FNR separately (a zero ``X^_i`` needs a rule:
  :func:`normalised_change`);
* **CEV** (combined error variance): the spread of the points ``dX_i = (dFPR_i, dFNR_i)`` around their mean
  ``dX_mu`` over the ``n`` classes. By default the seed's code's definition, ``1/(2n) sum_i ||dX_mu - dX_i||^2``
  (sklearn's ``mean_squared_error`` of the ``n x 2`` points against their mean: it averages over the two
  coordinates too; the seed's published CEVs are on it); ``average='points'`` gives the formula as the seed's text
  writes it, ``1/n sum_i ||dX_mu - dX_i||^2``, twice as large (:func:`cev`). The seed computed it once from the
  seed-averaged rates (:func:`seed_averaged_cev`), not as a mean of per-seed CEVs;
* **SDE** (symmetric distance error) ``= 1/n sum_i |dFNR_i - dFPR_i| / sqrt(2)``, the mean distance of the points
  ``dX_i`` to the diagonal ``dFPR = dFNR``.

Lower CEV / SDE = the compression changed the classes' errors more uniformly = less bias. PIEs (pruning identified
exemplars) come in two definitions, named for what they are: :func:`pie_modal` (Hooker et al. 2019, populations
of compressed and original models) and :func:`pie_disagreement` (students vs one teacher, as in the seed's author's
code; its ``rule='all'`` is what that code counted).

Everything is numpy float64 on the CPU; inputs may be torch tensors (any device), numpy arrays or lists.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, Optional, Union

import numpy as np
import torch
from torch import nn

from .layer_similarity import _model_device, _to_device

__all__ = [
    'confusion_matrix', 'rates_from_confusion', 'per_class_rates', 'Change', 'normalised_change', 'ZERO_RULES',
    'cev', 'CEV_AVERAGES', 'seed_averaged_cev', 'sde', 'BiasReport', 'bias_metrics', 'pie_modal', 'pie_disagreement',
    'PIE_RULES', 'count_pies', 'modal_labels', 'collect_predictions'
]

log = logging.getLogger(__name__)

ZERO_RULES = ('epsilon', 'drop')
PIE_RULES = ('modal', 'any', 'all')
CEV_AVERAGES = ('points_and_coordinates', 'points')  # the seed's code's CEV (the default), the formula's (x 2)
Eps = Union[float, np.ndarray, None]


def _labels(x: Any, name: str, num_classes: Optional[int] = None, ndim: int = 1) -> np.ndarray:
    """Integer class labels as an int64 numpy array of ``ndim`` dimensions; ValueError if out of range."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(f'{name}: expected a {ndim}-D array of class labels, got shape {arr.shape}')
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f'{name}: class labels must be integers (argmax the logits first)')
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f'{name}: negative class label {arr.min()}')
    if num_classes is not None and arr.size and arr.max() >= num_classes:
        raise ValueError(f'{name}: class label {arr.max()} out of range for num_classes={num_classes}')
    return arr


def confusion_matrix(preds: Any, labels: Any, num_classes: int) -> np.ndarray:
    """``cm[t, p]`` = the number of examples of true class ``t`` predicted as ``p`` (rows true, columns predicted);
    ``num_classes x num_classes`` int64."""
    preds, labels = _labels(preds, 'preds', num_classes), _labels(labels, 'labels', num_classes)
    if preds.shape != labels.shape:
        raise ValueError(f'preds and labels differ in length: {preds.shape[0]} and {labels.shape[0]}')
    flat = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` in float64, NaN where ``den`` is 0 (a rate with nothing to count is undefined, not 0)."""
    num, den = num.astype(np.float64), den.astype(np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _one_vs_rest(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    cm = np.asarray(cm, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f'a confusion matrix must be square, got shape {cm.shape}')
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp  # true i, predicted something else
    fp = cm.sum(axis=0) - tp  # predicted i, true something else
    tn = cm.sum() - tp - fn - fp
    return tp, fp, fn, tn


def rates_from_confusion(cm: Any) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest ``(fpr, fnr)`` per class from a confusion matrix (rows true, columns predicted), float64.

    ``FPR_i = FP_i / (FP_i + TN_i)``, ``FNR_i = FN_i / (FN_i + TP_i)``. A class absent from the labels has an
    undefined FNR (NaN); a set holding only that class, an undefined FPR.
    """
    tp, fp, fn, tn = _one_vs_rest(cm)
    return _ratio(fp, fp + tn), _ratio(fn, fn + tp)


def per_class_rates(preds: Any, labels: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest ``(fpr, fnr)`` per class (float64 arrays of ``num_classes``) from integer predictions and labels
    (torch tensors, numpy arrays or lists of the same length)."""
    return rates_from_confusion(confusion_matrix(preds, labels, num_classes))


class Change(NamedTuple):
    """What :func:`normalised_change` returns: ``values`` (``dX`` in percent, float64, NaN for a dropped or
    undefined class) and ``affected`` (the classes whose original rate was 0, in ascending order)."""

    values: np.ndarray
    affected: list[int]


def normalised_change(x: Any, x_orig: Any, zero_rule: str = 'epsilon', eps: Eps = None) -> Change:
    """``dX = 100 (X - X_orig) / X_orig`` per class, in percent, with a stated rule for ``X_orig = 0``.

    Args:
        x: the compressed model's per-class rates; ``x_orig``: the original's (same length).
        zero_rule: what a class whose original rate is exactly 0 gets:

            * ``'epsilon'`` (default): the zero in the **denominator only** is replaced by ``eps``:
              ``dX = 100 (X - 0) / eps``. A class at 0 in both models keeps ``dX = 0``; with ``eps = 1/N``, ``N`` the
              class's negatives (FPR) or positives (FNR) in the evaluated set (what :func:`bias_metrics` passes by
              default), a compressed model making ``k`` such errors gets ``dX = 100 k``: the change counted in the
              resolution of the evaluated set, the smallest non-zero rate it can show.
            * ``'drop'``: ``dX`` is NaN for that class; :func:`cev` and :func:`sde` leave out every class with a NaN.

        eps: for ``'epsilon'``: a positive scalar or one value per class. Required when some ``X_orig`` is 0
            (ValueError otherwise); ignored by ``'drop'``.

    Returns:
        :class:`Change` ``(values, affected)``. A NaN rate (undefined: no example to count) gives a NaN change and
        is not counted as affected.
    """
    if zero_rule not in ZERO_RULES:
        raise ValueError(f"zero_rule: expected one of {', '.join(ZERO_RULES)}, got {zero_rule!r}")
    x, x_orig = np.asarray(x, dtype=np.float64), np.asarray(x_orig, dtype=np.float64)
    if x.shape != x_orig.shape or x.ndim != 1:
        raise ValueError(f'x and x_orig must be 1-D of the same length, got shapes {x.shape} and {x_orig.shape}')
    zero = x_orig == 0
    affected = [int(i) for i in np.flatnonzero(zero)]
    denominator = x_orig.copy()
    if affected and zero_rule == 'epsilon':
        if eps is None:
            raise ValueError(f'original rate 0 for classes {affected}: pass eps (bias_metrics uses 1/count) or '
                             "zero_rule='drop'")
        eps_arr = np.broadcast_to(np.asarray(eps, dtype=np.float64), x.shape)
        if not np.all(eps_arr[zero] > 0):
            raise ValueError(f'eps must be positive for the classes it replaces, got {eps_arr[zero]}')
        denominator[zero] = eps_arr[zero]
    elif affected:
        denominator[zero] = np.nan
    return Change(100.0 * (x - x_orig) / denominator, affected)


def _points(d_fpr: Any, d_fnr: Any) -> np.ndarray:
    """The ``[n, 2]`` points ``(dFPR_i, dFNR_i)`` of the classes with no NaN in either coordinate."""
    a, b = np.asarray(d_fpr, dtype=np.float64), np.asarray(d_fnr, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f'd_fpr and d_fnr must be 1-D of the same length, got shapes {a.shape} and {b.shape}')
    points = np.stack([a, b], axis=1)
    return points[~np.isnan(points).any(axis=1)]


def cev(d_fpr: Any, d_fnr: Any, average: str = 'points_and_coordinates') -> float:
    """Combined error variance: the mean squared deviation of the points ``dX_i = (dFPR_i, dFNR_i)`` from their mean
    ``dX_mu`` over the classes, averaged over

    * ``'points_and_coordinates'`` (default): the ``n`` points and their 2 coordinates,
      ``1/(2n) sum_i ||dX_mu - dX_i||^2``: the seed's code (sklearn's ``mean_squared_error`` of the ``n x 2``
      points against their mean), on which its published CEVs (4,237 / 1,537 / 852) are;
    * ``'points'``: the ``n`` points only, ``1/n sum_i ||dX_mu - dX_i||^2``: the formula as the seed's text writes
      it, twice the default (points (300, 100), (200, 0), (0, 400): 44,444.4 against 22,222.2).

    Classes with a NaN in either change are left out (``n`` counts the rest; NaN if none is left)."""
    if average not in CEV_AVERAGES:
        raise ValueError(f"average: expected one of {', '.join(CEV_AVERAGES)}, got {average!r}")
    points = _points(d_fpr, d_fnr)
    if len(points) == 0:
        log.warning('cev: no class left after dropping NaN changes')
        return math.nan
    squared = (points - points.mean(axis=0)) ** 2
    return float(np.mean(squared) if average == 'points_and_coordinates' else np.mean(np.sum(squared, axis=1)))


def sde(d_fpr: Any, d_fnr: Any) -> float:
    """Symmetric distance error ``1/n sum_i |dFNR_i - dFPR_i| / sqrt(2)``; NaN classes left out as in :func:`cev`."""
    points = _points(d_fpr, d_fnr)
    if len(points) == 0:
        log.warning('sde: no class left after dropping NaN changes')
        return math.nan
    return float(np.mean(np.abs(points[:, 1] - points[:, 0])) / math.sqrt(2.0))


def _plain(value: Any) -> Any:
    """JSON-ready: arrays to lists, numpy scalars to Python, NaN to None."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


@dataclass
class BiasReport:
    """What :func:`bias_metrics` found. Per-class arrays are float64 of ``num_classes``; ``*_orig`` are the
    original model's. ``accuracy`` is per-class recall (``1 - FNR``); ``top1`` the overall accuracy.
    ``zero_classes``: ``{'fpr': [...], 'fnr': [...]}``, the classes whose original rate was 0: replaced by ``eps``
    in the denominator (rule ``'epsilon'``) or dropped (``'drop'``); ``dropped``: every class left out of
    CEV/SDE (dropped by the rule, or with an undefined rate); ``n_classes_used``: the ``n`` of CEV/SDE;
    ``cev_average``: which CEV (:func:`cev`)."""

    num_classes: int
    zero_rule: str
    fpr: np.ndarray
    fnr: np.ndarray
    fpr_orig: np.ndarray
    fnr_orig: np.ndarray
    d_fpr: np.ndarray
    d_fnr: np.ndarray
    cev: float
    sde: float
    accuracy: np.ndarray
    accuracy_orig: np.ndarray
    top1: float
    top1_orig: float
    zero_classes: dict[str, list[int]] = field(default_factory=dict)
    dropped: list[int] = field(default_factory=list)
    n_classes_used: int = 0
    cev_average: str = 'points_and_coordinates'

    def as_dict(self) -> dict[str, Any]:
        """Plain floats, ints and lists (NaN as ``None``): ``json.dumps`` takes it as is."""
        return _plain(asdict(self))


def _eps(labels: np.ndarray, num_classes: int, eps: Optional[float]) -> tuple[Eps, Eps]:
    """The ``(eps_fpr, eps_fnr)`` of the epsilon rule: ``1/negatives_i`` and ``1/positives_i`` counted in ``labels``
    (``eps=None``), or the fixed ``eps`` for both."""
    if eps is not None:
        return float(eps), float(eps)
    positives = np.bincount(labels, minlength=num_classes).astype(np.float64)
    with np.errstate(divide='ignore'):
        return 1.0 / (len(labels) - positives), 1.0 / positives  # inf only where the rate is NaN anyway


def bias_metrics(preds: Any, preds_orig: Any, labels: Any, num_classes: int, zero_rule: str = 'epsilon',
                 eps: Optional[float] = None, cev_average: str = 'points_and_coordinates') -> BiasReport:
    """Per-class FPR/FNR of a compressed model and its original on the same labelled examples, their normalised
    changes, CEV and SDE.

    Args:
        preds: the compressed model's predicted labels; ``preds_orig``: the original's; ``labels``: the truth
            (same length, integers in ``[0, num_classes)``).
        zero_rule: ``'epsilon'`` or ``'drop'`` (see :func:`normalised_change`).
        eps: for ``'epsilon'``: ``None`` (default) replaces a zero original FPR of class ``i`` by ``1/negatives_i``
            and a zero FNR by ``1/positives_i``, counted in ``labels``: the resolution of this evaluated set, so the
            change stays comparable across class sizes instead of exploding as a fixed tiny epsilon makes it
            (``1e-6`` turns one error in 100 into a 10^6 % change that swamps CEV). A float: that fixed value.
        cev_average: ``'points_and_coordinates'`` (default, the seed's code's CEV) or ``'points'`` (see :func:`cev`).
    """
    labels_arr = _labels(labels, 'labels', num_classes)
    cm = confusion_matrix(preds, labels_arr, num_classes)
    cm_orig = confusion_matrix(preds_orig, labels_arr, num_classes)
    fpr, fnr = rates_from_confusion(cm)
    fpr_orig, fnr_orig = rates_from_confusion(cm_orig)
    eps_fpr, eps_fnr = _eps(labels_arr, num_classes, eps)
    d_fpr, zero_fpr = normalised_change(fpr, fpr_orig, zero_rule, eps_fpr)
    d_fnr, zero_fnr = normalised_change(fnr, fnr_orig, zero_rule, eps_fnr)
    dropped = [int(i) for i in np.flatnonzero(np.isnan(d_fpr) | np.isnan(d_fnr))]
    if zero_fpr or zero_fnr:
        log.info('bias_metrics: zero original rate (rule %s): FPR classes %s, FNR classes %s', zero_rule, zero_fpr,
                 zero_fnr)
    if dropped:
        log.warning('bias_metrics: classes %s left out of CEV/SDE (%d of %d used)', dropped,
                    num_classes - len(dropped), num_classes)
    n = max(len(labels_arr), 1)
    return BiasReport(num_classes=num_classes, zero_rule=zero_rule, fpr=fpr, fnr=fnr, fpr_orig=fpr_orig,
                      fnr_orig=fnr_orig, d_fpr=d_fpr, d_fnr=d_fnr, cev=cev(d_fpr, d_fnr, cev_average),
                      sde=sde(d_fpr, d_fnr),
                      accuracy=1.0 - fnr, accuracy_orig=1.0 - fnr_orig, top1=float(np.trace(cm)) / n,
                      top1_orig=float(np.trace(cm_orig)) / n,
                      zero_classes={'fpr': zero_fpr, 'fnr': zero_fnr}, dropped=dropped,
                      n_classes_used=num_classes - len(dropped), cev_average=cev_average)


def seed_averaged_cev(preds: Any, preds_orig: Any, labels: Any, num_classes: int, zero_rule: str = 'epsilon',
                      eps: Optional[float] = None, average: str = 'points_and_coordinates') -> float:
    """CEV computed once from seed-averaged rates, as the seed's code did: per class, the FPR and FNR of the
    compressed seeds averaged over the seeds (and likewise the originals'), then one normalised change and one
    :func:`cev`. Not the mean of per-seed CEVs (what a report's interval over seeds is of): averaging the rates first
    cancels part of each seed's own scatter, so it is usually the smaller.

    Args:
        preds: ``[seeds, examples]`` predicted labels of the compressed models (1-D: one seed).
        preds_orig: ``[seeds, examples]`` of the originals (1-D: one original, as the seed's single teacher).
        labels, num_classes, zero_rule, eps: as :func:`bias_metrics` (``eps=None``: ``1/count`` from ``labels``).
        average: which CEV (:func:`cev`).
    """
    labels_arr = _labels(labels, 'labels', num_classes)
    comp, orig = _population(preds, 'preds'), _population(preds_orig, 'preds_orig')

    def mean_rates(population: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rates = [per_class_rates(row, labels_arr, num_classes) for row in population]
        return np.mean([r[0] for r in rates], axis=0), np.mean([r[1] for r in rates], axis=0)

    (fpr, fnr), (fpr_orig, fnr_orig) = mean_rates(comp), mean_rates(orig)
    eps_fpr, eps_fnr = _eps(labels_arr, num_classes, eps)
    d_fpr = normalised_change(fpr, fpr_orig, zero_rule, eps_fpr).values
    d_fnr = normalised_change(fnr, fnr_orig, zero_rule, eps_fnr).values
    return cev(d_fpr, d_fnr, average)


def _population(preds: Any, name: str) -> np.ndarray:
    """``[models, examples]`` int64 labels; a 1-D array is a population of one model."""
    arr = preds.detach().cpu().numpy() if isinstance(preds, torch.Tensor) else np.asarray(preds)
    arr = _labels(arr[None, :] if arr.ndim == 1 else arr, name, ndim=2)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f'{name}: empty population, shape {arr.shape}')
    return arr


def modal_labels(preds: np.ndarray) -> np.ndarray:
    """The most frequent label of each column of ``[models, examples]``; a tie goes to the smallest label."""
    counts = np.zeros((int(preds.max()) + 1, preds.shape[1]), dtype=np.int64)
    columns = np.arange(preds.shape[1])
    for row in preds:  # one label per (model, example): no repeated index within a row
        counts[row, columns] += 1
    return counts.argmax(axis=0)  # argmax returns the first maximum: the smallest label


def pie_modal(preds_compressed: Any, preds_original: Any) -> np.ndarray:
    """PIEs as Hooker et al. define them ("What do compressed deep neural networks forget?", 2019): an example
    whose modal label over a population of compressed models differs from its modal label over a population of
    original models.

    Args:
        preds_compressed: ``[models, examples]`` predicted labels of the compressed population (e.g. seeds).
        preds_original: ``[models, examples]`` of the original population (1-D: a single original model).

    Returns:
        A boolean mask over examples. Ties for the modal label go to the smallest label, in both populations.
    """
    comp, orig = _population(preds_compressed, 'preds_compressed'), _population(preds_original, 'preds_original')
    if comp.shape[1] != orig.shape[1]:
        raise ValueError(f'the populations saw different numbers of examples: {comp.shape[1]} and {orig.shape[1]}')
    return modal_labels(comp) != modal_labels(orig)


def pie_disagreement(preds_students: Any, preds_teacher: Any, rule: str = 'modal') -> np.ndarray:
    """PIEs as the seed's author's code set them up: the examples where the students, trained with several seeds,
    disagree with one teacher's prediction (one teacher, not Hooker et al.'s population of originals), under one of
    three readings of "disagree across seeds":

    * ``'modal'`` (default): the students' modal label (ties to the smallest label) differs from the teacher's
      label: the seeds, taken together, disagree. This is Hooker et al.'s definition (:func:`pie_modal`) with a
      population of one original; it is NOT what the seed's code counted;
    * ``'all'``: every student seed disagrees with the teacher (the narrowest set). This is what the seed's code
      counted: its ``analytics.py`` intersects the per-seed disagreement sets, ``reduce(np.intersect1d, ...)``;
    * ``'any'``: at least one student seed disagrees with the teacher (the widest set, the union of those sets).

    On the same predictions ``'all'`` <= ``'modal'`` <= ``'any'`` (e.g. 41, 106 and 266 PIEs on one example).

    Args:
        preds_students: ``[seeds, examples]`` predicted labels of the students.
        preds_teacher: ``[examples]`` (or ``[1, examples]``) predicted labels of the teacher.

    Returns:
        A boolean mask over examples.
    """
    if rule not in PIE_RULES:
        raise ValueError(f"rule: expected one of {', '.join(PIE_RULES)}, got {rule!r}")
    students, teacher = _population(preds_students, 'preds_students'), _population(preds_teacher, 'preds_teacher')
    if teacher.shape[0] != 1:
        raise ValueError(f'preds_teacher: one teacher expected, got {teacher.shape[0]} rows (use pie_modal)')
    if students.shape[1] != teacher.shape[1]:
        raise ValueError(f'students and teacher saw different numbers of examples: {students.shape[1]} and '
                         f'{teacher.shape[1]}')
    if rule == 'modal':
        return modal_labels(students) != teacher[0]
    disagree = students != teacher
    return disagree.any(axis=0) if rule == 'any' else disagree.all(axis=0)


def count_pies(mask: Any) -> int:
    """The number of PIEs in a boolean mask from :func:`pie_modal` or :func:`pie_disagreement`."""
    return int(np.count_nonzero(np.asarray(mask, dtype=bool)))


def _forward_logits(model: nn.Module, batch: Any) -> torch.Tensor:
    """A Composer model gets ``(inputs, targets)`` (``ComposerClassifier.forward`` unpacks exactly two items, so an
    ``(x, y, index)`` batch loses its index); a plain network gets the inputs."""
    from composer.models import ComposerModel

    out = model(tuple(batch[:2])) if isinstance(model, ComposerModel) else model(batch[0])
    if not isinstance(out, torch.Tensor):
        raise TypeError(f'{type(model).__name__} returned {type(out).__name__}, expected a logits tensor')
    return out


def collect_predictions(model: nn.Module, loader: Iterable, device: Union[str, torch.device, None] = None,
                        max_batches: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels (argmax of the logits) and true labels of a classifier over a loader.

    Args:
        model: a ``ComposerClassifier`` (called on the batch) or a plain ``nn.Module`` (called on the inputs). It
            runs in eval mode under ``torch.no_grad()``; its mode is restored afterwards.
        loader: batches ``(x, y)`` or ``(x, y, index)`` (tuples or lists).
        device: moves the model there first; ``None`` leaves it where it is. Batches follow the model.
        max_batches: stop after this many batches (``None``: all).

    Returns:
        ``(preds, labels)``, int64 numpy arrays over the examples in loader order.
    """
    if device is not None:
        model.to(device)
    dev = _model_device(model)
    was_training = model.training
    preds, labels = [], []
    model.eval()
    try:
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                    raise ValueError('collect_predictions: batches must be (x, y) or (x, y, index)')
                logits = _forward_logits(model, _to_device(batch, dev))
                preds.append(logits.argmax(dim=-1).cpu())
                labels.append(torch.as_tensor(batch[1]).cpu())
    finally:
        model.train(was_training)
    if not preds:
        raise ValueError('the loader yielded no batch')
    return torch.cat(preds).numpy().astype(np.int64), torch.cat(labels).numpy().astype(np.int64)
