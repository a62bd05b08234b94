"""Export a filter-pruned model: physically remove the pruned channels (Torch-Pruning), same outputs, fewer MACs.

:class:`~.StructuredPruning` trains with masks: pruned channels are exactly zero but still computed. The export
copies the bare network and removes every pruned channel from its producers, batch norms and consumers (the next
layer's input channels) through Torch-Pruning's dependency graph, so the exported model is smaller and faster and
gives the masked model's outputs (up to float rounding). A pruned model no longer fits its architecture's
constructor: save it with :func:`save_exported` (Torch-Pruning's ``state_dict``, which records the new shapes) and
load it into a fresh model with :func:`load_exported`, both through ``weights_only=True``-safe tensors and ints.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any, Optional, Sequence

import torch
from torch import nn

from .masks import network
from .measure import count_macs, count_parameters, time_forward
from .structured import _import_tp, channel_groups, dependency_graph

__all__ = ['export_pruned', 'export_costs', 'save_exported', 'load_exported']


def export_pruned(model: nn.Module, masks: Mapping[str, torch.Tensor], example_inputs: Any,
                  exclude: Optional[Sequence[str]] = None) -> nn.Module:
    """A copy of ``model``'s bare network without the channels ``masks`` prune (``model`` is left as it is).

    Args:
        model: the masked model (a network or a wrapper of one) with the pruned channels at zero.
        masks: ``{module name: bool [channels]}`` as :class:`~.StructuredPruning` keeps them (``algorithm.masks``).
        example_inputs: one input batch for tracing.
        exclude: as given to the pruning algorithm (``None``: the classifier).
    """
    tp = _import_tp()
    net = copy.deepcopy(network(model)).eval()
    graph = dependency_graph(net, example_inputs)
    modules = dict(net.named_modules())
    for group in channel_groups(net, example_inputs, exclude, graph=graph):
        keep = masks.get(group.root)
        if keep is None:
            continue
        idxs = torch.nonzero(~keep.to('cpu', torch.bool)).flatten().tolist()
        if not idxs:
            continue
        root = modules[group.root]
        handler = tp.prune_linear_out_channels if isinstance(root, nn.Linear) else tp.prune_conv_out_channels
        pruning_group = graph.get_pruning_group(root, handler, idxs=idxs)
        with torch.no_grad():
            pruning_group.prune()
    return net


def export_costs(masked: nn.Module, exported: nn.Module, example_inputs: Any, latency_inputs: Any = None,
                 repeats: int = 20) -> dict[str, Any]:
    """Parameters, MACs and forward latency of the masked model and of its export, measured side by side in this
    process, with the ratios. MACs are those of one forward of ``example_inputs`` (pass one example for per-example
    MACs); latency is the best of 3 interleaved medians over ``repeats`` forwards of ``latency_inputs`` (default
    ``example_inputs``), in seconds."""
    latency_inputs = example_inputs if latency_inputs is None else latency_inputs
    dense_params, _ = count_parameters(network(masked))
    export_params, _ = count_parameters(exported)
    dense_macs, effective_macs = count_macs(network(masked), example_inputs)
    export_macs, _ = count_macs(exported, example_inputs)
    rounds: dict[str, list[float]] = {'masked': [], 'exported': []}
    for _ in range(3):  # interleaved, so that drift of a shared machine hits both alike
        rounds['masked'].append(time_forward(network(masked), latency_inputs, repeats=repeats))
        rounds['exported'].append(time_forward(exported, latency_inputs, repeats=repeats))
    t_masked, t_export = min(rounds['masked']), min(rounds['exported'])
    return {
        'params': {'masked': dense_params, 'exported': export_params, 'ratio': export_params / dense_params},
        'macs': {'masked': dense_macs, 'masked_nonzero': effective_macs, 'exported': export_macs,
                 'ratio': export_macs / dense_macs},
        'latency_s': {'masked': t_masked, 'exported': t_export, 'speedup': t_masked / t_export},
    }


_SHAPE_ATTRS = ('in_channels', 'out_channels', 'groups', 'in_features', 'out_features', 'num_features')


def save_exported(net: nn.Module, path: str | os.PathLike) -> None:
    """Save an exported (physically pruned) network: its ``state_dict`` and each layer's changed size attributes
    (``in_channels``, ``out_features``, ``num_features``, ...), all tensors and ints (``weights_only=True`` loads it;
    Torch-Pruning's own ``tp.state_dict`` pickles module classes and does not)."""
    shapes = {name: {a: int(getattr(m, a)) for a in _SHAPE_ATTRS if isinstance(getattr(m, a, None), int)}
              for name, m in net.named_modules()}
    torch.save({'state_dict': net.state_dict(), 'shapes': {n: s for n, s in shapes.items() if s}}, path)


@torch.no_grad()
def load_exported(fresh: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load :func:`save_exported`'s file into ``fresh`` (an unpruned network of the same architecture), read with
    ``weights_only=True``: every tensor of a changed shape is replaced by one of the saved shape and the size
    attributes set, then the weights are loaded strictly. Returns ``fresh``."""
    saved = torch.load(path, map_location='cpu', weights_only=True)
    modules = dict(fresh.named_modules())
    for key, value in saved['state_dict'].items():
        owner, _, attr = key.rpartition('.')
        module = modules[owner]
        if attr in module._parameters and module._parameters[attr] is not None:
            if module._parameters[attr].shape != value.shape:
                module._parameters[attr] = nn.Parameter(torch.empty_like(value),
                                                        requires_grad=module._parameters[attr].requires_grad)
        elif attr in module._buffers and module._buffers[attr] is not None and \
                module._buffers[attr].shape != value.shape:
            module._buffers[attr] = torch.empty_like(value)
    for name, attrs in saved['shapes'].items():
        for attr, value in attrs.items():
            setattr(modules[name], attr, value)
    fresh.load_state_dict(saved['state_dict'])
    return fresh
