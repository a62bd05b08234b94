"""Knowledge distillation from a pool of teachers, as a stand-alone Composer algorithm.

Hinton et al., "Distilling the Knowledge in a Neural Network" (2015); teacher pools and scheduled ("early-stop")
distillation after Blakeney et al., "Reduce, Reuse, Recycle: Improving Training Efficiency with Distillation" (2022).
See README.md (the method card). The package imports only torch and Composer: copy the folder into any project.
"""

from .knowledge_distillation import (
    KnowledgeDistillation,
    add_distillation_loss,
    distillation_loss,
    distillation_mask,
)
from .losses import IGNORE_INDEX, KD_LOSSES, kl_divergence_loss, mse_logits_loss
from .teacher_pool import POOL_MODES, TeacherPool, extract_logits, teacher_forward
from .teachers import load_teacher_weights

__all__ = [
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
]
