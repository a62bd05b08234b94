"""The part of a teacher a block task needs: its modules up to one layer, and nothing after it.

:func:`run_until` runs a model only as far as one module and returns the input of one module and the output of
another (a forward hook stops the pass), so no later module computes. :class:`TeacherPrefix` builds the teacher's
architecture on the ``meta`` device (no memory), traces the order modules run in, and materialises and loads from
the checkpoint only the modules entered up to the end of its layer (a memory-mapped checkpoint is read only there):
the rest of the teacher never exists. This is what lets the seed's parallel tasks run on devices that could not hold
the whole teacher.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from ..distillation.teachers import module_weights
from .layers import ReplaceableLayer, trace

__all__ = ['run_until', 'TeacherPrefix', 'materialised_parameters']


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the wanted output exists."""


def run_until(model: nn.Module, input_module: str, output_module: str, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model(x)`` until ``output_module`` has run; return (the first input of ``input_module``, the output of
    ``output_module``). ``input_module`` must run no later than ``output_module``."""
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def grab_input(module: nn.Module, args: tuple) -> None:
        captured.setdefault('input', args[0])

    def grab_output(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        captured['output'] = out
        raise _Stop

    handles = [modules[input_module].register_forward_pre_hook(grab_input),
               modules[output_module].register_forward_hook(grab_output)]
    try:
        model(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    if 'output' not in captured:
        raise RuntimeError(f'{output_module!r} did not run in the forward pass')
    if 'input' not in captured:
        raise RuntimeError(f'{input_module!r} did not run before {output_module!r}')
    return captured['input'], captured['output']


def materialised_parameters(model: nn.Module) -> int:
    """The number of parameter elements that exist (not on the ``meta`` device)."""
    return sum(p.numel() for p in model.parameters() if p.device.type != 'meta')


class TeacherPrefix(nn.Module):
    """The teacher up to (and including) ``layer``, in eval mode, frozen.

    Args:
        build: a no-argument callable returning the teacher's architecture (called under ``torch.device('meta')``).
        layer: the layer the prefix ends with.
        checkpoint: the teacher's weights (a Composer checkpoint or a state dict; memory-mapped, ``weights_only``).
        input_shape: ``(C, H, W)`` of one example (for the trace).
        device: where the materialised modules live.

    ``forward(x)`` returns ``(input of layer.conv, output of layer.output_module)``, the block's input and target.
    """

    def __init__(self, build: Callable[[], nn.Module], layer: ReplaceableLayer,
                 checkpoint: Union[str, os.PathLike], input_shape: Sequence[int],
                 device: Optional[Union[str, torch.device]] = None) -> None:
        super().__init__()
        with torch.device('meta'):
            model = build()
        order = trace(model, input_shape).entered
        if layer.output_module not in order:
            raise ValueError(f'{layer.output_module!r} does not run in the teacher')
        self.kept = order[:order.index(layer.output_module) + 1]  # modules entered up to the end of the layer
        weights = module_weights(model, checkpoint, mmap=True)
        modules = dict(model.named_modules())
        device = torch.device(device or 'cpu')
        for name in self.kept:
            module = modules[name]
            module.to_empty(device=device, recurse=False)
            own = {f'{name}.{k}' if name else k: v for k, v in
                   [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]}
            with torch.no_grad():
                for key, tensor in own.items():
                    tensor.copy_(weights[key])
        self.teacher = model.eval().requires_grad_(False)
        self.layer = layer

    def train(self, mode: bool = True) -> 'TeacherPrefix':
        return super().train(False)  # the teacher's batch norms keep their running statistics

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return run_until(self.teacher, self.layer.conv, self.layer.output_module, x)
