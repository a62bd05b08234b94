"""Pruning as Composer Algorithms: layer-wise unstructured magnitude pruning (one-shot and iterative), post-pruning
re-initialisation, random sparse initialisation, and filter-wise structured pruning on the AGP schedule with an
export that removes the pruned filters; with the mask utilities and cost measures they use.

The seed's chapter II ("pruning is not compression"); see README.md (the method card). The package imports torch,
Composer and ``algorithms/common/`` (wrapper names, the ``weights_only=True`` loader): copy this folder and
``algorithms/common/`` into any project.
"""

from .magnitude_pruning import MagnitudePruning, parse_schedule
from .masks import (PRUNABLE_TYPES, apply_masks, global_sparsity, layer_sparsity, magnitude_masks, magnitude_prune,
                    mask_gradients, prunable_layers, random_masks)
from .measure import count_macs, count_parameters, time_forward
from .structured import (ChannelGroup, apply_channel_masks, channel_groups, filter_masks, filter_sparsity,
                         group_importance)
from .structured_pruning import StructuredPruning
from .export import export_costs, export_pruned, load_exported, save_exported
from .agp import agp_sparsity
from .sparse_training import FixedMaskTraining, RandomSparseInit, checkpoint_model_state, masks_from_checkpoint

__all__ = [
    'MagnitudePruning',
    'StructuredPruning',
    'ChannelGroup',
    'channel_groups',
    'group_importance',
    'filter_masks',
    'apply_channel_masks',
    'filter_sparsity',
    'export_pruned',
    'export_costs',
    'save_exported',
    'load_exported',
    'agp_sparsity',
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
