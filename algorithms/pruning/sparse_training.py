"""Training with a fixed sparsity mask from the first step: post-pruning re-initialisation and random sparse
initialisation (the seed's chapter II controls for magnitude pruning), as Composer Algorithms.

* :meth:`FixedMaskTraining.from_checkpoint` (``reinit=True``): the mask of a magnitude-pruned model, the weights of a
  fresh initialisation (the student you build), trained from scratch with the mask enforced ("post-pruning
  re-initialisation"; Liu et al., "Rethinking the Value of Network Pruning", 2019). ``reinit=False`` keeps the
  pruned model's weights instead (fine-tuning a pruned model with its mask fixed).
* :class:`RandomSparseInit`: a random mask per layer at a given sparsity, from scratch.
"""

from __future__ import annotations

import os
import warnings
from types import SimpleNamespace
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

import torch
from torch import nn

from composer.core import Algorithm, Event, State
from composer.loggers import Logger

from ..common.checkpoint_loading import safe_load
from ..common.feature_taps import WRAPPER_ATTRS
from ._composer import check_unsharded, enforce, log_sparsity, masks_from_state, masks_on_model, masks_state
from .masks import _all_layers, check_sparsity, mask_gradients, masks_to_cpu, network, prunable_layers, random_masks

__all__ = ['FixedMaskTraining', 'RandomSparseInit', 'masks_from_checkpoint', 'checkpoint_model_state']

#: The algorithms whose checkpointed state carries masks, most specific first.
MASK_ALGORITHMS = ('MagnitudePruning', 'FixedMaskTraining', 'RandomSparseInit')


def _load(checkpoint: Union[str, os.PathLike, Mapping[str, Any]]) -> Mapping[str, Any]:
    if isinstance(checkpoint, Mapping):
        return checkpoint
    loaded = safe_load(checkpoint)
    if not isinstance(loaded, Mapping):
        raise ValueError(f'{checkpoint}: expected a Composer checkpoint or a state dict, got {type(loaded).__name__}')
    return loaded


