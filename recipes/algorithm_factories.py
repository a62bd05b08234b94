"""The algorithms a recipe can name: Composer's own plus this project's, built from YAML arguments."""

from __future__ import annotations

from typing import Any, Callable

from recipes.registry import ALGORITHMS


def algorithm_table(cfg: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    """Name -> constructor for the ``algorithms`` section of ``cfg``."""
    return dict(ALGORITHMS)
