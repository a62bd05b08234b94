"""Models by name: ``build_model(name, **options)`` returns a ready ``ComposerModel``.

``COMPOSER_MODELS`` maps a name to a builder of a ``ComposerModel`` (:func:`register_model` adds one: a Hugging
Face masked LM with MLM metrics registers the same way as a CIFAR ResNet). The image classifiers come from
``MODELS``, pure builders of a freshly initialised ``nn.Module`` that take ``num_classes`` and ``in_channels`` (
``convnet`` also takes ``hidden``), wrapped by :func:`classifier` in a ``ComposerClassifier`` with top-1 accuracy.
A builder's keyword options are its signature: a YAML key that is not one is refused, naming the allowed ones.
Memory format, device and precision are left to the Trainer.
"""
from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable

from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from recipes.models.architectures import bert, cifar_resnet, convnet, fast_cnn, vgg
from recipes.core.errors import ConfigError
from recipes.models.glue_models import bert_classifier

if TYPE_CHECKING:
    from composer.models import ComposerClassifier

__all__ = ['MODELS', 'COMPOSER_MODELS', 'register_model', 'classifier', 'build_module', 'build_model',
           'model_options']


def _torchvision_resnet(arch: str) -> Callable[..., nn.Module]:
    """A builder for torchvision's ``arch`` (no pretrained weights), with a new stem for ``in_channels != 3``."""

    def build(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
        if in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(model.conv1.weight, mode='fan_out', nonlinearity='relu')
        return model

    build.__name__ = arch
    build.__doc__ = f'torchvision {arch} (weights=None); the stem conv is replaced when in_channels != 3.'
    return build


MODELS: dict[str, Callable[..., nn.Module]] = {
    'resnet18': _torchvision_resnet('resnet18'),
    'resnet34': _torchvision_resnet('resnet34'),
    'resnet50': _torchvision_resnet('resnet50'),
    'cifar_resnet8': cifar_resnet.resnet8,
    'cifar_resnet14': cifar_resnet.resnet14,
    'cifar_resnet20': cifar_resnet.resnet20,
    'cifar_resnet32': cifar_resnet.resnet32,
    'cifar_resnet44': cifar_resnet.resnet44,
    'cifar_resnet56': cifar_resnet.resnet56,
    'cifar_resnet110': cifar_resnet.resnet110,
    'cifar_resnet8x4': cifar_resnet.resnet8x4,
    'cifar_resnet32x4': cifar_resnet.resnet32x4,
    'vgg16': vgg.vgg16,
    'vgg_small': vgg.vgg_small,
    'convnet': convnet.convnet,
    'fast_cnn': fast_cnn.fast_cnn,
}


def classifier(name: str) -> Callable[..., ComposerClassifier]:
    """A builder of ``MODELS[name]`` wrapped in a ``ComposerClassifier`` whose train and val metrics hold top-1
    accuracy (``metrics/train/MulticlassAccuracy``, ``metrics/eval/MulticlassAccuracy``; val also ``CrossEntropy``).
    It takes the same keyword options as the bare builder."""
    arch = MODELS[name]

    @functools.wraps(arch)
    def build(**kwargs: Any) -> ComposerClassifier:
        from composer.metrics import CrossEntropy
        from composer.models import ComposerClassifier

        module = arch(**kwargs)
        num_classes = int(kwargs.get('num_classes', _options(arch)['num_classes']))
        train_metrics = MulticlassAccuracy(num_classes=num_classes, average='micro')
        val_metrics = MetricCollection([CrossEntropy(), MulticlassAccuracy(num_classes=num_classes, average='micro')])
        return ComposerClassifier(module, num_classes=num_classes, train_metrics=train_metrics,
                                  val_metrics=val_metrics)

    return build


#: Every model a recipe can name -> a builder of its ``ComposerModel``.
COMPOSER_MODELS: dict[str, Callable[..., Any]] = {name: classifier(name) for name in MODELS}
COMPOSER_MODELS['bert_mlm'] = bert.bert_mlm  # Hugging Face BertForMaskedLM (recipes/models/architectures/bert.py)
COMPOSER_MODELS['bert_classifier'] = bert_classifier  # BertForSequenceClassification for GLUE (recipes/models/glue_models.py)


def register_model(name: str, builder: Callable[..., Any]) -> None:
    """Make ``name`` usable as ``model.name``; ``builder(**options)`` returns a ``ComposerModel``."""
    COMPOSER_MODELS[name] = builder


def _options(fn: Callable[..., Any]) -> dict[str, Any]:
    params = inspect.signature(fn).parameters
    return {k: p.default for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def model_options(name: str) -> dict[str, Any]:
    """The keyword options of model ``name`` with their defaults (raises ConfigError for an unknown name)."""
    if not isinstance(name, str) or name not in COMPOSER_MODELS:
        raise ConfigError(f'model.name: unknown model {name!r}; allowed: {", ".join(sorted(COMPOSER_MODELS))}')
    return _options(COMPOSER_MODELS[name])


def _check_options(name: str, kwargs: dict[str, Any]) -> None:
    allowed = model_options(name)
    for key, value in kwargs.items():
        if key not in allowed:
            raise ConfigError(f'model.{key}: unknown option for model {name!r}; allowed: {", ".join(allowed)}')
        default = allowed[key]
        if isinstance(default, int) and not isinstance(default, bool) and \
                (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f'model.{key}: expected a positive int, got {value!r}')
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f'model.{key}: expected true or false, got {value!r}')
        if isinstance(default, tuple) and default:
            kind = type(default[0])
            if not isinstance(value, (list, tuple)) or not value or not all(
                    isinstance(v, kind) and (kind is bool or (not isinstance(v, bool) and v > 0)) for v in value):
                raise ConfigError(f'model.{key}: expected a non-empty list of '
                                  f'{"booleans" if kind is bool else "positive ints"}, got {value!r}')


def build_module(name: str, **kwargs: Any) -> nn.Module:
    """Build the plain ``nn.Module`` registered in ``MODELS`` as ``name``; unknown names or keywords raise ConfigError."""
    if name not in MODELS:
        raise ConfigError(f'model.name: unknown network {name!r}; allowed: {", ".join(sorted(MODELS))}')
    _check_options(name, kwargs)
    return _built(MODELS[name], kwargs)


def build_model(name: str, **kwargs: Any) -> Any:
    """Build model ``name`` as a ``ComposerModel`` (see ``COMPOSER_MODELS``); unknown names or keywords raise
    ConfigError naming the key."""
    _check_options(name, kwargs)
    return _built(COMPOSER_MODELS[name], kwargs)


def _built(builder: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    try:
        return builder(**kwargs)
    except ConfigError:
        raise
    except ValueError as e:  # options that do not fit together (e.g. fast_cnn's widths and pools)
        raise ConfigError(f'model: {e}') from None
