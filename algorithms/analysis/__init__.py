"""Representation similarity of layers: SVCCA (Raghu et al. 2017, google/svcca's procedure) and linear CKA
(Kornblith et al. 2019), per layer of two models on the same inputs, and a heat-map. Bias of a compressed model
against its original: per-class FPR/FNR changes, CEV, SDE, PIEs (both definitions) and their scatter. See README.md.

The similarity functions need only torch and numpy; ``layer_similarity`` also uses ``algorithms/common/`` and the
similarity monitor ``algorithms/distillation/`` (its checkpoint loader): copy this folder with those two. The
heat-map and the bias scatter need matplotlib (imported when called).
"""

from .activations import CONV_MODES, conv_activations
from .bias import (CEV_AVERAGES, PIE_RULES, ZERO_RULES, BiasReport, Change, bias_metrics, cev, collect_predictions,
                   confusion_matrix, count_pies, modal_labels, normalised_change, per_class_rates, pie_disagreement,
                   pie_modal, rates_from_confusion, sde, seed_averaged_cev)
from .bias_plot import EllipseParams, bias_scatter, chi2_2dof_quantile, ellipse_params
from .cka import linear_cka
from .layer_similarity import METHODS, collect_activations, layer_similarity
from .plots import similarity_heatmap
from .similarity_monitor import SimilarityMonitor
from .svcca import SVCCAResult, cca_coefficients, svcca

__all__ = [
    'svcca',
    'SVCCAResult',
    'cca_coefficients',
    'linear_cka',
    'conv_activations',
    'CONV_MODES',
    'collect_activations',
    'layer_similarity',
    'METHODS',
    'similarity_heatmap',
    'SimilarityMonitor',
    'confusion_matrix',
    'rates_from_confusion',
    'per_class_rates',
    'normalised_change',
    'Change',
    'ZERO_RULES',
    'cev',
    'CEV_AVERAGES',
    'seed_averaged_cev',
    'sde',
    'bias_metrics',
    'BiasReport',
    'pie_modal',
    'pie_disagreement',
    'PIE_RULES',
    'modal_labels',
    'count_pies',
    'collect_predictions',
    'bias_scatter',
    'ellipse_params',
    'EllipseParams',
    'chi2_2dof_quantile',
]
