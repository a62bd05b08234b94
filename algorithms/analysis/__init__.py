"""Representation similarity of layers: SVCCA (Raghu et al. 2017, google/svcca's procedure) and linear CKA
(Kornblith et al. 2019), per layer of two models on the same inputs, and a heat-map. See README.md.

The similarity functions need only torch and numpy; ``layer_similarity`` also uses ``algorithms.feature_taps``;
the heat-map needs matplotlib (imported when called).
"""

from .activations import CONV_MODES, conv_activations
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
]
