"""What a pruned model costs: parameters, multiply-accumulates (MACs) and forward latency, dense beside masked.

Be honest about what unstructured pruning buys. Zeroing 90% of a layer's weights removes 90% of its *effective*
MACs and lets a sparse format store it in about a tenth of the space, but the model still runs the same dense
kernels (cuDNN / MKL-DNN / cuBLAS convolutions and matmuls multiply the zeros like any other number): the measured
latency of a masked model equals the dense model's. A speed-up needs the weights exported to a sparse format and
sparse kernels (``torch.sparse`` CSR matmuls, sparse inference engines, or 2:4 semi-structured sparsity on NVIDIA
Ampere+), and those pay off only at high sparsity; or structured pruning, which removes whole filters.
:func:`count_macs` reports the dense and the effective MACs; :func:`time_forward` measures what the dense kernels
actually take, so the two can be shown side by side.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any, Optional

import torch
from torch import nn

from composer.models import ComposerModel

from .masks import PRUNABLE_TYPES, _all_layers, _canonical_masks, network

__all__ = ['count_parameters', 'count_macs', 'time_forward']


def count_parameters(model: nn.Module, masks: Optional[Mapping[str, torch.Tensor]] = None) -> tuple[int, int]:
    """``(dense, nonzero)`` parameter counts of ``model`` (every parameter: weights, biases, norms; shared ones once).

    With ``masks``, ``nonzero`` is ``dense`` minus the entries the masks prune (what a sparse format stores);
    without, it counts the entries of the parameters that are not exactly zero.
    """
    params = list(model.parameters())
    dense = sum(p.numel() for p in params)
    if masks is None:
        nonzero = sum(int(torch.count_nonzero(p.detach())) for p in params)
    else:
        nonzero = dense - sum(int((~m.to(torch.bool)).sum()) for m in _canonical_masks(model, masks).values())
    return dense, nonzero


def _forward(model: nn.Module, example_input: Any) -> Any:
    """Call the network: a Composer model's wrapped network with a tensor, or ``model`` itself."""
    net = network(model) if isinstance(model, ComposerModel) else model
    if isinstance(example_input, Mapping):
        return net(**example_input)
    if isinstance(example_input, (tuple, list)):
        return net(*example_input)
    return net(example_input)


@torch.no_grad()
def count_macs(model: nn.Module, example_input: Any,
               masks: Optional[Mapping[str, torch.Tensor]] = None) -> tuple[int, int]:
    """``(dense_macs, effective_macs)`` of one forward pass of ``example_input`` through the conv and linear layers.

    Forward hooks on every convolution and ``nn.Linear`` count, per call, ``positions * weight.numel()`` dense MACs
    (``positions`` = the output's spatial positions times the batch for a convolution, the output rows for a
    linear layer) and ``positions * kept`` effective MACs, where ``kept`` is the layer's number of unpruned weights
    (from ``masks`` if it names the layer, else the weights that are not exactly zero): the MACs a sparse kernel
    would do. Biases, norms, activations and pooling are not counted. The counts are for the batch given: pass one
    example for per-example MACs. The model runs in eval mode (its mode is restored afterwards).

    ``example_input``: a tensor (a Composer model's wrapped network is called with it), a tuple of positional
    arguments or a mapping of keyword arguments.
    """
    checked = {} if masks is None else _canonical_masks(model, masks)
    layers = _all_layers(network(model))
    kept = {name: int(checked[name].sum()) if name in checked else int(torch.count_nonzero(m.weight))
            for name, m in layers.items()}
    totals = [0, 0]

    def hook(name: str):
        def count(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            weight = module.weight
            if isinstance(module, nn.modules.conv._ConvNd):
                batched = args[0].dim() == weight.dim()
                if module.transposed:  # each input position scatters through the whole kernel
                    positions = args[0].numel() // args[0].shape[1 if batched else 0]
                else:
                    positions = output.numel() // output.shape[1 if batched else 0]
            else:
                positions = output.numel() // output.shape[-1]
            totals[0] += positions * weight.numel()
            totals[1] += positions * kept[name]
        return count

    handles = [m.register_forward_hook(hook(name)) for name, m in layers.items() if isinstance(m, PRUNABLE_TYPES)]
    was_training = model.training
    model.eval()
    try:
        _forward(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return totals[0], totals[1]


@torch.no_grad()
def time_forward(model: nn.Module, example_input: Any, repeats: int = 20, warmup: int = 3) -> float:
    """The median wall-clock seconds of one forward pass (eval mode, ``torch.no_grad()``), over ``repeats`` timed
    passes after ``warmup`` untimed ones.

    Meant for CPU latency of a dense model beside its masked copy; on a GPU it synchronises around each pass. Run
    the models you compare interleaved in one process: on a shared machine, timings drift between runs. A masked
    model runs the same dense kernels, so expect the same latency (see the module docstring).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f'repeats must be an int >= 1, got {repeats!r}')
    was_training = model.training
    model.eval()
    cuda = any(p.is_cuda for p in model.parameters())

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    try:
        for _ in range(max(0, warmup)):
            _forward(model, example_input)
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            _forward(model, example_input)
            sync()
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times)
