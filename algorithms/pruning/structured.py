"""Filter-wise (structured) pruning masks: whole output channels, chosen by the L1 norm of their filters.

Pruning a filter removes one output channel of a convolution (or one output unit of a hidden ``nn.Linear``). What
else that channel touches comes from Torch-Pruning's dependency graph (``torch_pruning.DependencyGraph``, traced
on one example input): the batch norm after it, and in residual networks every layer whose output is *added* to
it (the convolutions of a residual stage and its shortcut share their channels: they form one **group** and lose
the same channels). Per group, a channel's importance is the sum over the group's producing layers of the L1 norm
of the filter that makes it (for a plain chain that is exactly the filter's L1 norm, the seed's criterion), and
every group loses the same fraction of its channels ("every layer the same sparsity", the seed's chapter III).

A pruned channel is made **exactly zero**: its filters (weight rows and bias) *and* its batch norm's scale and
shift are masked. Masking the conv alone would leave the batch norm's shift, a constant that flows on; with both,
the channel carries zeros everywhere, so removing it physically (:func:`~.export.export_pruned`) gives the same
outputs. Masks are ``{module name: bool tensor [channels]}`` (``True`` = kept) over the modules of the bare network
(wrappers seen through), small enough to checkpoint for any model.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
    ...                           torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 3))
    >>> groups = channel_groups(net, torch.randn(1, 1, 8, 8))
    >>> masks = filter_masks(net, groups, 0.5)          # conv '0' and its batch norm '1' lose 4 channels
    >>> apply_channel_masks(net, masks)
    >>> filter_sparsity(net, masks)['0']
    0.5
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from .masks import check_sparsity, network, optimizer_list, zero_pruned

__all__ = ['ChannelGroup', 'channel_groups', 'group_importance', 'filter_masks', 'apply_channel_masks',
           'mask_channel_gradients', 'filter_sparsity', 'zero_channel_masks']

ChannelMasks = dict[str, torch.Tensor]
_PRODUCERS = (nn.modules.conv._ConvNd, nn.Linear)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


@dataclass
class ChannelGroup:
    """Layers whose output channels are coupled: ``producers`` (conv / linear layers whose filters make the
    channels) and ``norms`` (batch norms over them), by bare-network name; ``root`` is the producer the
    dependency graph was asked about (the export prunes the group through it); ``channels`` its count."""

    root: str
    producers: list[str]
    norms: list[str]
    channels: int


def _import_tp() -> Any:
    try:
        import torch_pruning as tp
    except ImportError as e:  # pragma: no cover - pinned in requirements.txt
        raise ImportError('structured pruning needs Torch-Pruning: pip install torch-pruning==1.6.1') from e
    return tp


def _example_forward(example_inputs: Any) -> Any:
    """Torch-Pruning's ``forward_fn`` for a tensor, a tuple of tensors or a mapping of keyword inputs."""
    if isinstance(example_inputs, Mapping):
        return lambda m, x: m(**x)
    if isinstance(example_inputs, (tuple, list)):
        return lambda m, x: m(*x)
    return None


def dependency_graph(model: nn.Module, example_inputs: Any) -> Any:
    """Torch-Pruning's dependency graph of the bare network of ``model``, traced on ``example_inputs`` (eval mode,
    no gradients kept; the model's training mode is restored)."""
    tp = _import_tp()
    net = network(model)
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():  # Torch-Pruning traces through autograd
            return tp.DependencyGraph().build_dependency(net, example_inputs=example_inputs,
                                                          forward_fn=_example_forward(example_inputs))
    finally:
        net.train(was_training)


def channel_groups(model: nn.Module, example_inputs: Any, exclude: Optional[Sequence[str]] = None,
                   graph: Any = None) -> list[ChannelGroup]:
    """The coupled channel groups of ``model``'s conv and hidden linear layers, in module order.

    Args:
        model: a network or a wrapper of one (``ComposerClassifier``, DDP, ...).
        example_inputs: one input batch for tracing (e.g. ``torch.randn(1, 1, 28, 28)``).
        exclude: layers whose output channels are never pruned (bare names). ``None``: the last ``nn.Linear``, the
            classifier (its *inputs* are still pruned when the layer before it loses channels).
        graph: a dependency graph already built for the model (:func:`dependency_graph`).
    """
    net = network(model)
    names = {m: n for n, m in net.named_modules()}
    if exclude is None:
        linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
        exclude = linears[-1:]
    known = dict(net.named_modules())
    for name in exclude:
        if name not in known:
            raise KeyError(f'exclude: no module named {name!r} in {type(net).__name__}')
    graph = graph if graph is not None else dependency_graph(model, example_inputs)
    ignored = [known[n] for n in exclude]
    groups = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=list(_PRODUCERS)):
        producers, norms, root = [], [], None
        for dep, _ in group:
            module = dep.target.module
            if not _is_out_channels(dep.handler) or module not in names:
                continue
            if isinstance(module, _PRODUCERS):
                producers.append(names[module])
                root = root or names[module]
            elif isinstance(module, _NORMS):
                norms.append(names[module])
        if root is None or any(p in exclude for p in producers):
            continue
        channels = _out_channels(known[root])
        groups.append(ChannelGroup(root, sorted(set(producers), key=list(known).index),
                                   sorted(set(norms), key=list(known).index), channels))
    order = list(known)
    return sorted(groups, key=lambda g: order.index(g.root))


