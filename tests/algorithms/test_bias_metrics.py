"""Bias metrics of a compressed model against its original (per-class FPR/FNR, normalised change, CEV, SDE),
the zero rules, both PIE definitions, the confidence ellipse and the scatter (fast, CPU)."""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from composer.models import ComposerClassifier
from torch import nn

from algorithms.analysis import (bias_metrics, bias_scatter, cev, chi2_2dof_quantile, collect_predictions,
                                 confusion_matrix, count_pies, ellipse_params, modal_labels, normalised_change,
                                 per_class_rates, pie_disagreement, pie_modal, rates_from_confusion, sde,
                                 seed_averaged_cev)

# Ten examples of three classes: 4 of class 0, 4 of class 1, 2 of class 2 (negatives per class: 6, 6, 8).
# Rows = true class, columns = predicted.
CM_A = np.array([[3, 0, 1],
                 [1, 3, 0],
                 [0, 1, 1]])
# A: TP [3, 3, 1], FN = row - TP = [1, 1, 1], FP = column - TP = [4-3, 4-3, 2-1] = [1, 1, 1]
#    FPR = FP / negatives = [1/6, 1/6, 1/8], FNR = FN / positives = [1/4, 1/4, 1/2], top-1 7/10
CM_B = np.array([[2, 2, 0],
                 [0, 4, 0],
                 [1, 1, 0]])
# B: columns [3, 7, 0]; TP [2, 4, 0], FN [2, 0, 2], FP [1, 3, 0]
#    FPR = [1/6, 3/6, 0], FNR = [2/4, 0, 2/2], top-1 6/10


def expand(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(preds, labels)`` realising a confusion matrix, in class order."""
    labels, preds = [], []
    for t, row in enumerate(cm):
        for p, count in enumerate(row):
            labels += [t] * int(count)
            preds += [p] * int(count)
    return np.array(preds), np.array(labels)


def pair(cm: np.ndarray, cm_orig: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(preds, preds_orig, labels)`` for two models on the same examples (same row sums)."""
    assert (cm.sum(axis=1) == cm_orig.sum(axis=1)).all()
    preds, labels = expand(cm)
    preds_orig, labels_orig = expand(cm_orig)
    assert (labels == labels_orig).all()
    return preds, preds_orig, labels


# ---- confusion matrix and rates ----

def test_confusion_matrix_and_rates_by_hand():
    preds, labels = expand(CM_B)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))  # the order of examples does not matter
    assert (confusion_matrix(preds[order], labels[order], 3) == CM_B).all()
    fpr, fnr = per_class_rates(torch.as_tensor(preds), torch.as_tensor(labels), 3)  # torch in, float64 numpy out
    assert fpr.dtype == np.float64 and fnr.dtype == np.float64
    np.testing.assert_allclose(fpr, [1 / 6, 3 / 6, 0.0])
    np.testing.assert_allclose(fnr, [2 / 4, 0.0, 2 / 2])
    fpr_a, fnr_a = rates_from_confusion(CM_A)
    np.testing.assert_allclose(fpr_a, [1 / 6, 1 / 6, 1 / 8])
    np.testing.assert_allclose(fnr_a, [1 / 4, 1 / 4, 1 / 2])


def test_rates_match_a_brute_force_one_vs_rest_count():
    rng = np.random.default_rng(1)
    labels, preds = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    fpr, fnr = per_class_rates(preds.tolist(), labels.tolist(), 5)
    for i in range(5):
        pos, neg = labels == i, labels != i
        assert fpr[i] == pytest.approx(np.sum((preds == i) & neg) / np.sum(neg))
        assert fnr[i] == pytest.approx(np.sum((preds != i) & pos) / np.sum(pos))


