"""The model registry: shapes for every model, known parameter counts, and the errors a bad config gets."""
from __future__ import annotations

import pytest
import torch

from recipes.core.errors import ConfigError
from recipes.models.registry import MODELS, build_model, build_module, model_options


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('name', sorted(MODELS))
@pytest.mark.parametrize('in_channels', [1, 3])
def test_output_shape(name: str, in_channels: int) -> None:
    model = build_module(name, num_classes=7, in_channels=in_channels).eval()
    sizes = [64] if name.startswith('resnet') else [28, 32]
    with torch.no_grad():
        for size in sizes:
            out = model(torch.randn(2, in_channels, size, size))
            assert out.shape == (2, 7), (name, size)
            assert torch.isfinite(out).all()


def test_defaults_are_ten_classes_rgb() -> None:
    for name in MODELS:
        assert model_options(name)['num_classes'] == 10
        assert model_options(name)['in_channels'] == 3
    out = build_module('cifar_resnet8').eval()(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 10)


@pytest.mark.parametrize('name, num_classes, expected', [
    ('cifar_resnet8', 10, 78_042),        # ~78k (DESIGN.md calibration)
    ('cifar_resnet20', 10, 272_474),      # 0.27M, He et al. / RepDistiller
    ('cifar_resnet56', 100, 861_620),     # 0.86M, RepDistiller table (CIFAR-100)
    ('cifar_resnet8x4', 100, 1_233_540),  # 1.23M, RepDistiller table
    ('cifar_resnet32x4', 100, 7_433_860),  # 7.43M, RepDistiller table
])
def test_known_parameter_counts(name: str, num_classes: int, expected: int) -> None:
    assert n_params(build_module(name, num_classes=num_classes)) == expected


def test_torchvision_resnet_matches_torchvision() -> None:
    import torchvision

    assert n_params(build_module('resnet18', num_classes=1000)) == n_params(torchvision.models.resnet18())
    gray = build_module('resnet18', in_channels=1)
    assert gray.conv1.in_channels == 1 and gray.conv1.weight.shape == (64, 1, 7, 7)


def test_convnet_hidden_and_in_channels() -> None:
    model = build_module('convnet', num_classes=10, in_channels=1, hidden=32)
    assert model.fc1.out_features == 32 and model.conv1.in_channels == 1


def test_unknown_model_name() -> None:
    with pytest.raises(ConfigError, match=r'model\.name.*resnet_9000.*cifar_resnet8') as info:
        build_model('resnet_9000')
    assert '\n' not in str(info.value)


def test_unknown_model_option() -> None:
    with pytest.raises(ConfigError, match=r'model\.depth.*num_classes, in_channels'):
        build_module('cifar_resnet20', depth=3)
    with pytest.raises(ConfigError, match=r'model\.hidden'):
        build_module('cifar_resnet20', hidden=3)


@pytest.mark.parametrize('bad', [0, 2.5, True, '10'])
def test_bad_num_classes(bad: object) -> None:
    with pytest.raises(ConfigError, match=r'model\.num_classes: expected a positive int'):
        build_module('cifar_resnet8', num_classes=bad)


def test_build_model_is_a_composer_classifier_with_top1_accuracy() -> None:
    from composer.models import ComposerClassifier

    model = build_model('cifar_resnet8', num_classes=5, in_channels=1)
    assert isinstance(model, ComposerClassifier)
    assert 'MulticlassAccuracy' in model.get_metrics(is_train=True)
    assert {'MulticlassAccuracy', 'CrossEntropy'} <= set(model.get_metrics(is_train=False))
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 4])
    model.eval()
    logits = model((x, y))
    assert logits.shape == (4, 5)
    loss = model.loss(logits, (x, y))
    assert loss.ndim == 0 and torch.isfinite(loss)
    metric = model.get_metrics(is_train=False)['MulticlassAccuracy']
    model.update_metric((x, y), logits, metric)
    assert metric.compute().item() == pytest.approx((logits.argmax(1) == y).float().mean().item())
