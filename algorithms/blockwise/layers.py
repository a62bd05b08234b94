"""Which layers of a teacher blockwise distillation replaces, found by tracing one forward pass.

A *replaceable layer* is a ``Conv2d`` with a kernel larger than 1x1 and ``groups == 1`` that runs once per forward,
together with the ``BatchNorm2d`` that directly consumes its output, if any: the pair is replaced as one unit, the
norm by an identity, so a block's target is the teacher's pre-activation (the teacher's own activation still
follows). Tracing records, per module, the order in which its forward is first *entered*; a teacher prefix
(:mod:`.prefix`) keeps exactly the modules entered up to the end of its layer.

The trace runs on whatever device the model's parameters are on, the ``meta`` device included (then it costs no
memory and no compute): a model built under ``torch.device('meta')`` can be traced before any weight exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

__all__ = ['ReplaceableLayer', 'Trace', 'trace', 'find_replaceable', 'conv_macs', 'module_macs']


@dataclass(frozen=True)
class ReplaceableLayer:
    """One unit blockwise distillation replaces.

    Attributes:
        conv: module path of the convolution (the task's name).
        norm: module path of the ``BatchNorm2d`` fed by it (replaced by an identity), or None.
        in_shape / out_shape: ``(C, H, W)`` of the conv's input and of the unit's output.
        index: position among the replaceable layers, input side first.
        macs / params: the unit's multiply-accumulates per example and parameters (conv and norm).
    """

    conv: str
    norm: Optional[str]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    index: int
    macs: int
    params: int

    @property
    def output_module(self) -> str:
        """The module whose output is the unit's output (the block's target)."""
        return self.norm or self.conv


@dataclass
class Trace:
    """What one forward pass did: ``entered`` lists module paths in the order their forward was first entered
    (the root is ``''``); ``calls`` counts the calls of each; ``inputs``/``outputs`` hold the first positional
    input and the output of each leaf call as ``(id, shape)``."""

    entered: list[str]
    calls: dict[str, int]
    inputs: dict[str, tuple[int, tuple[int, ...]]]
    outputs: dict[str, tuple[int, tuple[int, ...]]]


def trace(model: nn.Module, input_shape: Sequence[int]) -> Trace:
    """Run ``model`` in eval mode on one zero example of ``input_shape`` (``(C, H, W)``) and record the modules'
    order; the model's training mode is restored afterwards."""
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device('cpu')
    entered: list[str] = []
    calls: dict[str, int] = {}
    inputs: dict[str, tuple[int, tuple[int, ...]]] = {}
    outputs: dict[str, tuple[int, tuple[int, ...]]] = {}
    alive: list[torch.Tensor] = []  # keeps traced tensors alive so that their ids stay unique

    def pre(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if name not in calls:
                entered.append(name)
                calls[name] = 0
            calls[name] += 1
            if args and isinstance(args[0], torch.Tensor) and name not in inputs:
                inputs[name] = (id(args[0]), tuple(args[0].shape[1:]))
                alive.append(args[0])
        return hook

    def post(name: str):
        def hook(module: nn.Module, args: tuple, out: object) -> None:
            if isinstance(out, torch.Tensor) and name not in outputs:
                outputs[name] = (id(out), tuple(out.shape[1:]))
                alive.append(out)
        return hook

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(pre(name)))
        handles.append(module.register_forward_hook(post(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return Trace(entered, calls, inputs, outputs)


def conv_macs(conv: nn.Conv2d, out_hw: Sequence[int]) -> int:
    """Multiply-accumulates of ``conv`` for one example with output size ``out_hw``: ``H*W*C_out*(C_in/groups)*kh*kw``."""
    kh, kw = conv.kernel_size
    return int(out_hw[0] * out_hw[1] * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw)


def module_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates per example of every ``Conv2d`` and ``Linear`` in ``module`` (norms, activations and
    additions are not counted, as in the seed's tables), measured on one example of ``input_shape``."""
    tr = trace(module, input_shape)
    total = 0
    for name, sub in module.named_modules():
        if name not in tr.outputs:
            continue
        shape = tr.outputs[name][1]
        calls = tr.calls[name]
        if isinstance(sub, nn.Conv2d):
            total += calls * conv_macs(sub, shape[-2:])
        elif isinstance(sub, nn.Linear):
            total += calls * sub.in_features * sub.out_features * math.prod(shape[:-1])
    return total


def _params(*modules: Optional[nn.Module]) -> int:
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())


def find_replaceable(model: nn.Module, input_shape: Sequence[int], names: Optional[Sequence[str]] = None) -> list[ReplaceableLayer]:
    """The replaceable layers of ``model`` in forward order (see the module docstring); ``names`` restricts them to
    the given conv paths (a name that is not a replaceable conv raises ``ValueError`` saying why)."""
    tr = trace(model, input_shape)
    modules = dict(model.named_modules())
    consumers: dict[int, str] = {}
    for name, (tensor_id, _) in tr.inputs.items():
        if isinstance(modules[name], nn.BatchNorm2d):
            consumers.setdefault(tensor_id, name)
    layers: list[ReplaceableLayer] = []
    reasons: dict[str, str] = {}
    for name in tr.entered:
        conv = modules[name]
        if not isinstance(conv, nn.Conv2d):
            continue
        if max(conv.kernel_size) <= 1:
            reasons[name] = 'a 1x1 convolution'
            continue
        if conv.groups != 1:
            reasons[name] = f'a grouped convolution (groups={conv.groups})'
            continue
        if tr.calls[name] != 1:
            reasons[name] = f'called {tr.calls[name]} times per forward'
            continue
        norm = consumers.get(tr.outputs[name][0])
        out_shape = tr.outputs[norm or name][1]
        layers.append(ReplaceableLayer(
            conv=name, norm=norm, in_shape=tr.inputs[name][1], out_shape=out_shape, index=len(layers),
            macs=conv_macs(conv, out_shape[-2:]), params=_params(conv, modules.get(norm) if norm else None)))
    if names is not None:
        found = {layer.conv: layer for layer in layers}
        for n in names:
            if n not in found:
                why = reasons.get(n) or ('not a Conv2d' if n in modules else 'no such module')
                raise ValueError(f'layer {n!r} is not replaceable ({why}); replaceable: {", ".join(found) or "none"}')
        layers = [found[n] for n in found if n in set(names)]
    return layers
