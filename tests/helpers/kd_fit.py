"""Train a recipe config with knowledge distillation and read back the logged kd loss (the cache tests' runner)."""

from __future__ import annotations

from composer.loggers import InMemoryLogger

from recipes.core.builders import launch, prepare


def fit(cfg: dict) -> tuple[object, dict[int, float]]:
    """Train; return the trainer and the logged kd loss by step."""
    run = prepare(cfg)
    logger = InMemoryLogger()
    run.trainer_kwargs['loggers'] = [*run.trainer_kwargs['loggers'], logger]
    trainer = launch(run)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer, {int(ts.batch): float(v) for ts, v in logger.data['loss/train/kd']}
