"""Load a trained teacher's weights from a Composer checkpoint or a plain state dict, without unpickling code.

``torch.load(..., weights_only=True)`` refuses a Composer checkpoint as it is: besides tensors it holds a few
harmless non-tensor objects (``datetime.timedelta`` in the timestamp, ``TorchVersion`` in the metadata, numpy arrays
and dtypes in the saved RNG state). :func:`algorithms.common.checkpoint_loading.safe_load` allow-lists exactly those
classes for the duration of the load and keeps ``weights_only=True``: anything else in the file is still refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from ..common.checkpoint_loading import safe_load

HEADS_ATTR = 'distillation_heads'  # as in distillation_term.py (kept here so this module stands alone)

__all__ = ['load_teacher_weights', 'module_weights']

# Wrapper prefixes: ComposerClassifier keeps its network in `.module`, HuggingFaceModel in `.model`, DDP adds
# `module.`, torch.compile adds `_orig_mod.`.
_PREFIXES = ('', 'module.', 'model.', '_orig_mod.')


def _model_state_dict(obj: Any, path: str) -> Mapping[str, Any]:
    """The model's weights in a loaded file: a Composer checkpoint (``obj['state']['model']``), a
    ``{'state_dict': ...}`` or ``{'model': ...}`` wrapper, or a plain state dict."""
    if isinstance(obj, Mapping):
        state = obj.get('state')
        if isinstance(state, Mapping) and isinstance(state.get('model'), Mapping):
            return state['model']
        for key in ('state_dict', 'model'):
            if isinstance(obj.get(key), Mapping):
                return obj[key]
        if obj and all(isinstance(k, str) for k in obj) and any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise ValueError(f'{path} holds neither a Composer checkpoint nor a state dict (got {type(obj).__name__})')


def _rename(keys: list[str], strip: str, add: str) -> dict[str, str]:
    return {key: add + key[len(strip):] for key in keys}


def _match_keys(source: Mapping[str, Any], target: Mapping[str, Any]) -> tuple[dict[str, str], set[str], set[str]]:
    """The renaming (strip one wrapper prefix, add another) under which the source keys best match the target's;
    with the target keys it leaves missing and the source keys it leaves unexpected."""
    keys, wanted = list(source), set(target)
    best = None
    for strip in _PREFIXES:
        if not all(key.startswith(strip) for key in keys):
            continue
        for add in _PREFIXES:
            renamed = _rename(keys, strip, add)
            overlap = len(wanted & set(renamed.values()))
            if best is None or overlap > best[0]:
                best = (overlap, renamed)
            if overlap == len(wanted) == len(renamed):
                return renamed, set(), set()
    assert best is not None
    renamed = best[1]
    new_keys = set(renamed.values())
    return renamed, wanted - new_keys, {old for old, new in renamed.items() if new not in wanted}


def module_weights(module: nn.Module, path: Union[str, os.PathLike], mmap: bool = False) -> dict[str, Any]:
    """The weights saved at ``path``, renamed to ``module``'s state-dict keys and checked against its keys and
    shapes (see :func:`load_teacher_weights`). ``module`` may live on the ``meta`` device (only its keys and shapes
    are read); with ``mmap=True`` the file is memory-mapped, so tensors that are never used are never read."""
    path = os.fspath(path)
    obj = safe_load(path, map_location='cpu', mmap=mmap)  # FileNotFoundError if there is no file
    source = _model_state_dict(obj, path)
    # A student trained with a head-owning term (FitNets, CRD) carries its heads; they are not part of the network.
    source = {k: v for k, v in source.items() if HEADS_ATTR + '.' not in k}
    target = module.state_dict()
    renamed, missing, unexpected = _match_keys(source, target)
    if missing or unexpected:
        raise ValueError(f'the weights in {path} do not fit {type(module).__name__}: '
                         f'missing keys {sorted(missing)[:5]}{" ..." if len(missing) > 5 else ""}, '
                         f'unexpected keys {sorted(unexpected)[:5]}{" ..." if len(unexpected) > 5 else ""}')
    weights = {renamed[key]: value for key, value in source.items()}
    bad_shapes = [f'{key}: checkpoint {tuple(value.shape)} vs model {tuple(target[key].shape)}'
                  for key, value in weights.items()
                  if isinstance(value, torch.Tensor) and isinstance(target[key], torch.Tensor) and
                  value.shape != target[key].shape]
    if bad_shapes:
        raise ValueError(f'the weights in {path} do not fit {type(module).__name__}: shape mismatch in '
                         f'{"; ".join(bad_shapes[:5])}{" ..." if len(bad_shapes) > 5 else ""}')
    return weights


def load_teacher_weights(module: nn.Module, path: Union[str, os.PathLike]) -> nn.Module:
    """Load the weights saved at ``path`` into ``module`` (in place) and return ``module``.

    ``path`` is a local Composer checkpoint (as written by ``Trainer(save_folder=...)``) or a ``torch.save``-d
    state dict. The keys may carry a wrapper prefix on either side (``module.`` of ``ComposerClassifier``,
    ``model.`` of ``HuggingFaceModel``, ``_orig_mod.`` of ``torch.compile``): a checkpoint of a
    ``ComposerClassifier`` loads into the bare network and the other way round. Loads with ``weights_only=True``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the keys or shapes do not match ``module`` (the first mismatching keys are named).
    """
    module.load_state_dict(module_weights(module, path), strict=True)
    return module
