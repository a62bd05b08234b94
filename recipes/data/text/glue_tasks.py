"""The eight GLUE tasks: their data (hub name, text columns, labels, evaluation splits), metrics and scores.

=======  ==========================  ======  ====================================  ============================
task     text columns                labels  evaluation splits                     metrics (the task's score)
=======  ==========================  ======  ====================================  ============================
mnli     premise, hypothesis         3       validation_matched, _mismatched       accuracy on each (their mean)
qqp      question1, question2        2       validation                            accuracy, F1 (their mean)
qnli     question, sentence          2       validation                            accuracy
sst2     sentence                    2       validation                            accuracy
cola     sentence                    2       validation                            Matthews correlation
stsb     sentence1, sentence2        1       validation                            Pearson, Spearman (their mean)
mrpc     sentence1, sentence2        2       validation                            accuracy, F1 (their mean)
rte      sentence1, sentence2        2       validation                            accuracy
=======  ==========================  ======  ====================================  ============================

STS-B is a regression (one output, a similarity score in [0, 5]); F1 is that of the positive class (label 1), as
GLUE reports it. Every metric is a torchmetrics ``Metric`` that Composer's ``HuggingFaceModel`` updates with
``(logits, labels)``: classification metrics take the argmax of ``[N, num_labels]`` logits, the correlations take
``[N]`` (or ``[N, 1]``) predictions. Composer names a metric after its class: ``metrics/eval/Accuracy``,
``metrics/eval/F1``, ``metrics/eval/MatthewsCorrelation``, ``metrics/eval/PearsonCorrelation``,
``metrics/eval/SpearmanCorrelation``; MNLI's mismatched split is evaluated under the label ``eval_mismatched``.

Scores follow the GLUE leaderboard and MosaicML's BERT recipe (the seed's): every metric in percent, a task's score
is the mean of its metrics (MNLI: of its matched and mismatched accuracies), and the GLUE score is the mean of the
task scores (:func:`task_score`, :func:`glue_score`).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.classification import BinaryF1Score, MulticlassAccuracy
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

__all__ = ['GlueTask', 'TASKS', 'get_task', 'Accuracy', 'F1', 'MatthewsCorrelation', 'PearsonCorrelation',
           'SpearmanCorrelation', 'task_metrics', 'metric_keys', 'task_score', 'glue_score']


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task.

    Attributes:
        name: the key used everywhere (``sst2``), also its config name in the ``nyu-mll/glue`` hub dataset.
        text_columns: one column (a sentence) or two (a sentence pair, encoded ``[CLS] a [SEP] b [SEP]``).
        num_labels: classes, or 1 for a regression (STS-B).
        eval_splits: the labelled evaluation splits; the first is the recipe's ``eval_loader``.
        metrics: metric class names (see :data:`METRICS`).
    """

    name: str
    text_columns: tuple[str, ...]
    num_labels: int
    eval_splits: tuple[str, ...]
    metrics: tuple[str, ...]

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split of the task (the test splits have no labels)."""
        tests = tuple(s.replace('validation', 'test') for s in self.eval_splits)
        return ('train', *self.eval_splits, *tests)


HUB_PATH = 'nyu-mll/glue'
TASKS: dict[str, GlueTask] = {t.name: t for t in (
    GlueTask('mnli', ('premise', 'hypothesis'), 3, ('validation_matched', 'validation_mismatched'), ('Accuracy',)),
    GlueTask('qqp', ('question1', 'question2'), 2, ('validation',), ('Accuracy', 'F1')),
    GlueTask('qnli', ('question', 'sentence'), 2, ('validation',), ('Accuracy',)),
    GlueTask('sst2', ('sentence',), 2, ('validation',), ('Accuracy',)),
    GlueTask('cola', ('sentence',), 2, ('validation',), ('MatthewsCorrelation',)),
    GlueTask('stsb', ('sentence1', 'sentence2'), 1, ('validation',), ('PearsonCorrelation', 'SpearmanCorrelation')),
    GlueTask('mrpc', ('sentence1', 'sentence2'), 2, ('validation',), ('Accuracy', 'F1')),
    GlueTask('rte', ('sentence1', 'sentence2'), 2, ('validation',), ('Accuracy',)),
)}
"""The eight GLUE tasks of the BERT paper (WNLI and the diagnostic set are left out, as BERT did)."""


def get_task(name: Any, key: str = 'task') -> GlueTask:
    """The task called ``name``; a ValueError naming ``key`` and the allowed names otherwise."""
    if not isinstance(name, str) or name.lower() not in TASKS:
        raise ValueError(f'{key}: unknown GLUE task {name!r}; allowed: {", ".join(TASKS)}')
    return TASKS[name.lower()]


def _classes(preds: torch.Tensor) -> torch.Tensor:
    """Predicted classes from ``[N, C]`` logits (argmax); class indices ``[N]`` pass through."""
    return preds.argmax(dim=-1) if preds.ndim == 2 else preds.long()


def _scores(preds: torch.Tensor) -> torch.Tensor:
    """Regression outputs ``[N]`` from ``[N]`` or ``[N, 1]``."""
    return preds.reshape(-1).float()


class Accuracy(MulticlassAccuracy):
    """Fraction of examples whose argmax class equals the label (micro average over all examples)."""

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, average='micro', **kwargs)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(_classes(preds), target.long())


class F1(BinaryF1Score):
    """F1 of the positive class (label 1) of a binary task, predictions by argmax."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(_classes(preds), target.long())


