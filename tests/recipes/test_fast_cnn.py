"""The default job's fast conv net: parameters counted by hand, the feature-map sizes its pools give, bad options."""
from __future__ import annotations

import pytest
import torch

from recipes.core.errors import ConfigError
from recipes.models.registry import build_model, build_module


def test_parameters_and_feature_map_sizes() -> None:
    model = build_module('fast_cnn', num_classes=10, in_channels=1)
    # conv weights 1*16*9 + 16*32*9 + 32*64*9 + 64*128*9, BN weight+bias 2*(16+32+64+128), fc 128*10 + 10
    assert sum(p.numel() for p in model.parameters()) == 144 + 4608 + 18432 + 73728 + 2 * 240 + 1290 == 98682
    sizes = {}
    for name in ('stage1', 'stage2', 'stage3', 'stage4'):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, o.shape))
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)
    assert [tuple(sizes[f'stage{i}'][1:]) for i in range(1, 5)] == [(16, 14, 14), (32, 14, 14), (64, 7, 7),
                                                                      (128, 3, 3)]


def test_widths_and_pools_options() -> None:
    model = build_module('fast_cnn', widths=[8, 8], pools=[True, True], num_classes=3, in_channels=3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3) and model.fc.in_features == 8
    with pytest.raises(ConfigError, match=r'model: widths and pools must have the same non-zero length'):
        build_model('fast_cnn', widths=[8, 8], pools=[True])
    with pytest.raises(ConfigError, match=r'model\.widths: expected a non-empty list of positive ints'):
        build_model('fast_cnn', widths=[8, 0], pools=[True, True])
    with pytest.raises(ConfigError, match=r'model\.pools: expected a non-empty list of booleans'):
        build_model('fast_cnn', widths=[8], pools=1)


def test_flip_tta_averages_the_mirrored_logits_in_eval_mode_only() -> None:
    torch.manual_seed(0)
    model = build_module('fast_cnn', in_channels=1, flip_tta=True)
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    torch.testing.assert_close(model(x), (model.logits(x) + model.logits(x.flip(-1))) / 2)
    assert not torch.allclose(model(x), model.logits(x))
    model.train()
    torch.testing.assert_close(model(x), model.logits(x))
