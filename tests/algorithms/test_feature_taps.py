"""Feature taps: the right tensors, through wrappers, with clear errors for unknown names."""

from __future__ import annotations

import pytest
import torch
from composer.models import ComposerClassifier
from torch import nn

from algorithms.common.feature_taps import FeatureTaps, capture, feature_shape, resolve_module


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


def test_outputs_and_inputs_are_the_modules_own():
    torch.manual_seed(0)
    net, x = Net(), torch.randn(2, 1, 8, 8)
    with FeatureTaps(net, ['stem', 'block.1', 'head.2']) as taps:
        out = net(x)
    stem = net.stem(x)
    torch.testing.assert_close(taps.outputs['stem'], stem)
    torch.testing.assert_close(taps.inputs['block.1'], torch.relu(stem))
    torch.testing.assert_close(taps.outputs['block.1'], net.block(stem))
    torch.testing.assert_close(taps.outputs['head.2'], out)
    assert taps.outputs['block.1'].shape == (2, 6, 4, 4)


@pytest.mark.parametrize('name', ['block.1', 'module.block.1'])
def test_names_are_seen_through_wrappers(name):
    model = ComposerClassifier(Net(), num_classes=3)
    path, module = resolve_module(model, name)
    assert module is model.module.block[1] and path == 'module.block.1'
    ddp_like = nn.Module()
    ddp_like.module = model  # DDP keeps the wrapped model in .module
    assert resolve_module(ddp_like, name)[1] is model.module.block[1]


def test_unknown_name_names_the_closest():
    with pytest.raises(KeyError, match="no module named 'blok.1'.*block.1"):
        FeatureTaps(Net(), ['stem', 'blok.1'])


def test_gradients_flow_unless_detached_and_inactive_taps_capture_nothing():
    net, x = Net(), torch.randn(2, 1, 8, 8)
    taps = FeatureTaps(net, ['stem'])
    net(x)
    assert taps.outputs['stem'].requires_grad
    taps.remove()
    detached = FeatureTaps(net, ['stem'], detach=True)
    net(x)
    assert not detached.outputs['stem'].requires_grad
    detached.clear()
    detached.active = False
    net(x)
    assert detached.missing() == ['stem']
    detached.remove()
    net(x)
    assert detached.outputs == {}  # removed hooks capture nothing


def test_capture_and_feature_shape_leave_the_model_as_it_was():
    net = ComposerClassifier(Net(), num_classes=3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert feature_shape(net, 'block.1', (1, 8, 8)) == (6, 4, 4)
    assert net.training
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # BN stats untouched (eval forward)
    out, feats = capture(net.module, ['stem'], torch.zeros(1, 1, 8, 8))
    assert out.shape == (1, 3) and feats['stem'].shape == (1, 4, 8, 8)