class MatthewsCorrelation(Metric):
    """Matthews correlation coefficient of a binary task (CoLA), predictions by argmax; 0 when undefined.

    Equal to scikit-learn's ``matthews_corrcoef`` (the reference GLUE uses): ``(tp tn - fp fn) /
    sqrt((tp + fp)(tp + fn)(tn + fp)(tn + fn))`` in float64 from the confusion counts, and 0 when the denominator
    is 0 (a constant predictor or constant gold labels, as in CoLA's early checkpoints). torchmetrics'
    ``BinaryMatthewsCorrCoef`` is not used: it gives a non-zero value there (0.5774 for all 1 on gold 1 1 1 0).
    The four counts are metric states summed across ranks.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ('tp', 'fp', 'fn', 'tn'):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx='sum')

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        pred, gold = _classes(preds).reshape(-1).bool(), target.reshape(-1).long().bool()
        self.tp += (pred & gold).sum()
        self.fp += (pred & ~gold).sum()
        self.fn += (~pred & gold).sum()
        self.tn += (~pred & ~gold).sum()

    def compute(self) -> torch.Tensor:
        tp, fp, fn, tn = (float(c) for c in (self.tp, self.fp, self.fn, self.tn))
        denominator = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
        value = 0.0 if denominator == 0 else (tp * tn - fp * fn) / math.sqrt(denominator)
        return torch.tensor(value, dtype=torch.float64)


class PearsonCorrelation(PearsonCorrCoef):
    """Pearson correlation between predicted and gold scores (STS-B)."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(_scores(preds), target.float())


class SpearmanCorrelation(SpearmanCorrCoef):
    """Spearman rank correlation (ties get their average rank) between predicted and gold scores (STS-B)."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(_scores(preds), target.float())


METRICS = {cls.__name__: cls for cls in (Accuracy, F1, MatthewsCorrelation, PearsonCorrelation, SpearmanCorrelation)}


def task_metrics(task: GlueTask | str) -> list[Metric]:
    """Fresh metric objects for ``task`` (a name or a :class:`GlueTask`)."""
    task = get_task(task) if isinstance(task, str) else task
    return [METRICS[name](num_classes=task.num_labels) if name == 'Accuracy' else METRICS[name]()
            for name in task.metrics]


def eval_label(task: GlueTask, split: str) -> str:
    """The Composer evaluator label of ``split``: ``eval`` for the first evaluation split, ``eval_mismatched`` for
    MNLI's second (the part after ``validation_``)."""
    return 'eval' if split == task.eval_splits[0] else f'eval_{split.removeprefix("validation_")}'


def metric_keys(task: GlueTask | str) -> list[str]:
    """The keys under which a run record holds ``task``'s metrics, e.g. ``['eval/Accuracy', 'eval/F1']`` for MRPC
    and ``['eval/Accuracy', 'eval_mismatched/Accuracy']`` for MNLI."""
    task = get_task(task) if isinstance(task, str) else task
    return [f'{eval_label(task, split)}/{m}' for split in task.eval_splits for m in task.metrics]


def task_score(task: GlueTask | str, metrics: Mapping[str, float]) -> float:
    """``task``'s score in percent: 100 x the mean of its metrics (:func:`metric_keys`) found in ``metrics``
    (a run record's ``{'eval/Accuracy': 0.91, ...}``). A KeyError names a metric that is missing."""
    keys = metric_keys(task)
    missing = [k for k in keys if k not in metrics]
    if missing:
        raise KeyError(f'{task if isinstance(task, str) else task.name}: no {", ".join(missing)} in the metrics')
    return 100.0 * sum(float(metrics[k]) for k in keys) / len(keys)


def glue_score(task_scores: Mapping[str, float] | Iterable[float]) -> float:
    """The GLUE score: the unweighted mean of the task scores (in percent) given."""
    values = list(task_scores.values() if isinstance(task_scores, Mapping) else task_scores)
    if not values:
        raise ValueError('glue_score: no task scores')
    return sum(values) / len(values)
