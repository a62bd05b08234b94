"""Layer-wise unstructured pruning masks: which layers are pruned, which weights, and how a mask is enforced.

A mask set is a ``dict`` from a layer's name to a boolean tensor of its weight's shape: ``True`` keeps a weight,
``False`` prunes it (the weight is held at exactly zero). Layer names are the dotted paths in the innermost wrapped
network (``'0'``, ``'layer1.0.conv1'``): wrappers are seen through (``ComposerClassifier.module``,
``HuggingFaceModel.model``, DDP's ``.module``, ``torch.compile``'s ``._orig_mod``), so the same mask set fits the bare
network and every wrapper of it, and a name written with a wrapper prefix (``'module.0'``) is accepted too.

"Layer-wise" (the seed's chapter II): every prunable layer is pruned to the same sparsity, by the magnitude of its own
weights; the final classifier stays dense. Prunable layers are the convolutions and ``nn.Linear`` layers.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> layers = prunable_layers(net)            # the last Linear ('2') is the classifier: left dense
    >>> list(layers)
    ['0']
    >>> masks = magnitude_masks(net, 0.75, layers)
    >>> apply_masks(net, masks)
    >>> layer_sparsity(net, layers)
    {'0': 0.75}
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional, Union

import torch
from torch import nn

from ..common.feature_taps import WRAPPER_ATTRS

__all__ = [
    'PRUNABLE_TYPES',
    'prunable_layers',
    'magnitude_masks',
    'random_masks',
    'apply_masks',
    'mask_gradients',
    'layer_sparsity',
    'global_sparsity',
    'magnitude_prune',
    'check_sparsity',
    'resolve_layers',
    'network',
    'masks_to_cpu',
]

#: Layer types that are pruned: every convolution (1d/2d/3d, transposed too) and every ``nn.Linear``.
PRUNABLE_TYPES: tuple[type, ...] = (nn.modules.conv._ConvNd, nn.Linear)

Masks = dict[str, torch.Tensor]
Layers = Union[Mapping[str, nn.Module], Iterable[str]]


def network(model: nn.Module) -> nn.Module:
    """The innermost network that ``model`` wraps (``model`` itself if it wraps none)."""
    seen = [model]
    current = model
    while True:
        inner = next((getattr(current, a) for a in WRAPPER_ATTRS if isinstance(getattr(current, a, None), nn.Module)),
                     None)
        if inner is None or any(inner is m for m in seen):
            return current
        seen.append(inner)
        current = inner


def check_sparsity(sparsity: Any, name: str = 'sparsity') -> float:
    """``sparsity`` as a float strictly between 0 and 1, or ``ValueError`` naming the argument."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not math.isfinite(sparsity) or \
            not 0 < sparsity < 1:
        raise ValueError(f'{name} must be a number strictly between 0 and 1 (the fraction pruned), '
                         f'got {sparsity!r}')
    return float(sparsity)


def _all_layers(net: nn.Module) -> dict[str, nn.Module]:
    """Every prunable (conv / linear) layer of the bare network, in module order."""
    return {name: m for name, m in net.named_modules() if name and isinstance(m, PRUNABLE_TYPES)}


def _canonical(model: nn.Module, name: str, candidates: Mapping[str, nn.Module], what: str = 'layer') -> str:
    """The bare-network name of the layer ``name`` (given bare or with wrapper prefixes); ``KeyError`` if none."""
    if name in candidates:
        return name
    if isinstance(name, str) and name:
        prefixed = name
        chain = [model]
        while True:  # strip one wrapper prefix at a time: 'model.module.0' -> 'module.0' -> '0'
            current = chain[-1]
            attr = next((a for a in WRAPPER_ATTRS if isinstance(getattr(current, a, None), nn.Module)), None)
            if attr is None or not prefixed.startswith(attr + '.'):
                break
            prefixed = prefixed[len(attr) + 1:]
            chain.append(getattr(current, attr))
            if prefixed in candidates:
                return prefixed
    close = difflib.get_close_matches(str(name), list(candidates), n=5, cutoff=0.4) or list(candidates)[:8]
    raise KeyError(f'no {what} named {name!r} in {type(model).__name__}; closest: {", ".join(close) or "(none)"}')


