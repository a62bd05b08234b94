"""Feature distillation: losses on intermediate features, as :class:`~algorithms.distillation.DistillationTerm`\\ s
that compose with knowledge distillation (their terms add up in one ``state.loss`` dict).

Today: FitNets hints (a trainable regressor head). AT, SP, FSP, PKT and CRD plug into the same seam.
"""

from .fitnets import FitNets, hint_loss

__all__ = ['FitNets', 'hint_loss']
