"""Distillation as stand-alone Composer algorithms: knowledge distillation from a pool of teachers, and the seams
every other distillation method plugs into.

Hinton et al., "Distilling the Knowledge in a Neural Network" (2015); teacher pools and scheduled ("early-stop")
distillation after Blakeney et al., "Reduce, Reuse, Recycle: Improving Training Efficiency with Distillation" (2022).
See README.md (the method card). The package imports torch, Composer and ``algorithms/common/``: copy this folder
and ``algorithms/common/`` into your project.

The seams: :class:`DistillationTerm` (one weighted loss term keyed by name, a window, a teacher pool, feature taps,
trainable heads), the loss signature ``fn(student_io, teacher_io, batch)`` over :class:`ModelIO`, and
:func:`add_distillation_loss`, which composes terms into one ``state.loss`` dict.
"""

from .distillation_term import DistillationTerm
from .knowledge_distillation import KnowledgeDistillation, distillation_loss, distillation_mask
from .loss_dict import add_distillation_loss
from .losses import IGNORE_INDEX, KD_LOSSES, kl_divergence_loss, mse_logits_loss
from .model_io import DistillationLossFn, ModelIO, extract_logits
from .sparse_targets import SparseTargets, sampled_targets, sparse_kl_loss, topk_probabilities, topk_targets
from .teacher_cache import (CachedTeacher, CachedTeacherPool, TeacherCache, TeacherCacheMismatch,
                            bytes_per_example)
from .teacher_pool import POOL_MODES, TeacherPool, teacher_forward
from .teachers import load_teacher_weights

__all__ = [
    'DistillationTerm',
    'DistillationLossFn',
    'ModelIO',
    'KnowledgeDistillation',
    'distillation_loss',
    'distillation_mask',
    'add_distillation_loss',
    'kl_divergence_loss',
    'mse_logits_loss',
    'KD_LOSSES',
    'IGNORE_INDEX',
    'TeacherPool',
    'POOL_MODES',
    'teacher_forward',
    'extract_logits',
    'load_teacher_weights',
    'SparseTargets',
    'sparse_kl_loss',
    'topk_targets',
    'topk_probabilities',
    'sampled_targets',
    'TeacherCache',
    'CachedTeacher',
    'CachedTeacherPool',
    'TeacherCacheMismatch',
    'bytes_per_example',
]
