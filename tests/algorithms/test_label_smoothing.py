"""algorithms/label_smoothing/label_smoothing.py: the fused label smoothing gives Composer's loss and Composer's training, with the
targets left as class indices, and falls back to Composer's soft targets where it cannot fuse."""
from __future__ import annotations

import functools

import pytest
import torch
from composer import Trainer
from composer.algorithms import LabelSmoothing as ComposerLabelSmoothing
from composer.algorithms.label_smoothing import smooth_labels
from composer.core import Callback, Event
from composer.loss import soft_cross_entropy
from torch.nn import functional as F

from algorithms.label_smoothing import LabelSmoothing
from tests.helpers.algorithm_settings import image_loader, tiny_net


def test_fused_loss_is_composers_smoothed_cross_entropy_by_hand():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(16, 5, generator=g), torch.randint(0, 5, (16,), generator=g)
    s = 0.2
    by_hand = ((1 - s) * -F.log_softmax(logits, 1).gather(1, y[:, None]).squeeze(1)
               - s * F.log_softmax(logits, 1).mean(1)).mean()
    fused = F.cross_entropy(logits, y, label_smoothing=s)
    composer = soft_cross_entropy(logits, smooth_labels(logits, y, smoothing=s))
    assert fused.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert composer.item() == pytest.approx(by_hand.item(), rel=1e-5)


class TargetsAtLoss(Callback):
    """Records the dtype of the batch's targets as the loss sees them (after the algorithms' BEFORE_LOSS)."""

    def __init__(self) -> None:
        self.dtypes: list[torch.dtype] = []

    def run_event(self, event, state, logger) -> None:
        if event == Event.BEFORE_LOSS:
            self.dtypes.append(state.batch[1].dtype)


def _train(algorithm, model=None) -> tuple[torch.nn.Module, TargetsAtLoss]:
    model = model or tiny_net(0)
    seen = TargetsAtLoss()
    trainer = Trainer(model=model, train_dataloader=image_loader(), max_duration='6ba', algorithms=[algorithm],
                      callbacks=[seen], optimizers=torch.optim.SGD(model.parameters(), lr=0.5), device='cpu',
                      progress_bar=False, seed=0)
    trainer.fit(duration='3ba')
    trainer.fit(duration='3ba')  # a second fit call fuses again
    trainer.close()
    return model, seen


def test_training_matches_composers_label_smoothing_and_keeps_index_targets():
    ours = LabelSmoothing(smoothing=0.3)
    fused, seen = _train(ours)
    reference, _ = _train(ComposerLabelSmoothing(smoothing=0.3))
    for a, b in zip(fused.state_dict().values(), reference.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)
    assert seen.dtypes == [torch.int64] * 6  # class indices throughout: fused in both fit calls
    assert fused._loss_fn is soft_cross_entropy and not ours.fused  # restored after fit


def test_a_custom_loss_falls_back_to_composers_soft_targets():
    model = tiny_net(0)
    model._loss_fn = lambda out, y: soft_cross_entropy(out, y)  # not Composer's default: left alone
    algorithm = LabelSmoothing(smoothing=0.3)
    _, seen = _train(algorithm, model)
    assert not algorithm.fused and seen.dtypes == [torch.float32] * 6  # Composer's soft targets
    reference, _ = _train(ComposerLabelSmoothing(smoothing=0.3))
    for a, b in zip(model.state_dict().values(), reference.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_smoothing_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r'label_smoothing.smoothing: expected a number in \[0, 1\]'):
        LabelSmoothing(smoothing=1.5)


def test_a_model_left_fused_by_a_failed_fit_is_not_smoothed_twice():
    model = tiny_net(0)
    model._loss_fn = functools.partial(F.cross_entropy, label_smoothing=0.7)  # as a fit that raised leaves it
    algorithm = LabelSmoothing(smoothing=0.3)
    fused, seen = _train(algorithm, model)
    reference, _ = _train(ComposerLabelSmoothing(smoothing=0.3))
    assert seen.dtypes == [torch.int64] * 6
    for a, b in zip(fused.state_dict().values(), reference.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)
