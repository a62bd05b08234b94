"""Layer-wise unstructured pruning as Composer Algorithms: magnitude pruning (one-shot and iterative), post-pruning
re-initialisation and random sparse initialisation, with the mask utilities and cost measures they use.

The seed's chapter II ("pruning is not compression"); see README.md (the method card). The package imports torch,
Composer, ``algorithms/feature_taps.py`` (wrapper names) and ``algorithms/checkpoint_loading.py`` (the
``weights_only=True`` loader): copy those two files with the folder into any project.
"""

from .magnitude_pruning import MagnitudePruning, parse_schedule
from .masks import (PRUNABLE_TYPES, apply_masks, global_sparsity, layer_sparsity, magnitude_masks, magnitude_prune,
                    mask_gradients, prunable_layers, random_masks)
from .measure import count_macs, count_parameters, time_forward
from .sparse_training import FixedMaskTraining, RandomSparseInit, checkpoint_model_state, masks_from_checkpoint

__all__ = [
    'MagnitudePruning',
    'FixedMaskTraining',
    'RandomSparseInit',
    'parse_schedule',
    'prunable_layers',
    'magnitude_masks',
    'random_masks',
    'apply_masks',
    'mask_gradients',
    'layer_sparsity',
    'global_sparsity',
    'magnitude_prune',
    'masks_from_checkpoint',
    'checkpoint_model_state',
    'count_parameters',
    'count_macs',
    'time_forward',
    'PRUNABLE_TYPES',
]
