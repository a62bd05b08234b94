"""GLUE metrics and scores against hand computations (recipes/data/text/glue_tasks.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recipes.data.text.glue_tasks import (TASKS, Accuracy, F1, MatthewsCorrelation, PearsonCorrelation, SpearmanCorrelation,
                                get_task, glue_score, metric_keys, task_metrics, task_score)

# Ten binary predictions as logits [N, 2]: the argmax is the second column when it is larger.
PRED = [1, 1, 1, 0, 0, 0, 0, 1, 1, 0]
GOLD = [1, 1, 0, 0, 0, 0, 1, 1, 1, 1]
# tp = 4 (0, 1, 7, 8), fp = 1 (2), fn = 2 (6, 9), tn = 3 (3, 4, 5)


def logits(classes: list[int], num_classes: int = 2) -> torch.Tensor:
    out = torch.zeros(len(classes), num_classes)
    out[torch.arange(len(classes)), torch.tensor(classes)] = 2.0
    return out - 1.0  # the chosen class at 1.0, the others at -1.0


def updated(metric, preds: torch.Tensor, target: list, chunks: int = 2) -> float:
    """The metric after updates in ``chunks`` batches (metrics accumulate over batches)."""
    target_t = torch.tensor(target)
    for p, t in zip(preds.chunk(chunks), target_t.chunk(chunks)):
        metric.update(p, t)
    return float(metric.compute())


def test_accuracy_counts_argmax_matches():
    assert updated(Accuracy(num_classes=2), logits(PRED), GOLD) == pytest.approx(7 / 10)
    three = logits([0, 1, 2, 2, 1, 0], 3)
    assert updated(Accuracy(num_classes=3), three, [0, 1, 2, 0, 0, 0]) == pytest.approx(4 / 6)


def test_f1_of_the_positive_class():
    # precision 4/5, recall 4/6: F1 = 2 * 0.8 * 0.6667 / (0.8 + 0.6667) = 8/11
    assert updated(F1(), logits(PRED), GOLD) == pytest.approx(8 / 11, abs=1e-6)


def test_matthews_correlation():
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (12 - 2) / sqrt(5*6*4*5) = 10 / sqrt(600)
    assert updated(MatthewsCorrelation(), logits(PRED), GOLD) == pytest.approx(10 / math.sqrt(600), abs=1e-6)
    # all predictions one class: undefined, reported as 0 (as scikit-learn and GLUE do)
    assert updated(MatthewsCorrelation(), logits([1] * 4), [1, 0, 1, 0]) == pytest.approx(0.0)


def phi(pred: list[int], gold: list[int]) -> float:
    """MCC as scikit-learn's ``matthews_corrcoef`` gives it: the Pearson correlation of the two 0/1 vectors,
    0 when either is constant (an independent route to the same number)."""
    x, y = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    sx, sy = x.std(), y.std()
    return 0.0 if sx == 0 or sy == 0 else float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))


@pytest.mark.parametrize('pred, gold', [
    ([1] * 4, [1, 1, 1, 0]),                  # torchmetrics gives 0.5774 here
    ([1] * 1043, [1] * 721 + [0] * 322),       # CoLA's validation size, all 1: torchmetrics +0.0256
    ([0] * 1043, [1] * 721 + [0] * 322),       # all 0: torchmetrics -0.0256
    ([1, 0, 1, 0], [1] * 4),                   # constant gold
    ([0] * 5, [0] * 5),                        # everything one class
])
def test_matthews_correlation_is_zero_when_undefined(pred, gold):
    # scikit-learn's matthews_corrcoef: 0 whenever the denominator is 0
    assert updated(MatthewsCorrelation(), logits(pred), gold) == 0.0


def test_matthews_correlation_equals_the_reference_on_random_cases():
    reference = phi  # sklearn's matthews_corrcoef is the Pearson correlation of the 0/1 vectors (0 when undefined)
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        gold = rng.integers(0, 2, n).tolist()
        pred = rng.integers(0, 2, n).tolist() if rng.random() < 0.8 else [int(rng.integers(0, 2))] * n
        value = updated(MatthewsCorrelation(), logits(pred), gold, chunks=min(3, n))
        assert value == pytest.approx(reference(gold, pred), abs=1e-12)
    # a hand case through the closed form: tp 3, fp 1, fn 2, tn 4 -> (12 - 2) / sqrt(4 * 5 * 5 * 6)
    pred, gold = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    assert updated(MatthewsCorrelation(), logits(pred), gold) == pytest.approx(10 / math.sqrt(600), abs=1e-12)


def test_pearson_correlation():
    # x = 1 2 3 4, y = 1 3 2 5: deviations (-1.5 -0.5 0.5 1.5), (-1.75 0.25 -0.75 2.25);
    # sxy = 2.625 - 0.125 - 0.375 + 3.375 = 5.5, sxx = 5, syy = 8.75 -> 5.5 / sqrt(43.75)
    preds = torch.tensor([[1.0], [2.0], [3.0], [4.0]])  # [N, 1] like a one-output head
    assert updated(PearsonCorrelation(), preds, [1.0, 3.0, 2.0, 5.0]) == pytest.approx(5.5 / math.sqrt(43.75),
                                                                                     abs=1e-6)


def test_spearman_correlation_with_ties():
    # preds 0.1 0.4 0.4 0.9 rank 1 2.5 2.5 4; gold 2 1 3 4 ranks 2 1 3 4: Pearson of the ranks
    # mean 2.5 each; d = (-1.5, 0, 0, 1.5), e = (-0.5, -1.5, 0.5, 1.5): sxy = 0.75 + 2.25 = 3, sxx = 4.5, syy = 5
    value = updated(SpearmanCorrelation(), torch.tensor([0.1, 0.4, 0.4, 0.9]), [2.0, 1.0, 3.0, 4.0])
    assert value == pytest.approx(3 / math.sqrt(4.5 * 5), abs=1e-6)


def test_each_task_has_its_metrics_and_labels():
    assert {name: t.num_labels for name, t in TASKS.items()} == {
        'mnli': 3, 'qqp': 2, 'qnli': 2, 'sst2': 2, 'cola': 2, 'stsb': 1, 'mrpc': 2, 'rte': 2}
    assert [type(m).__name__ for m in task_metrics('mrpc')] == ['Accuracy', 'F1']
    assert [type(m).__name__ for m in task_metrics('stsb')] == ['PearsonCorrelation', 'SpearmanCorrelation']
    assert [type(m).__name__ for m in task_metrics('cola')] == ['MatthewsCorrelation']
    assert task_metrics('mnli')[0].num_classes == 3
    assert metric_keys('mnli') == ['eval/Accuracy', 'eval_mismatched/Accuracy']
    assert metric_keys('qqp') == ['eval/Accuracy', 'eval/F1']
    assert TASKS['mnli'].splits == ('train', 'validation_matched', 'validation_mismatched', 'test_matched',
                                    'test_mismatched')
    with pytest.raises(ValueError, match=r"^model.task: unknown GLUE task 'wnli'; allowed: mnli, qqp"):
        get_task('wnli', 'model.task')


def test_task_scores_and_glue_score_of_a_table():
    table = {
        'mnli': {'eval/Accuracy': 0.84, 'eval_mismatched/Accuracy': 0.85},  # (84 + 85) / 2 = 84.5
        'qqp': {'eval/Accuracy': 0.91, 'eval/F1': 0.88},                    # 89.5
        'qnli': {'eval/Accuracy': 0.91},                                    # 91
        'sst2': {'eval/Accuracy': 0.93, 'eval/LossIgnored': 5.0},           # 93 (other keys are ignored)
        'cola': {'eval/MatthewsCorrelation': 0.57},                         # 57
        'stsb': {'eval/PearsonCorrelation': 0.89, 'eval/SpearmanCorrelation': 0.88},  # 88.5
        'mrpc': {'eval/Accuracy': 0.86, 'eval/F1': 0.90},                   # 88
        'rte': {'eval/Accuracy': 0.70},                                     # 70
    }
    scores = {task: task_score(task, metrics) for task, metrics in table.items()}
    assert scores == pytest.approx({'mnli': 84.5, 'qqp': 89.5, 'qnli': 91.0, 'sst2': 93.0, 'cola': 57.0,
                                    'stsb': 88.5, 'mrpc': 88.0, 'rte': 70.0})
    # (84.5 + 89.5 + 91 + 93 + 57 + 88.5 + 88 + 70) / 8 = 661.5 / 8
    assert glue_score(scores) == pytest.approx(661.5 / 8)
    with pytest.raises(KeyError, match='eval_mismatched/Accuracy'):
        task_score('mnli', {'eval/Accuracy': 0.8})


def test_metrics_update_from_huggingface_model_outputs():
    """Composer's HuggingFaceModel.update_metric calls metric.update(logits, labels): classification logits
    [N, C] and, for STS-B's one output, [N] after its squeeze."""
    from recipes.models.glue_models import bert_classifier

    model = bert_classifier(config='bert-tiny', task='stsb', vocab_size=32, max_position_embeddings=16)
    batch = {'input_ids': torch.tensor([[2, 5, 3], [2, 6, 3], [2, 7, 3]]),
             'attention_mask': torch.ones(3, 3, dtype=torch.long), 'labels': torch.tensor([0.5, 2.0, 4.0])}
    model.eval()
    outputs = model.eval_forward(dict(batch))
    assert outputs.shape == (3,)
    for metric in model.get_metrics(is_train=False).values():
        model.update_metric(batch, outputs, metric)
    expected = torch.corrcoef(torch.stack([outputs.detach(), batch['labels']]))[0, 1]
    assert float(model.get_metrics()['PearsonCorrelation'].compute()) == pytest.approx(float(expected), abs=1e-5)
