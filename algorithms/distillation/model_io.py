"""What a distillation loss sees of a model on one batch: its outputs, its logits and its tapped features.

Every distillation loss of the project has one signature, ``fn(student_io, teacher_io, batch) -> Tensor``: logits
are one feature among others, so logit losses (KD), feature losses (AT, SP, PKT, FitNets, CRD) and anything a user
writes plug into the same :class:`~algorithms.distillation.DistillationTerm`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .sparse_targets import SparseTargets

__all__ = ['ModelIO', 'DistillationLossFn', 'extract_logits']


def extract_logits(outputs: Any) -> torch.Tensor:
    """The logits in a model's output: a tensor, an object with ``.logits`` (HF ``ModelOutput``), a mapping with a
    ``'logits'`` key, or a tuple/list whose first element is the logits. A cache's sparse targets
    (:class:`~algorithms.distillation.sparse_targets.SparseTargets`) stand for the logits as they are: the KD losses
    read them."""
    if isinstance(outputs, (torch.Tensor, SparseTargets)):
        return outputs  # type: ignore[return-value]
    logits = getattr(outputs, 'logits', None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(outputs, Mapping) and isinstance(outputs.get('logits'), torch.Tensor):
        return outputs['logits']
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise TypeError(f'cannot find logits in a model output of type {type(outputs).__name__}: expected a tensor, '
                    'an object with .logits, a mapping with "logits", or a tuple whose first element is the logits')


@dataclass
class ModelIO:
    """One model's view of one batch.

    Attributes:
        outputs: what the model's forward returned (for a teacher pool: the mean of the selected teachers' logits).
        features: ``{module path: output}`` of the modules tapped by name (see :class:`algorithms.common.feature_taps.FeatureTaps`).
        inputs: ``{module path: first positional input}`` of the same modules.
    """

    outputs: Any
    features: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def logits(self) -> torch.Tensor:
        return extract_logits(self.outputs)

    def feature(self, name: str) -> torch.Tensor:
        """The output of module ``name``; a ``KeyError`` that says the module did not run if it is missing."""
        if name not in self.features:
            raise KeyError(f'feature {name!r} was not captured in this forward (tapped: {sorted(self.features)}); '
                           'did the module run?')
        return self.features[name]


#: ``fn(student_io, teacher_io, batch) -> scalar tensor``: the seam every distillation loss plugs into.
DistillationLossFn = Callable[[ModelIO, ModelIO, Any], torch.Tensor]
