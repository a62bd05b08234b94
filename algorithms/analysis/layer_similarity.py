"""Per-layer representation similarity of two models on the same inputs: SVCCA or linear CKA.

Layers are named by dotted module path (``layer1``, ``layer3.0.conv2``, ``fc``), resolved by
:class:`algorithms.common.feature_taps.FeatureTaps` through the ``ComposerClassifier``/DDP/``torch.compile`` wrappers;
their outputs are captured with forward hooks in eval mode under ``torch.no_grad()``. Both models see every batch
of the loader once, the same batch in the same order, so column ``j`` is the same datapoint for both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Union

import torch
from torch import nn

from ..common.feature_taps import FeatureTaps
from .activations import CONV_MODES, conv_activations
from .cka import linear_cka
from .svcca import svcca

__all__ = ['METHODS', 'collect_activations', 'layer_similarity']

log = logging.getLogger(__name__)

METHODS = ('svcca', 'cka')
Device = Union[str, torch.device, None]


class _CloningTaps(FeatureTaps):
    """FeatureTaps that keep a copy: a later in-place op (``ReLU(inplace=True)`` after a tapped ``bn1``) would
    otherwise change the captured output before the forward returns."""

    def _keep(self, value: Any) -> Any:
        value = super()._keep(value)
        return value.clone() if isinstance(value, torch.Tensor) else value


def _model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device('cpu')


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _forward(model: nn.Module, batch: Any) -> None:
    """A Composer model takes the whole batch; a plain network the inputs (the first item of a tuple/list)."""
    from composer.models import ComposerModel

    if isinstance(model, ComposerModel) or not isinstance(batch, (tuple, list)):
        model(batch)
    else:
        model(batch[0])


@contextmanager
def _tapped(model: nn.Module, layers: list[str]) -> Iterator[FeatureTaps]:
    """``model`` in eval mode with taps on ``layers``; its mode is restored and the hooks removed on exit."""
    was_training = model.training
    taps = _CloningTaps(model, layers, detach=True, capture_inputs=False)  # KeyError for an unknown layer
    model.eval()
    try:
        yield taps
    finally:
        taps.remove()
        model.train(was_training)


def _features(model: nn.Module, taps: FeatureTaps, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
    taps.clear()
    _forward(model, _to_device(batch, device))
    if taps.missing():
        raise ValueError(f'layers {taps.missing()} did not run in the forward pass of {type(model).__name__}')
    return dict(taps.outputs)


def _batches(loader: Iterable, max_batches: Optional[int]) -> Iterator[Any]:
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            return
        yield batch


def collect_activations(model: nn.Module, loader: Iterable, layers: Iterable[str], max_batches: Optional[int] = None,
                        device: Device = None) -> dict[str, torch.Tensor]:
    """Each named layer's outputs over the loader's batches, concatenated along the batch dimension.

    Args:
        model: any ``nn.Module`` or Composer model (called with the whole batch; a plain network gets the first
            item of a tuple/list batch).
        loader: an iterable of batches.
        layers: dotted module paths (``KeyError`` naming the closest ones for an unknown name).
        max_batches: stop after this many batches (``None``: all).
        device: moves ``model`` there first; ``None`` leaves it where it is. Batches follow the model.

    Returns:
        ``{layer: tensor}`` on the model's device, e.g. ``[N, C, H, W]`` for a conv layer: turn it into
        ``neurons x datapoints`` with :func:`~algorithms.analysis.conv_activations`. Everything is kept in memory:
        for many images and early conv layers prefer :func:`layer_similarity`, which subsamples as it goes.
    """
    layers = list(layers)
    if device is not None:
        model.to(device)
    dev = _model_device(model)
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with _tapped(model, layers) as taps, torch.no_grad():
        for batch in _batches(loader, max_batches):
            for name, out in _features(model, taps, batch, dev).items():
                chunks[name].append(out)
    if not any(chunks.values()):
        raise ValueError('the loader yielded no batch')
    return {name: torch.cat(parts) for name, parts in chunks.items()}


class _ColumnSample:
    """A uniform sample without replacement of at most ``limit`` datapoints (columns) from a stream of batches,
    the same columns for both models: every column draws a key from one seeded generator and the ``limit``
    smallest keys are kept (a bottom-k sketch), so memory stays at ``2 x limit`` columns whatever the data."""

    def __init__(self, limit: Optional[int], generator: torch.Generator) -> None:
        self.limit, self.generator = limit, generator
        self.a: Optional[torch.Tensor] = None
        self.b: Optional[torch.Tensor] = None
        self.keys = torch.empty(0)

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = a.float(), b.float()
        if self.a is not None:
            a, b = torch.cat([self.a, a], dim=1), torch.cat([self.b, b], dim=1)
        if self.limit is not None:
            keys = torch.cat([self.keys, torch.rand(a.shape[1] - self.keys.numel(), generator=self.generator)])
            if keys.numel() > self.limit:
                keep = torch.topk(keys, self.limit, largest=False, sorted=False).indices.sort().values
                keys = keys[keep]
                a, b = a[:, keep.to(a.device)], b[:, keep.to(b.device)]
            self.keys = keys
        self.a, self.b = a, b


def layer_similarity(model_a: nn.Module, model_b: nn.Module, loader: Iterable, layers: Iterable[str],
                     method: str = 'svcca', conv_mode: str = 'positions', keep: Union[float, int] = 0.99,
                     max_datapoints: Optional[int] = 10_000, max_batches: Optional[int] = None,
                     device: Device = None, seed: int = 0, epsilon: float = 1e-10) -> list[dict[str, Any]]:
    """SVCCA or linear CKA between the same-named layers of two models, one row per layer.

    Args:
        model_a, model_b: the models compared (any ``nn.Module`` or Composer model); they may differ in width.
        loader: batches fed to both models, each batch once to both (so shuffling or augmentation cannot pair
            different inputs).
        layers: dotted module paths present in both models.
        method: ``'svcca'`` (:func:`~algorithms.analysis.svcca`) or ``'cka'`` (:func:`~algorithms.analysis.linear_cka`).
        conv_mode: ``'positions'`` (each spatial position a datapoint: ``C x (B*H*W)``) or ``'pooled'`` (spatial
            mean: ``C x B``); see :func:`~algorithms.analysis.conv_activations`.
        keep: SVCCA's kept directions (share of variance or a count); ignored by CKA.
        max_datapoints: when a layer yields more datapoints than this (spatial positions add up fast), a uniform
            sample of that many columns without replacement, drawn with ``torch.Generator().manual_seed(seed)``
            and identical for both models; ``None`` keeps all.
        max_batches: batches of ``loader`` used (``None``: all).
        device: moves both models there; ``None`` leaves each where it is (``model_b``'s features then move to
            ``model_a``'s device, where the similarity is computed).
        seed: seeds the column sample.
        epsilon: SVCCA's regulariser (see :func:`~algorithms.analysis.svcca`).

    Returns:
        ``[{'layer', 'method', 'similarity', 'neurons', 'neurons_b', 'datapoints', 'kept_a', 'kept_b'}, ...]``
        in the order of ``layers``: ``neurons`` of model_a's layer (``neurons_b`` of model_b's), ``datapoints``
        used, SVD directions kept (``None`` for CKA).

    Raises:
        KeyError: a layer name missing from a model. ValueError: a bad method/mode, layers whose spatial sizes
        differ in ``'positions'`` mode, or too few datapoints for a layer's neurons (SVCCA).
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if conv_mode not in CONV_MODES:
        raise ValueError(f"conv_mode: expected one of {', '.join(CONV_MODES)}, got {conv_mode!r}")
    layers = list(dict.fromkeys(layers))
    if device is not None:
        model_a.to(device)
        model_b.to(device)
    dev_a, dev_b = _model_device(model_a), _model_device(model_b)
    generator = torch.Generator().manual_seed(seed)
    samples = {name: _ColumnSample(max_datapoints, generator) for name in layers}
    with _tapped(model_a, layers) as taps_a, _tapped(model_b, layers) as taps_b, torch.no_grad():
        for batch in _batches(loader, max_batches):
            feats_a = _features(model_a, taps_a, batch, dev_a)
            feats_b = _features(model_b, taps_b, batch, dev_b)
            for name in layers:
                fa, fb = feats_a[name], feats_b[name].to(dev_a)
                ca, cb = conv_activations(fa, conv_mode), conv_activations(fb, conv_mode)
                if ca.shape[1] != cb.shape[1]:
                    raise ValueError(f'layer {name}: output shapes {tuple(fa.shape)} and {tuple(fb.shape)} give '
                                     f"different datapoints; use conv_mode='pooled'")
                samples[name].add(ca, cb)
    rows = []
    for name in layers:
        a, b = samples[name].a, samples[name].b
        if a is None:
            raise ValueError('the loader yielded no batch')
        try:
            if method == 'svcca':
                result = svcca(a, b, keep=keep, epsilon=epsilon)
                similarity, kept = result.mean, (result.kept1, result.kept2)
            else:
                similarity, kept = linear_cka(a.T, b.T), (None, None)
        except ValueError as e:
            raise ValueError(f'layer {name}: {e}') from None
        rows.append({'layer': name, 'method': method, 'similarity': similarity, 'neurons': a.shape[0],
                     'neurons_b': b.shape[0], 'datapoints': a.shape[1], 'kept_a': kept[0], 'kept_b': kept[1]})
        log.info('%s %s: %.4f (%d/%d neurons, %d datapoints)', name, method, similarity, a.shape[0], b.shape[0],
                 a.shape[1])
    return rows