def resolve_layers(model: nn.Module, layers: Layers) -> dict[str, nn.Module]:
    """The conv / linear layers named by ``layers`` (a mapping as :func:`prunable_layers` returns, or names), keyed
    by their bare-network names. An unknown name raises ``KeyError`` naming the closest prunable layers."""
    known = _all_layers(network(model))
    if isinstance(layers, str):
        names = [layers]
    else:
        names = list(layers.keys()) if isinstance(layers, Mapping) else list(layers)
    return {canonical: known[canonical] for canonical in (_canonical(model, n, known) for n in names)}


def prunable_layers(model: nn.Module, exclude: Optional[Iterable[str]] = None) -> dict[str, nn.Module]:
    """Every conv and linear layer of ``model`` (seen through its wrappers), in module order, except the final
    classifier.

    Args:
        model: a network or a wrapper of one (``ComposerClassifier``, ``HuggingFaceModel``, DDP, compiled).
        exclude: the layers to leave dense. ``None`` (default): the last ``nn.Linear`` in module order, the
            classifier. A list (``[]`` prunes every layer) replaces that default; unknown names raise ``KeyError``.

    Returns:
        ``{bare-network name: module}``.
    """
    known = _all_layers(network(model))
    if exclude is None:
        linears = [n for n, m in known.items() if isinstance(m, nn.Linear)]
        excluded = set(linears[-1:])
    else:
        if isinstance(exclude, str):
            exclude = [exclude]
        excluded = {_canonical(model, n, known) for n in exclude}
    return {n: m for n, m in known.items() if n not in excluded}


def _weight(layer: nn.Module) -> torch.Tensor:
    return layer.weight


def magnitude_masks(model: nn.Module,
                    sparsity: float,
                    layers: Layers,
                    previous: Optional[Mapping[str, torch.Tensor]] = None) -> Masks:
    """Per layer, prune the fraction ``sparsity`` of its weights with the smallest ``|w|``.

    Exactly ``round(sparsity * numel)`` weights of each layer are pruned (Python's ``round``). Ties are broken
    deterministically: among equal magnitudes the weight with the lower flat index is pruned first (stable sort).
    Weights pruned by ``previous`` masks (an earlier round of iterative pruning) are pruned first, so they stay
    pruned as long as the new sparsity is not lower than the old one.

    Returns ``{name: bool tensor}`` on each weight's device (``True`` = kept).
    """
    sparsity = check_sparsity(sparsity)
    resolved = resolve_layers(model, layers)
    previous = {} if previous is None else _canonical_masks(model, previous)
    masks: Masks = {}
    for name, layer in resolved.items():
        weight = _weight(layer).detach()
        scores = weight.abs().flatten().float()
        if name in previous:
            scores = scores.masked_fill(~previous[name].to(scores.device).flatten(), -1.0)
        n_prune = int(round(sparsity * weight.numel()))
        order = torch.sort(scores, stable=True).indices
        mask = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
        mask[order[:n_prune]] = False
        masks[name] = mask.view_as(weight)
    return masks


def random_masks(model: nn.Module, sparsity: float, layers: Layers,
                 generator: Optional[torch.Generator] = None) -> Masks:
    """Per layer, prune exactly ``round(sparsity * numel)`` weights chosen uniformly at random.

    Draws come from ``generator`` (a CPU ``torch.Generator``; the global RNG if ``None``), one permutation per layer
    in module order, so a seed fixes the masks. Returns ``{name: bool tensor}`` on each weight's device.
    """
    sparsity = check_sparsity(sparsity)
    masks: Masks = {}
    for name, layer in resolve_layers(model, layers).items():
        weight = _weight(layer)
        n_prune = int(round(sparsity * weight.numel()))
        mask = torch.ones(weight.numel(), dtype=torch.bool)
        mask[torch.randperm(weight.numel(), generator=generator)[:n_prune]] = False
        masks[name] = mask.view(weight.shape).to(weight.device)
    return masks


def _canonical_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``masks`` keyed by bare-network names, each checked against its layer's weight shape."""
    known = _all_layers(network(model))
    out = {}
    for name, mask in masks.items():
        canonical = _canonical(model, name, known)
        weight = _weight(known[canonical])
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(weight.shape):
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f'the mask for layer {canonical!r} has shape {shape}, but the layer\'s weight has shape '
                             f'{tuple(weight.shape)}')
        out[canonical] = mask
    return out


