"""Models by name: a registry of pure builders, and the Composer wrapper around them.

Every builder takes ``num_classes`` and ``in_channels`` as keywords (``convnet`` also takes ``hidden``) and returns
a freshly initialised ``nn.Module``; memory format, device and precision are left to the Trainer.
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from recipes.architectures import cifar_resnet, convnet, vgg
from recipes.errors import ConfigError

if TYPE_CHECKING:
    from composer.models import ComposerClassifier

__all__ = ['MODELS', 'build_module', 'build_model', 'model_options']


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
    'convnet': convnet.convnet,
}


def model_options(name: str) -> dict[str, Any]:
    """The keyword options of model ``name`` with their defaults (raises ConfigError for an unknown name)."""
    if name not in MODELS:
        raise ConfigError(f'model.name: unknown model {name!r}; allowed: {", ".join(sorted(MODELS))}')
    params = inspect.signature(MODELS[name]).parameters
    return {k: p.default for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def build_module(name: str, **kwargs: Any) -> nn.Module:
    """Build the plain ``nn.Module`` registered as ``name``; unknown names or keywords raise ConfigError."""
    allowed = model_options(name)
    for key, value in kwargs.items():
        if key not in allowed:
            raise ConfigError(f'model.{key}: unknown option for model {name!r}; allowed: {", ".join(allowed)}')
        if isinstance(allowed[key], int) and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f'model.{key}: expected a positive int, got {value!r}')
    return MODELS[name](**kwargs)


def build_model(name: str, **kwargs: Any) -> ComposerClassifier:
    """Build model ``name`` wrapped in a ``ComposerClassifier`` whose train and val metrics hold top-1 accuracy.

    Metrics are logged as ``metrics/train/MulticlassAccuracy`` and ``metrics/eval/MulticlassAccuracy``; the val
    metrics also hold ``CrossEntropy``.
    """
    from composer.metrics import CrossEntropy
    from composer.models import ComposerClassifier

    module = build_module(name, **kwargs)
    num_classes = int(kwargs.get('num_classes', model_options(name)['num_classes']))
    train_metrics = MulticlassAccuracy(num_classes=num_classes, average='micro')
    val_metrics = MetricCollection([CrossEntropy(), MulticlassAccuracy(num_classes=num_classes, average='micro')])
    return ComposerClassifier(module, num_classes=num_classes, train_metrics=train_metrics, val_metrics=val_metrics)
