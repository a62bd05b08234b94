"""Feature distillation: losses on intermediate features, as :class:`~algorithms.distillation.DistillationTerm`\\ s
that compose with knowledge distillation (their terms add up in one ``state.loss`` dict).

FitNets hints (a trainable regressor head), attention transfer (AT), similarity preserving (SP) and probabilistic
knowledge transfer (PKT), with RepDistiller's formulas and weights. FSP and CRD plug into the same seam.
"""

from .feature_terms import PKT, AttentionTransfer, FeatureDistillation, SimilarityPreserving
from .fitnets import FitNets, hint_loss
from .losses import attention_map, attention_transfer_loss, pkt_loss, similarity_preserving_loss

__all__ = ['FitNets', 'hint_loss', 'FeatureDistillation', 'AttentionTransfer', 'SimilarityPreserving', 'PKT',
           'attention_map', 'attention_transfer_loss', 'similarity_preserving_loss', 'pkt_loss']
