"""Splicing trained blocks into a teacher: one temporarily (to evaluate a candidate), or all kept ones for good
(the assembled student), and freezing what the seed froze during the student's fine-tuning."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence

from torch import nn

from .blocks import ReplacementBlock
from .layers import ReplaceableLayer

__all__ = ['replace_module', 'splice', 'spliced', 'assemble', 'freeze']


def replace_module(model: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at ``path`` (``'features.3'``, ``'layer1.0.conv2'``) and return the module it replaced."""
    parent_path, _, attr = path.rpartition('.')
    parent = model.get_submodule(parent_path) if parent_path else model
    old = parent.get_submodule(attr)
    setattr(parent, attr, new)  # nn.Sequential children are attributes named '0', '1', ...
    return old


def splice(model: nn.Module, layer: ReplaceableLayer, block: nn.Module) -> nn.Module:
    """Replace ``layer`` of ``model`` in place: its conv by ``block``, its norm (if any) by an identity."""
    replace_module(model, layer.conv, block)
    if layer.norm is not None:
        replace_module(model, layer.norm, nn.Identity())
    return model


@contextlib.contextmanager
def spliced(model: nn.Module, layer: ReplaceableLayer, block: nn.Module) -> Iterator[nn.Module]:
    """``model`` with ``block`` in place of ``layer`` inside the ``with``; the original modules come back after."""
    conv = replace_module(model, layer.conv, block)
    norm = replace_module(model, layer.norm, nn.Identity()) if layer.norm is not None else None
    try:
        yield model
    finally:
        replace_module(model, layer.conv, conv)
        if norm is not None:
            replace_module(model, layer.norm, norm)


def assemble(teacher: nn.Module, layers: Sequence[ReplaceableLayer], blocks: Mapping[str, nn.Module]) -> nn.Module:
    """A copy of ``teacher`` with ``blocks[layer.conv]`` spliced in for every layer that has one (the others keep
    the teacher's conv); the teacher itself is unchanged."""
    unknown = set(blocks) - {layer.conv for layer in layers}
    if unknown:
        raise KeyError(f'blocks for unknown layers: {sorted(unknown)}')
    student = copy.deepcopy(teacher)
    for layer in layers:
        if layer.conv in blocks:
            splice(student, layer, copy.deepcopy(blocks[layer.conv]))
    return student


def freeze(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Stop gradients for the modules named in ``names``: ``'1x1'`` means every 1x1 ``Conv2d`` of the teacher
    (those inside replacement blocks stay trainable), any other entry a module path and everything under it (e.g.
    ``'fc'``). Returns the frozen parameter names; an entry that matches nothing raises ``KeyError``."""
    inside_blocks = {id(m) for block in model.modules() if isinstance(block, ReplacementBlock)
                     for m in block.modules()}
    frozen: list[str] = []
    for entry in names:
        matched = False
        for path, module in model.named_modules():
            if entry == '1x1':
                hit = isinstance(module, nn.Conv2d) and max(module.kernel_size) == 1 and id(module) not in inside_blocks
            else:
                hit = path == entry
            if hit:
                matched = True
                for pname, p in module.named_parameters():
                    p.requires_grad_(False)
                    frozen.append(f'{path}.{pname}' if path else pname)
        if not matched and entry != '1x1':
            raise KeyError(f'freeze: no module named {entry!r}')
    return sorted(set(frozen))
