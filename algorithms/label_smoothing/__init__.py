"""Label smoothing fused into torch's cross-entropy (same loss and weights as Composer's ``LabelSmoothing``)."""

from .label_smoothing import LabelSmoothing

__all__ = ['LabelSmoothing']