def _is_out_channels(handler: Any) -> bool:
    name = getattr(handler, '__name__', '') or type(handler).__name__
    return 'out_channels' in name


def _out_channels(module: nn.Module) -> int:
    return module.weight.shape[0]


@torch.no_grad()
def group_importance(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Per channel of ``group``: the sum over its producers of the L1 norm of the filter making that channel."""
    net = network(model)
    modules = dict(net.named_modules())
    scores = torch.zeros(group.channels, dtype=torch.float64)
    for name in group.producers:
        weight = modules[name].weight.detach()
        scores += weight.abs().flatten(1).sum(1).to('cpu', torch.float64)
    return scores


@torch.no_grad()
def filter_masks(model: nn.Module, groups: Sequence[ChannelGroup], sparsity: float,
                 previous: Optional[Mapping[str, torch.Tensor]] = None) -> ChannelMasks:
    """Per group, prune ``round(sparsity * channels)`` channels with the smallest importance (L1 norm); channels
    pruned by ``previous`` masks are pruned first (so they stay pruned as sparsity grows); ties go to the lower
    channel index. Returns ``{module name: bool [channels]}`` for every producer and norm of every group."""
    sparsity = check_sparsity(sparsity)
    masks: ChannelMasks = {}
    for group in groups:
        scores = group_importance(model, group)
        if previous and group.root in previous:
            scores = scores.masked_fill(~previous[group.root].to('cpu', torch.bool), -1.0)
        n_prune = int(round(sparsity * group.channels))
        n_prune = min(n_prune, group.channels - 1)  # a layer keeps at least one channel
        keep = torch.ones(group.channels, dtype=torch.bool)
        keep[torch.sort(scores, stable=True).indices[:n_prune]] = False
        for name in group.producers + group.norms:
            masks[name] = keep.clone()
    return masks


def _param_masks(net: nn.Module, masks: Mapping[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(parameter, bool mask broadcastable to it)`` for the weight and bias of every masked module."""
    modules = dict(net.named_modules())
    out = []
    for name, keep in masks.items():
        if name not in modules:
            raise KeyError(f'channel mask for {name!r}, but {type(net).__name__} has no such module')
        module = modules[name]
        for attr in ('weight', 'bias'):
            param = getattr(module, attr, None)
            if not isinstance(param, torch.Tensor):
                continue
            if param.shape[0] != keep.numel():
                raise ValueError(f'the channel mask for {name!r} has {keep.numel()} channels, but its {attr} has '
                                 f'{param.shape[0]}')
            shape = (-1,) + (1,) * (param.dim() - 1)
            out.append((param, keep.to(device=param.device, dtype=torch.bool).view(shape)))
    return out


@torch.no_grad()
def apply_channel_masks(model: nn.Module, masks: Mapping[str, torch.Tensor], optimizer: Any = None) -> None:
    """Zero the pruned channels' weights and biases (conv / linear filters, norm scales and shifts) and the same
    entries of the optimizer's per-parameter state (momentum, Adam moments)."""
    optimizers = optimizer_list(optimizer)
    for param, keep in _param_masks(network(model), masks):
        zero_pruned(param, ~keep.expand_as(param), optimizers)


@torch.no_grad()
def mask_channel_gradients(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the gradients of the pruned channels' parameters (clipping and norms see only kept channels)."""
    for param, keep in _param_masks(network(model), masks):
        if param.grad is not None:
            param.grad.masked_fill_(~keep.expand_as(param.grad), 0)


@torch.no_grad()
def filter_sparsity(model: nn.Module, names: Any) -> dict[str, float]:
    """Per layer of ``names`` (conv / linear): the fraction of its filters that are entirely zero, measured from the
    weights (not from any mask)."""
    modules = dict(network(model).named_modules())
    out = {}
    for name in names:
        module = modules[name]
        if isinstance(module, _PRODUCERS):
            zero = (module.weight.detach().flatten(1).abs().sum(1) == 0)
            out[name] = float(zero.float().mean())
    return out


@torch.no_grad()
def zero_channel_masks(model: nn.Module, groups: Sequence[ChannelGroup]) -> ChannelMasks:
    """The channel masks a pruned model's weights imply: per group, a channel is pruned when every producer's filter
    for it is entirely zero (e.g. a checkpoint of :class:`~.StructuredPruning`, read without its algorithm state)."""
    masks: ChannelMasks = {}
    for group in groups:
        keep = group_importance(model, group) != 0
        for name in group.producers + group.norms:
            masks[name] = keep.clone()
    return masks
