"""What the pruning algorithms share on Composer's side: time strings, enforcing a mask set in the training loop,
logging the measured sparsity, and (de)serialising masks for checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from composer.core import Algorithm, State
from composer.loggers import Logger

from ..common.time_strings import parse_time, reached  # noqa: F401 (re-exported for the algorithms)
from .masks import _all_layers, _canonical_masks, apply_masks, global_sparsity, layer_sparsity, masks_to_cpu, network


def check_unsharded(state: State, algorithm: Algorithm) -> None:
    """Masks are per-weight tensors of the full weight: FSDP's flattened shards do not fit them."""
    if getattr(state, 'fsdp_enabled', False):
        raise ValueError(f'{type(algorithm).__name__} needs full (unsharded) weights; it does not support FSDP. '
                         'Use DDP or a single device.')


def masks_on_model(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``masks`` checked against ``model`` (``KeyError`` for an unknown layer, ``ValueError`` naming the layer and
    both shapes for a misfit), keyed by bare-network names, as bool tensors on each weight's device."""
    checked = _canonical_masks(model, masks)
    known = _all_layers(network(model))
    return {name: mask.to(device=known[name].weight.device, dtype=torch.bool) for name, mask in checked.items()}


def enforce(state: State, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights and their optimizer state (momentum, Adam moments)."""
    if masks:
        apply_masks(state.model, masks, state.optimizers)


def log_sparsity(logger: Logger, state: State, names: Any, target: Any = None) -> dict[str, float]:
    """Log ``pruning/sparsity/<layer>`` for each layer and ``pruning/global_sparsity``, measured from the weights;
    also ``pruning/target_sparsity`` when given. Returns what it logged."""
    names = list(names)
    if not names:
        return {}
    per_layer = layer_sparsity(state.model, names)
    metrics = {f'pruning/sparsity/{n}': s for n, s in per_layer.items()}
    metrics['pruning/global_sparsity'] = global_sparsity(state.model, names)
    if target is not None:
        metrics['pruning/target_sparsity'] = float(target)
    logger.log_metrics(metrics)
    return metrics


def masks_state(masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masks as a checkpoint holds them: CPU bool tensors (loadable with ``weights_only=True``)."""
    return masks_to_cpu(masks)


def masks_from_state(value: Any, what: str) -> dict[str, torch.Tensor]:
    """Masks read back from a state dict, validated as a mapping of names to tensors."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in value.items()):
        raise ValueError(f'{what}: masks must be a mapping of layer names to tensors, got {type(value).__name__}')
    return {k: v.to(torch.bool) for k, v in value.items()}


__all__ = ['parse_time', 'reached', 'check_unsharded', 'masks_on_model', 'enforce', 'log_sparsity', 'masks_state',
           'masks_from_state']
