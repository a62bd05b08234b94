"""Make Composer load its own checkpoints (``load_path``, ``autoresume``) with ``torch.load(weights_only=True)``.

Composer 0.32 calls ``torch.load(..., weights_only=False)`` in ``composer.utils.checkpoint``; this replaces that one
private function by :func:`algorithms.checkpoint_loading.safe_load`, keeping Composer's checkpoint validation hook.
"""

from __future__ import annotations

from typing import Any

from composer.utils import checkpoint as composer_checkpoint

from algorithms.checkpoint_loading import safe_load


def _weights_only_load(checkpoint_filepath: Any, map_location: str) -> Any:
    return safe_load(composer_checkpoint._ensure_valid_checkpoint(checkpoint_filepath), map_location=map_location)


def use_weights_only_checkpoint_loading() -> None:
    """Idempotently route Composer's checkpoint loading through ``weights_only=True``."""
    composer_checkpoint._torch_load_with_validation = _weights_only_load