def test_a_class_absent_from_the_labels_has_an_undefined_fnr():
    fpr, fnr = per_class_rates([0, 1, 2, 0], [0, 1, 1, 0], 3)  # no example of class 2
    assert math.isnan(fnr[2]) and fpr[2] == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match='out of range'):
        per_class_rates([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match='differ in length'):
        per_class_rates([0, 1, 1], [0, 1], 3)


# ---- normalised change, CEV, SDE: the 3-class case worked by hand ----

def test_cev_and_sde_by_hand():
    # B compressed, A original (no zero original rate):
    # dFPR = 100 (B - A)/A = [0, 100 (3/6 - 1/6)/(1/6), 100 (0 - 1/8)/(1/8)] = [0, 200, -100]
    # dFNR = [100 (1/2 - 1/4)/(1/4), 100 (0 - 1/4)/(1/4), 100 (1 - 1/2)/(1/2)] = [100, -100, 100]
    # points (0, 100), (200, -100), (-100, 100); mean (100/3, 100/3); deviations in units of 100/3:
    # (-1, 2), (5, -4), (-4, 2) -> squared norms 5, 41, 20 -> sum 66 (100/3)^2 = 220000/3;
    # CEV = that / (3 points x 2 coordinates) = 110000/9 = 12222.2 (the seed's), / 3 points = 220000/9 ('points')
    # SDE = (|100 - 0| + |-100 - 200| + |100 + 100|) / 3 / sqrt(2) = 200 / sqrt(2) = 141.42
    report = bias_metrics(*pair(CM_B, CM_A), num_classes=3)
    np.testing.assert_allclose(report.d_fpr, [0.0, 200.0, -100.0], atol=1e-9)
    np.testing.assert_allclose(report.d_fnr, [100.0, -100.0, 100.0], atol=1e-9)
    assert report.cev == pytest.approx(110000 / 9) and report.cev_average == 'points_and_coordinates'
    assert report.sde == pytest.approx(200 / math.sqrt(2))
    assert cev(report.d_fpr, report.d_fnr) == pytest.approx(110000 / 9)
    assert cev(report.d_fpr, report.d_fnr, average='points') == pytest.approx(220000 / 9)
    points = bias_metrics(*pair(CM_B, CM_A), num_classes=3, cev_average='points')
    assert points.cev == pytest.approx(220000 / 9) and points.sde == report.sde
    assert sde(report.d_fpr, report.d_fnr) == pytest.approx(200 / math.sqrt(2))
    np.testing.assert_allclose(report.accuracy, [0.5, 1.0, 0.0])  # per-class recall = 1 - FNR
    np.testing.assert_allclose(report.accuracy_orig, [0.75, 0.75, 0.5])
    assert (report.top1, report.top1_orig) == (pytest.approx(0.6), pytest.approx(0.7))
    assert report.zero_classes == {'fpr': [], 'fnr': []} and report.dropped == [] and report.n_classes_used == 3
    # Identical models: no change, no bias.
    same = bias_metrics(*pair(CM_A, CM_A), num_classes=3)
    assert same.cev == 0.0 and same.sde == 0.0


def test_cev_and_sde_leave_out_nan_classes_and_divide_by_the_rest():
    # Class 2 left out: points (0, 0), (10, 10), (30, 30); mean (40/3, 40/3);
    # 'points': 2 ((40/3)^2 + (10/3)^2 + (50/3)^2) / 3 = 2 * 4200/9 / 3 = 311.1, the seed's half of it (3 x 2
    # entries); SDE = 0 (all on the diagonal).
    assert cev([0, 10, np.nan, 30], [0, 10, 5, 30], average='points') == pytest.approx(8400 / 27)
    assert cev([0, 10, np.nan, 30], [0, 10, 5, 30]) == pytest.approx(4200 / 27)
    assert sde([0, 10, np.nan, 30], [0, 10, 5, 30]) == 0.0
    # SDE of (0, 4) and (6, 0) with a NaN class: (4 + 6) / 2 / sqrt(2), n = 2 not 3.
    assert sde([0, 6, 1], [4, 0, np.nan]) == pytest.approx(5 / math.sqrt(2))
    assert math.isnan(cev([np.nan], [1.0])) and math.isnan(sde([np.nan], [1.0]))


def sklearn_mean_squared_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """sklearn's ``mean_squared_error`` (default ``multioutput='uniform_average'``), written out: per output column
    the mean of the squared errors over the rows, then the mean over the columns: the mean over every entry."""
    return float(np.mean(np.mean((np.asarray(y_true) - np.asarray(y_pred)) ** 2, axis=0)))


def seed_notebook_cev(d_fpr, d_fnr) -> float:
    """The seed's notebook's CEV, transcribed: ``mean_squared_error`` of the ``classes x 2`` points (dFPR, dFNR)
    against their mean point repeated for every class."""
    points = np.stack([d_fpr, d_fnr], axis=1)
    return sklearn_mean_squared_error(points, np.tile(points.mean(axis=0), (len(points), 1)))


def test_cev_default_is_the_seeds_code_and_points_is_twice_it():
    # Points (300, 100), (200, 0), (0, 400); mean (500/3, 500/3); deviations in units of 100/3: (4, -2), (1, -5),
    # (-5, 7) -> squared norms 20, 26, 74 = 120 (100/3)^2 = 400000/3. 'points': / 3 = 44,444.44; the seed's
    # (mean over the 3 x 2 entries): / 6 = 22,222.22. SDE = (200 + 200 + 400) / 3 / sqrt(2) = 188.56 either way.
    d_fpr, d_fnr = [300.0, 200.0, 0.0], [100.0, 0.0, 400.0]
    assert cev(d_fpr, d_fnr) == pytest.approx(200000 / 9) == pytest.approx(22222.22, abs=0.01)
    assert cev(d_fpr, d_fnr, average='points_and_coordinates') == pytest.approx(200000 / 9)
    assert cev(d_fpr, d_fnr, average='points') == pytest.approx(400000 / 9) == pytest.approx(44444.44, abs=0.01)
    assert seed_notebook_cev(d_fpr, d_fnr) == pytest.approx(cev(d_fpr, d_fnr), rel=1e-12)
    assert sde(d_fpr, d_fnr) == pytest.approx(188.56, abs=0.005)
    rng = np.random.default_rng(3)
    for n in (2, 10, 100):
        a, b = rng.normal(0, 300, n), rng.normal(50, 100, n)
        assert cev(a, b) == pytest.approx(seed_notebook_cev(a, b), rel=1e-12)
        assert cev(a, b, average='points') == pytest.approx(2 * seed_notebook_cev(a, b), rel=1e-12)
    with pytest.raises(ValueError, match='average: expected one of points_and_coordinates, points'):
        cev(d_fpr, d_fnr, average='coordinates')


def test_seed_averaged_cev_by_hand():
    # Compressed seeds B and A, originals A and A. Seed-averaged rates: FPR ((1/6, 1/2, 0) + (1/6, 1/6, 1/8)) / 2 =
    # (1/6, 1/3, 1/16), FNR ((1/2, 0, 1) + (1/4, 1/4, 1/2)) / 2 = (3/8, 1/8, 3/4); the original's (1/6, 1/6, 1/8),
    # (1/4, 1/4, 1/2). dFPR = (0, 100, -50), dFNR = (50, -50, 50); mean (50/3, 50/3); deviations in units of 50/3:
    # (-1, 2), (5, -4), (-4, 2) -> 66 (50/3)^2 = 55000/3; the seed's CEV: / 6 = 27500/9 = 3055.6 ('points' 6111.1).
    # The mean of per-seed CEVs instead: (110000/9 + 0) / 2 = 6111.1, twice as large.
    preds_b, preds_a, labels = pair(CM_B, CM_A)
    comp, orig = np.stack([preds_b, preds_a]), np.stack([preds_a, preds_a])
    assert seed_averaged_cev(comp, orig, labels, 3) == pytest.approx(27500 / 9)
    assert seed_averaged_cev(comp, preds_a, labels, 3) == pytest.approx(27500 / 9)  # one original, 1-D
    assert seed_averaged_cev(comp, orig, labels, 3, average='points') == pytest.approx(55000 / 9)
    per_seed = np.mean([bias_metrics(p, preds_a, labels, 3).cev for p in comp])
    assert per_seed == pytest.approx(110000 / 18)
    # One seed: the same number as bias_metrics.
    one = bias_metrics(preds_b, preds_a, labels, 3).cev
    assert seed_averaged_cev(preds_b, preds_a, labels, 3) == pytest.approx(one)


def test_zero_rule_epsilon_uses_the_resolution_of_the_evaluated_set():
    # A compressed, B original: B has FPR_2 = 0 and FNR_1 = 0.
    # eps for FPR_2 = 1/negatives_2 = 1/8: dFPR_2 = 100 (1/8 - 0)/(1/8) = 100 (one false positive)
    # eps for FNR_1 = 1/positives_1 = 1/4: dFNR_1 = 100 (1/4 - 0)/(1/4) = 100 (one false negative)
    # the rest: dFPR = [100 (1/6 - 1/6)/(1/6), 100 (1/6 - 1/2)/(1/2)] = [0, -200/3]
    #           dFNR_0 = 100 (1/4 - 1/2)/(1/2) = -50, dFNR_2 = 100 (1/2 - 1)/1 = -50
    # points (0, -50), (-200/3, 100), (100, -50); mean (100/9, 0)
    # CEV = ((100^2 + 700^2 + 800^2)/81 + 50^2 + 100^2 + 50^2) / (3 x 2) = (1140000/81 + 15000) / 6 = 4845.68
    # SDE = (50 + 500/3 + 150) / 3 / sqrt(2) = 1100/9 / sqrt(2) = 86.42
    report = bias_metrics(*pair(CM_A, CM_B), num_classes=3)
    np.testing.assert_allclose(report.d_fpr, [0.0, -200 / 3, 100.0], atol=1e-9)
    np.testing.assert_allclose(report.d_fnr, [-50.0, 100.0, -50.0], atol=1e-9)
    assert report.zero_classes == {'fpr': [2], 'fnr': [1]} and report.dropped == []
    assert report.cev == pytest.approx((1140000 / 81 + 15000) / 6)
    assert report.sde == pytest.approx(1100 / 9 / math.sqrt(2))
    # A fixed epsilon instead: dFPR_2 = 100 (1/8)/0.01 = 1250, dFNR_1 = 100 (1/4)/0.01 = 2500.
    fixed = bias_metrics(*pair(CM_A, CM_B), num_classes=3, eps=0.01)
    assert fixed.d_fpr[2] == pytest.approx(1250.0) and fixed.d_fnr[1] == pytest.approx(2500.0)
    assert fixed.d_fpr[1] == pytest.approx(-200 / 3)  # a non-zero original is untouched


def test_zero_rule_drop_leaves_the_class_out():
    # Classes 1 (FNR_orig = 0) and 2 (FPR_orig = 0) dropped; class 0 alone: point (0, -50).
    # CEV = 0 (one point), SDE = |-50 - 0| / 1 / sqrt(2) (n = 1, not 3).
    report = bias_metrics(*pair(CM_A, CM_B), num_classes=3, zero_rule='drop')
    assert math.isnan(report.d_fpr[2]) and math.isnan(report.d_fnr[1])
    assert report.d_fpr[1] == pytest.approx(-200 / 3) and report.d_fnr[2] == pytest.approx(-50.0)
    assert report.dropped == [1, 2] and report.n_classes_used == 1
    assert report.zero_classes == {'fpr': [2], 'fnr': [1]}
    assert report.cev == 0.0 and report.sde == pytest.approx(50 / math.sqrt(2))
    plain = report.as_dict()
    text = json.dumps(plain, allow_nan=False)  # NaN became None: strict JSON
    assert plain['d_fpr'][2] is None and plain['dropped'] == [1, 2] and isinstance(plain['cev'], float)
    assert json.loads(text)['fpr_orig'] == pytest.approx([1 / 6, 1 / 2, 0.0])


def test_normalised_change_rules():
    # Both zero: the epsilon replaces the denominator only, so no change stays 0 (not -100).
    change = normalised_change([0.0, 0.3, 0.2], [0.0, 0.0, 0.1], eps=[0.05, 0.1, 9.0])
    np.testing.assert_allclose(change.values, [0.0, 300.0, 100.0])
    assert change.affected == [0, 1]
    dropped = normalised_change([0.0, 0.3, 0.2], [0.0, 0.0, 0.1], zero_rule='drop')
    assert np.isnan(dropped.values[:2]).all() and dropped.values[2] == pytest.approx(100.0)
    with pytest.raises(ValueError, match=r'classes \[1\]'):
        normalised_change([0.1, 0.2], [0.1, 0.0])
    with pytest.raises(ValueError, match='zero_rule'):
        normalised_change([0.1], [0.1], zero_rule='ignore')


# ---- PIEs ----

COMPRESSED = np.array([[0, 2, 2, 1, 0],   # [models, examples]
                       [0, 2, 0, 1, 1],
                       [1, 2, 0, 1, 2]])
# modal over compressed: [0, 2, 0, 1, 0]   (column 4 is a three-way tie: the smallest label, 0)
ORIGINALS = np.array([[0, 1, 2, 1, 0],
                      [0, 1, 1, 1, 0],
                      [0, 2, 2, 0, 2]])
# modal over originals: [0, 1, 2, 1, 0]
TEACHER = np.array([0, 2, 2, 0, 2])


def test_modal_labels_break_ties_by_the_smallest_label():
    np.testing.assert_array_equal(modal_labels(np.array([[3, 1, 2], [1, 3, 2]])), [1, 1, 2])
    np.testing.assert_array_equal(modal_labels(COMPRESSED), [0, 2, 0, 1, 0])


def test_pie_modal_is_hookers_population_definition():
    mask = pie_modal(COMPRESSED, ORIGINALS)  # [0, 2, 0, 1, 0] vs [0, 1, 2, 1, 0]
    np.testing.assert_array_equal(mask, [False, True, True, False, False])
    assert mask.dtype == bool and count_pies(mask) == 2
    assert count_pies(pie_modal(torch.as_tensor(ORIGINALS), ORIGINALS)) == 0
    with pytest.raises(ValueError, match='different numbers of examples'):
        pie_modal(COMPRESSED, ORIGINALS[:, :4])


def test_pie_disagreement_rules():
    # students != teacher [0, 2, 2, 0, 2]:  row 0 [F, F, F, T, T], row 1 [F, F, T, T, T], row 2 [T, F, T, T, F]
    np.testing.assert_array_equal(pie_disagreement(COMPRESSED, TEACHER), [False, False, True, True, True])
    np.testing.assert_array_equal(pie_disagreement(COMPRESSED, TEACHER, rule='any'), [True, False, True, True, True])
    np.testing.assert_array_equal(pie_disagreement(COMPRESSED, TEACHER, rule='all'),
                                  [False, False, False, True, False])
    # 'modal' is pie_modal with a population of one original.
    np.testing.assert_array_equal(pie_disagreement(COMPRESSED, TEACHER), pie_modal(COMPRESSED, TEACHER))
    with pytest.raises(ValueError, match='one teacher'):
        pie_disagreement(COMPRESSED, ORIGINALS)
    with pytest.raises(ValueError, match='rule'):
        pie_disagreement(COMPRESSED, TEACHER, rule='most')


def seed_analytics_pies(preds_students: np.ndarray, preds_teacher: np.ndarray) -> np.ndarray:
    """The seed's ``analytics.py`` count, rewritten: per seed the indices where the student disagrees with the
    teacher, intersected over seeds with ``reduce(np.intersect1d, ...)``."""
    return functools.reduce(np.intersect1d, [np.flatnonzero(s != preds_teacher) for s in preds_students])


def test_pie_rule_all_is_what_the_seeds_code_counted_and_the_docs_say_so():
    rng = np.random.default_rng(0)
    for _ in range(20):
        teacher = rng.integers(0, 4, 300)
        students = np.where(rng.random((5, 300)) < 0.4, rng.integers(0, 4, (5, 300)), teacher)
        all_mask = pie_disagreement(students, teacher, rule='all')
        np.testing.assert_array_equal(np.flatnonzero(all_mask), seed_analytics_pies(students, teacher))
        modal, any_ = (count_pies(pie_disagreement(students, teacher, rule=r)) for r in ('modal', 'any'))
        assert count_pies(all_mask) <= modal <= any_
    # The docs name 'all' as the seed's code's rule and 'modal' as Hooker et al.'s, never the other way round.
    readme = (Path(__file__).resolve().parents[2] / 'algorithms' / 'analysis' / 'README.md').read_text()
    for text in (pie_disagreement.__doc__, readme):
        flat = ' '.join(text.split())
        assert re.search(r"'all'`?`?: every (student )?seed disagrees[^.]*\. (\*\*)?This is what the seed's code "
                         r"counted", flat), flat
        assert re.search(r"'modal'`?`? \(default\)[^.]*\.[^.]*Hooker et al\.'s definition", flat), flat
        assert not re.search(r"'modal'[^.]*what the seed's (author's )?code counted", flat)


# ---- the ellipse and the scatter ----

def test_ellipse_params_of_a_known_covariance():
    assert chi2_2dof_quantile(0.95) == pytest.approx(5.991, abs=5e-4)
    q = chi2_2dof_quantile(0.95)
    # (5 +- 3, -2), (5, -2 +- 1): mean (5, -2); sample variances (n - 1 = 3): var_x = 2*9/3 = 6, var_y = 2/3; cov 0.
    points = np.array([[8.0, -2.0], [2.0, -2.0], [5.0, -1.0], [5.0, -3.0]])
    e = ellipse_params(points)
    assert e.centre == (pytest.approx(5.0), pytest.approx(-2.0))
    assert e.width == pytest.approx(2 * math.sqrt(q * 6.0))
    assert e.height == pytest.approx(2 * math.sqrt(q * 2 / 3))
    assert e.angle == pytest.approx(0.0, abs=1e-9) or e.angle == pytest.approx(180.0)
    assert ellipse_params(points[:, ::-1]).angle == pytest.approx(90.0)  # major axis now along y
    # Along the diagonal: (+-2, +-2) and (-0.5, 0.5), (0.5, -0.5): major axis at 45 degrees, variance 16/3 along it.
    diagonal = np.array([[-2.0, -2.0], [2.0, 2.0], [-0.5, 0.5], [0.5, -0.5]])
    d = ellipse_params(diagonal)
    assert d.angle == pytest.approx(45.0)
    assert d.width == pytest.approx(2 * math.sqrt(q * 16 / 3))
    assert ellipse_params(points, level=0.5).width == pytest.approx(2 * math.sqrt(2 * math.log(2) * 6.0))


def test_bias_scatter_writes_a_png(tmp_path):
    pruned = bias_metrics(*pair(CM_B, CM_A), num_classes=3)
    changes = {'pruned': (pruned.d_fpr, pruned.d_fnr), 'KD': ([0.0, 10.0, -5.0, np.nan], [2.0, 8.0, -1.0, 4.0])}
    path = bias_scatter(changes, tmp_path / 'plots' / 'bias.png', title='toy')
    assert path == tmp_path / 'plots' / 'bias.png'
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and path.stat().st_size > 1000


# ---- predictions of a model over a loader ----

def test_collect_predictions_of_a_known_linear_model():
    linear = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))  # logits (x0, x1, -x0 - x1)
    x = torch.tensor([[2.0, 1.0], [0.0, 3.0], [-1.0, -1.0], [1.0, 2.0], [5.0, -1.0]])
    y = torch.tensor([0, 0, 2, 1, 2])
    expected = [0, 1, 2, 1, 0]  # argmax of (2, 1, -3), (0, 3, -3), (-1, -1, 2), (1, 2, -3), (5, -1, -4)
    loader = [(x[:3], y[:3]), (x[3:], y[3:])]
    linear.train()
    preds, labels = collect_predictions(linear, loader)
    assert preds.dtype == np.int64 and labels.dtype == np.int64
    np.testing.assert_array_equal(preds, expected)
    np.testing.assert_array_equal(labels, y.numpy())
    assert linear.training  # its mode is restored
    # A ComposerClassifier called on (x, y, index) batches gives the same answer.
    model = ComposerClassifier(linear, num_classes=3)
    indexed = [(x[:2], y[:2], torch.arange(2)), [x[2:], y[2:], torch.arange(2, 5)]]
    preds_c, labels_c = collect_predictions(model, indexed, device='cpu')
    np.testing.assert_array_equal(preds_c, expected)
    np.testing.assert_array_equal(labels_c, y.numpy())
    assert collect_predictions(model, indexed, max_batches=1)[0].tolist() == expected[:2]
    report = bias_metrics(preds, labels, labels, num_classes=3)  # against a perfect "original": class 0 FNR 1/2
    assert report.top1 == pytest.approx(3 / 5) and report.fnr[0] == pytest.approx(0.5)


def test_readme_bias_example_runs(tmp_path, monkeypatch):
    readme = Path(__file__).resolve().parents[2] / 'algorithms' / 'analysis' / 'README.md'
    section = readme.read_text().split('## Bias metrics', 1)[1]
    blocks = re.findall(r'```python\n(.*?)```', section, flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(readme), 'exec'), {'__name__': 'readme'})
    assert (tmp_path / 'bias.png').is_file()
