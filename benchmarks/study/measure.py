"""What the study families' ``describe`` hooks share to measure a finished run: its trained model, the evaluation
loader in order, and the SVCCA options of a study's ``compare`` section (the pruning and bias studies both compare
layers of a compressed model with those of its original)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


def trained_model(model: dict[str, Any], checkpoint: str | Path) -> Any:
    """The recipe model ``model`` (its config section) with the weights of ``checkpoint``, in eval mode."""
    from algorithms.distillation import load_teacher_weights
    from recipes.models.registry import build_model

    net = build_model(**model)
    load_teacher_weights(net, checkpoint)
    return net.eval()


def ordered_eval_loader(eval_loader: dict[str, Any], images: Optional[int] = None, batch_size: int = 500):
    """The recipe's evaluation loader, in order, in this process, on its first ``images`` (all if None)."""
    from recipes.data.registry import build_dataloader

    return build_dataloader({**eval_loader, 'subset': images, 'shuffle': False, 'num_workers': 0},
                            batch_size=batch_size)


def svcca_options(compare: dict[str, Any]) -> dict[str, Any]:
    """The :func:`~algorithms.analysis.layer_similarity` options of a study's ``compare`` section (SVCCA)."""
    return dict(method='svcca', conv_mode=compare.get('conv_mode', 'positions'), keep=compare.get('keep', 0.99),
                max_datapoints=compare.get('max_datapoints', 5000))
