"""Feature distillation: losses on intermediate features, as :class:`~algorithms.distillation.DistillationTerm`\\ s
that compose with knowledge distillation (their terms add up in one ``state.loss`` dict).

FitNets hints (a trainable regressor head), attention transfer (AT), similarity preserving (SP), probabilistic
knowledge transfer (PKT), FSP (an initialisation stage) and CRD (embedding heads, memory banks, sample indices),
with RepDistiller's formulas and weights. Copy this folder with ``algorithms/distillation/`` and
``algorithms/common/`` (see README.md, the method card).
"""

from .crd import CRD, ContrastMemory, Embed, split_index
from .feature_terms import PKT, AttentionTransfer, FeatureDistillation, SimilarityPreserving
from .fitnets import FitNets, hint_loss
from .fsp import FSP
from .losses import (attention_map, attention_transfer_loss, contrast_loss, fsp_loss, fsp_matrices, pkt_loss,
                     similarity_preserving_loss)

__all__ = ['FitNets', 'hint_loss', 'FeatureDistillation', 'AttentionTransfer', 'SimilarityPreserving', 'PKT',
           'FSP', 'CRD', 'Embed', 'ContrastMemory', 'split_index', 'attention_map', 'attention_transfer_loss',
           'similarity_preserving_loss', 'pkt_loss', 'fsp_matrices', 'fsp_loss', 'contrast_loss']
