"""Feature taps: capture the inputs and outputs of submodules named by dotted path, with forward hooks.

torchdistill's idea: no model surgery, no forward rewritten. ``FeatureTaps(model, ['layer2', 'layer3.1.conv2'])``
registers a forward hook on each named module; after a forward pass ``taps.outputs['layer2']`` (and
``taps.inputs['layer2']``) hold what that module produced (received) in it. One utility serves feature distillation
(AT, SP, FSP, PKT, CRD, FitNets) and representation analysis (SVCCA, CKA).

Names are resolved through the usual wrappers, so a name written for the bare network also works on the wrapped
one and the other way round: ``ComposerClassifier`` keeps its network in ``.module``, Hugging Face's
``HuggingFaceModel`` in ``.model``, DDP in ``.module``, ``torch.compile`` in ``._orig_mod``. ``layer2``,
``module.layer2`` and ``model.module.layer2`` all find the same module. An unknown name raises ``KeyError`` naming
the closest module paths.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> with FeatureTaps(net, ['0', '2']) as taps:
    ...     _ = net(torch.randn(3, 4))
    >>> taps.outputs['0'].shape, taps.inputs['2'].shape
    (torch.Size([3, 8]), torch.Size([3, 8]))
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Iterable

import torch
from torch import nn

__all__ = ['FeatureTaps', 'capture', 'resolve_module', 'module_names', 'first_tensor', 'unwrap', 'feature_shape']

#: Attributes under which wrappers keep the wrapped network (ComposerClassifier/DDP, HuggingFaceModel, compile).
WRAPPER_ATTRS = ('module', 'model', '_orig_mod')


def _unwrapped(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``model`` and every network it wraps, outermost first, each with its path from ``model``."""
    chain, prefix, current = [('', model)], '', model
    while True:
        inner = next(((a, getattr(current, a)) for a in WRAPPER_ATTRS
                      if isinstance(getattr(current, a, None), nn.Module)), None)
        if inner is None or any(m is inner[1] for _, m in chain):
            return chain
        prefix = f'{prefix}{inner[0]}.'
        current = inner[1]
        chain.append((prefix, current))


def unwrap(model: nn.Module) -> nn.Module:
    """The innermost network a wrapper (ComposerClassifier, HuggingFaceModel, DDP, compile) holds."""
    return _unwrapped(model)[-1][1]


def module_names(model: nn.Module) -> list[str]:
    """The dotted paths of the innermost wrapped network's submodules (the names a config usually writes)."""
    return [name for name, _ in _unwrapped(model)[-1][1].named_modules() if name]


def resolve_module(model: nn.Module, name: str) -> tuple[str, nn.Module]:
    """The submodule of ``model`` at dotted path ``name``, looked up on ``model`` and on every network it wraps.

    Returns ``(full path from model, module)``. Raises ``KeyError`` with the closest existing names.
    """
    if not isinstance(name, str) or not name:
        raise KeyError(f'a feature name must be a non-empty dotted module path, got {name!r}')
    for prefix, inner in _unwrapped(model):
        try:
            return prefix + name, inner.get_submodule(name)
        except AttributeError:
            continue
    known = module_names(model)
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5) or known[:8]
    raise KeyError(f'no module named {name!r} in {type(model).__name__}; closest: {", ".join(close)}')


def first_tensor(value: Any) -> Any:
    """A module's output as one tensor: the tensor itself, or the first tensor of a tuple/list/mapping/ModelOutput
    (a Hugging Face layer returns ``(hidden_states, ...)``); anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for item in value:
            if isinstance(item, torch.Tensor):
                return item
    return value


class FeatureTaps:
    """Forward hooks that keep the latest input and output of each named module of ``model``.

    Args:
        model: any ``nn.Module`` (wrappers are seen through, see the module docstring).
        names: dotted module paths; every one is resolved now (``KeyError`` for an unknown one).
        detach: store detached tensors (analysis, teachers) instead of keeping the graph (a student's features).
        capture_inputs: also keep each module's first positional input (``inputs[name]``).

    ``outputs`` / ``inputs`` map each name to the value of the latest forward (a module called twice in one forward
    keeps its last call). Set ``active = False`` to skip capturing (e.g. during evaluation); ``clear()`` empties
    both maps; ``remove()`` (or leaving the ``with`` block) unregisters the hooks.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], detach: bool = False,
                 capture_inputs: bool = True) -> None:
        self.names = list(dict.fromkeys(names))
        self.detach = detach
        self.capture_inputs = capture_inputs
        self.active = True
        self.outputs: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}
        self.paths: dict[str, str] = {}
        self._handles = []
        resolved = [(name, *resolve_module(model, name)) for name in self.names]  # all resolved before any hook
        for name, path, module in resolved:
            self.paths[name] = path
            self._handles.append(module.register_forward_hook(self._hook(name)))

    def _keep(self, value: Any) -> Any:
        value = first_tensor(value)
        return value.detach() if self.detach and isinstance(value, torch.Tensor) else value

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not self.active:
                return
            self.outputs[name] = self._keep(output)
            if self.capture_inputs:
                self.inputs[name] = self._keep(args[0]) if args else None
        return hook

    def clear(self) -> None:
        self.outputs.clear()
        self.inputs.clear()

    def missing(self) -> list[str]:
        """The names whose module did not run in the forward passes since the last ``clear()``."""
        return [n for n in self.names if n not in self.outputs]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> 'FeatureTaps':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f'FeatureTaps({self.names}, detach={self.detach})'


def capture(model: nn.Module, names: Iterable[str], *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Run ``model(*args, **kwargs)`` once with taps on ``names``; returns ``(output, {name: output feature})``."""
    with FeatureTaps(model, names, detach=not torch.is_grad_enabled(), capture_inputs=False) as taps:
        out = model(*args, **kwargs)
    return out, dict(taps.outputs)



def feature_shape(model: nn.Module, name: str, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape (without the batch dimension) of module ``name``'s output for one input of ``input_shape``, found by
    a forward pass of the unwrapped network on zeros in eval mode (running statistics untouched)."""
    net = unwrap(model)
    was_training = net.training
    param = next(net.parameters(), None)
    x = torch.zeros((2, *input_shape), device=param.device if param is not None else None)
    try:
        net.eval()
        with torch.no_grad():
            _, feats = capture(net, [name], x)
    finally:
        net.train(was_training)
    return tuple(feats[name].shape[1:])