def checkpoint_model_state(checkpoint: Union[str, os.PathLike, Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """The model's state dict in a Composer checkpoint (``['state']['model']``) or a plain state dict."""
    ckpt = _load(checkpoint)
    state = ckpt.get('state')
    if isinstance(state, Mapping) and isinstance(state.get('model'), Mapping):
        return dict(state['model'])
    for key in ('state_dict', 'model'):
        if isinstance(ckpt.get(key), Mapping):
            return dict(ckpt[key])
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return dict(ckpt)
    raise ValueError('no model weights found: expected a Composer checkpoint (state.model) or a state dict of tensors')


def _algorithm_masks(ckpt: Mapping[str, Any]) -> Optional[dict[str, torch.Tensor]]:
    state = ckpt.get('state')
    algorithms = state.get('algorithms') if isinstance(state, Mapping) else None
    if isinstance(algorithms, Mapping):
        algorithms = list(algorithms.items())
    if not isinstance(algorithms, (list, tuple)):
        return None
    pairs = [tuple(a) for a in algorithms if isinstance(a, (list, tuple)) and len(a) == 2]
    found = {name: value for name, value in pairs if isinstance(value, Mapping) and value.get('masks')}
    for name in MASK_ALGORITHMS:
        if name in found:
            return masks_from_state(found[name]['masks'], f'{name} state in the checkpoint')
    return None


def masks_from_checkpoint(
        checkpoint: Union[str, os.PathLike, Mapping[str, Any]]) -> tuple[dict[str, torch.Tensor], str]:
    """The masks of a pruned model and where they came from: ``(masks, 'algorithm')`` from the checkpointed state of
    :class:`~.MagnitudePruning` (or of a fixed-mask run), else ``(masks, 'zeros')``: the zero pattern of every weight
    with two or more dimensions that holds at least one exact zero (keyed by the checkpoint's module paths, e.g.
    ``module.0``; wrapper prefixes are resolved against the model at ``FIT_START``). Loaded with
    ``torch.load(weights_only=True)``. ``ValueError`` if neither is there (not a pruned model)."""
    ckpt = _load(checkpoint)
    masks = _algorithm_masks(ckpt)
    if masks:
        return masks, 'algorithm'
    weights = checkpoint_model_state(ckpt)
    masks = {key[:-len('.weight')]: (value != 0).cpu()
             for key, value in weights.items()
             if key.endswith('.weight') and isinstance(value, torch.Tensor) and value.dim() >= 2 and
             bool((value == 0).any())}
    if not masks:
        raise ValueError('the checkpoint holds no pruning masks (no MagnitudePruning state) and no weight with exact '
                         'zeros: it is not a pruned model')
    return masks, 'zeros'


def _strip_to(key: str, known: set[str]) -> Optional[str]:
    """``key`` with leading wrapper prefixes (``module.``, ``model.``, ``_orig_mod.``) removed until it is in
    ``known``; ``None`` if it never is."""
    while key not in known:
        prefix = next((a + '.' for a in WRAPPER_ATTRS if key.startswith(a + '.')), None)
        if prefix is None:
            return None
        key = key[len(prefix):]
    return key


class FixedMaskTraining(Algorithm):
    """Train with a fixed set of masks: pruned weights are zero from the first step to the last.

    At ``Event.FIT_START`` the masks are checked against the model (an unknown layer raises ``KeyError``, a mask of
    the wrong shape ``ValueError`` naming the layer and both shapes, before any step) and applied to the weights and
    the optimizer state. Then, as in :class:`~.MagnitudePruning`, the gradients of pruned weights are zeroed at
    ``Event.AFTER_TRAIN_BATCH`` (before ``optimizer.step()``) and the masks re-applied to weights and optimizer state
    at ``Event.BATCH_END`` (after ``optimizer.step()``). The masks are in :meth:`state_dict`, so a resumed run keeps
    them. Logged: ``pruning/sparsity/<layer>`` and ``pruning/global_sparsity`` at fit start and each epoch end.

    Args:
        masks: ``{layer name: bool tensor}`` (``True`` = kept), names in the bare network or with wrapper prefixes.
        weights: optional state dict to copy into the model at the first ``FIT_START`` of the run (not on resume);
            ``None`` keeps the model's own initialisation.
        source: where the masks came from (``'masks'``, ``'algorithm'``, ``'zeros'``); with ``'zeros'`` a mask whose
            name is not a conv / linear layer of the model (e.g. an embedding's padding row) is skipped with a
            warning instead of raising.

    Use :meth:`from_checkpoint` for post-pruning re-initialisation and :class:`RandomSparseInit` for random masks.
    """

    def __init__(self, masks: Mapping[str, torch.Tensor], weights: Optional[Mapping[str, torch.Tensor]] = None,
                 source: str = 'masks'):
        if not isinstance(masks, Mapping):
            raise ValueError(f'masks must be a mapping of layer names to bool tensors, got {type(masks).__name__}')
        self.masks: dict[str, torch.Tensor] = masks_from_state(dict(masks), type(self).__name__)
        self.source = source
        self._weights = None if weights is None else dict(weights)
        self.weights_loaded = False
        self.path: Optional[str] = None  # set by from_checkpoint
        self.reinit: Optional[bool] = None

    @classmethod
    def from_checkpoint(cls, path: Union[str, os.PathLike], reinit: bool = True) -> 'FixedMaskTraining':
        """The masks of the pruned model in the checkpoint at ``path`` (see :func:`masks_from_checkpoint`).

        ``reinit=True`` (post-pruning re-initialisation): only the masks are taken; every kept weight keeps the
        fresh initialisation of the model you give the Trainer (build it anew, do not load the pruned weights).
        ``reinit=False``: the checkpoint's weights are copied into the model at the start of the run, then trained
        with the mask fixed (fine-tuning). The file is read with ``torch.load(weights_only=True)``.
        """
        ckpt = _load(path)
        masks, source = masks_from_checkpoint(ckpt)
        weights = None if reinit else checkpoint_model_state(ckpt)
        algorithm = cls(masks, weights=weights, source=source)
        algorithm.path = str(path)
        algorithm.reinit = bool(reinit)
        return algorithm

    def __repr__(self) -> str:
        return f'{type(self).__name__}(layers={len(self.masks)}, source={self.source!r})'

    # --- model side ---------------------------------------------------------------------------------------------
    def check_model(self, model: nn.Module) -> None:
        """Raise now (before training) if the masks do not fit ``model``: ``KeyError`` for an unknown layer,
        ``ValueError`` naming the layer and both shapes for a misfit."""
        if self.masks:
            self._checked_masks(SimpleNamespace(model=model))  # type: ignore[arg-type]

    def _checked_masks(self, state: State) -> dict[str, torch.Tensor]:
        masks = self.masks
        if self.source == 'zeros':
            known = _all_layers(network(state.model))
            masks = {}
            for name, mask in self.masks.items():
                canonical = _strip_to(name, set(known))
                if canonical is None:
                    warnings.warn(f'{type(self).__name__}: {name!r} has zeros in the checkpoint but is not a conv / '
                                  'linear layer of the model; left unmasked')
                    continue
                masks[canonical] = mask
        return masks_on_model(state.model, masks)

    def _load_weights(self, state: State) -> None:
        net = network(state.model)
        own = net.state_dict()
        mapped = {}
        for key, value in self._weights.items():
            canonical = _strip_to(key, set(own))
            if canonical is not None:
                mapped[canonical] = value
        missing = sorted(set(own) - set(mapped))
        if missing:
            raise ValueError(f'{type(self).__name__}: the checkpoint\'s weights do not fit the model; missing '
                             f'{", ".join(missing[:8])}')
        net.load_state_dict(mapped, strict=True)

    def prepare(self, state: State) -> None:
        """Hook for subclasses: make ``self.masks`` at ``FIT_START`` (before they are checked and applied)."""

    # --- Composer hooks -----------------------------------------------------------------------------------------
    def match(self, event: Event, state: State) -> bool:
        return event in (Event.FIT_START, Event.AFTER_TRAIN_BATCH, Event.BATCH_END, Event.EPOCH_END)

    def apply(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.FIT_START:
            check_unsharded(state, self)
            self.prepare(state)
            masks = self._checked_masks(state)  # every mask checked before any weight is touched
            if self._weights is not None and not self.weights_loaded:
                self._load_weights(state)
                self._weights = None  # the model holds them now; a resumed run must not reload them
                self.weights_loaded = True
            self.masks = masks
            enforce(state, self.masks)
            log_sparsity(logger, state, self.masks)
        elif event == Event.AFTER_TRAIN_BATCH:
            mask_gradients(state.model, self.masks)
        elif event == Event.BATCH_END:
            enforce(state, self.masks)
        elif event == Event.EPOCH_END:
            log_sparsity(logger, state, self.masks)

    # --- checkpointing ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {'repr': repr(self), 'masks': masks_state(self.masks), 'weights_loaded': self.weights_loaded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        masks = masks_from_state(state.get('masks'), f'{type(self).__name__} state')
        if masks:
            self.masks = masks  # saved under the model's own layer names (resolved at FIT_START)
        self.weights_loaded = bool(state.get('weights_loaded', self.weights_loaded))
        if self.weights_loaded:
            self._weights = None


class RandomSparseInit(FixedMaskTraining):
    """Random sparse initialisation: each prunable layer gets a random mask at ``sparsity`` (exactly
    ``round(sparsity * numel)`` weights pruned per layer), drawn at ``Event.FIT_START`` from the algorithm's own
    ``torch.Generator`` seeded with ``seed`` (the global RNG is untouched), then enforced for the whole run as in
    :class:`FixedMaskTraining`. The masks are in :meth:`state_dict`: a resumed run does not draw new ones.

    Args:
        sparsity: the fraction of each layer's weights pruned, strictly between 0 and 1.
        seed: seed of the masks' generator (different seeds, different masks).
        exclude: layers left dense, as in :func:`~.masks.prunable_layers` (default: the final classifier).
    """

    def __init__(self, sparsity: float, seed: int = 0, exclude: Optional[Iterable[str]] = None):
        super().__init__({})
        self.sparsity = check_sparsity(sparsity)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f'seed must be an int, got {seed!r}')
        self.seed = seed
        if isinstance(exclude, str):
            exclude = [exclude]
        self.exclude = None if exclude is None else list(exclude)

    def __repr__(self) -> str:
        return f'RandomSparseInit(sparsity={self.sparsity}, seed={self.seed}, exclude={self.exclude!r})'

    def check_model(self, model: nn.Module) -> None:
        """Raise ``KeyError`` now (before training) if ``exclude`` names a layer ``model`` lacks."""
        prunable_layers(model, self.exclude)

    def prepare(self, state: State) -> None:
        if not self.masks:
            generator = torch.Generator().manual_seed(self.seed)
            layers = prunable_layers(state.model, self.exclude)
            self.masks = masks_to_cpu(random_masks(state.model, self.sparsity, layers, generator))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), 'sparsity': self.sparsity, 'seed': self.seed}