def optimizer_list(optimizer: Any) -> list[torch.optim.Optimizer]:
    """``None``, one optimizer or several, as a list."""
    if optimizer is None:
        return []
    if isinstance(optimizer, (list, tuple)):
        return list(optimizer)
    return [optimizer]


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor], optimizer: Any = None) -> None:
    """Set every pruned weight to exactly zero, and the same entries of the optimizer's per-weight state buffers.

    Args:
        model: the network (or a wrapper of it) the masks were made for.
        masks: ``{layer name: bool tensor}`` (``True`` = kept); each must have its layer's weight shape
            (``ValueError`` naming the layer and both shapes otherwise; an unknown name raises ``KeyError``).
        optimizer: an optimizer or a list of them (e.g. Composer's ``state.optimizers``). Every tensor in its state
            for a masked weight that has the weight's shape (SGD's ``momentum_buffer``, Adam's ``exp_avg``,
            ``exp_avg_sq``, ``max_exp_avg_sq``, ...) is zeroed where the mask prunes, so momentum cannot move a
            pruned weight away from zero. Scalar state (``step``) is left alone.
    """
    checked = _canonical_masks(model, masks)
    known = _all_layers(network(model))
    optimizers = optimizer_list(optimizer)
    for name, mask in checked.items():
        weight = _weight(known[name])
        zero_pruned(weight, ~mask.to(device=weight.device, dtype=torch.bool), optimizers)


def zero_pruned(param: torch.Tensor, pruned: torch.Tensor, optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """Zero ``param`` where ``pruned`` and the same entries of the optimizers' state of it (momentum, Adam's
    moments), so that a pruned weight does not come back through stale state."""
    param.masked_fill_(pruned, 0)
    for opt in optimizers:
        for value in opt.state.get(param, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value.masked_fill_(pruned.to(value.device), 0)


@torch.no_grad()
def mask_gradients(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the gradient of every pruned weight (the gradient of the masked network with respect to its kept
    weights only): gradient clipping, norms and layer-wise optimizers (LARS, LAMB) then see only kept weights."""
    known = _all_layers(network(model))
    for name, mask in _canonical_masks(model, masks).items():
        grad = _weight(known[name]).grad
        if grad is not None:
            grad.masked_fill_(~mask.to(device=grad.device, dtype=torch.bool), 0)


@torch.no_grad()
def layer_sparsity(model: nn.Module, layers: Layers) -> dict[str, float]:
    """The fraction of exactly-zero weights in each layer, measured from the weights (not from any mask)."""
    resolved = resolve_layers(model, layers)
    if not resolved:
        return {}
    zeros = torch.stack([(_weight(m) == 0).sum().to('cpu') for m in resolved.values()]).tolist()
    return {name: z / _weight(m).numel() for (name, m), z in zip(resolved.items(), zeros)}


def global_sparsity(model: nn.Module, layers: Layers) -> float:
    """The fraction of exactly-zero weights over all of ``layers`` together (weighted by their sizes)."""
    resolved = resolve_layers(model, layers)
    total = sum(_weight(m).numel() for m in resolved.values())
    if total == 0:
        return 0.0
    sparsities = layer_sparsity(model, resolved)
    return sum(sparsities[n] * _weight(m).numel() for n, m in resolved.items()) / total


def magnitude_prune(model: nn.Module, sparsity: float, exclude: Optional[Iterable[str]] = None,
                    optimizer: Any = None) -> Masks:
    """One-shot layer-wise magnitude pruning of ``model`` in place: every prunable layer (all conv / linear layers
    but the classifier, see :func:`prunable_layers`) loses its smallest-``|w|`` fraction ``sparsity``. Returns the
    masks, to be enforced after every later optimizer step (:func:`apply_masks`)."""
    sparsity = check_sparsity(sparsity)
    layers = prunable_layers(model, exclude)
    masks = magnitude_masks(model, sparsity, layers)
    apply_masks(model, masks, optimizer)
    return masks


def masks_to_cpu(masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of ``masks`` as CPU bool tensors (what a checkpoint holds)."""
    return {name: mask.detach().to(device='cpu', dtype=torch.bool).clone() for name, mask in masks.items()}
