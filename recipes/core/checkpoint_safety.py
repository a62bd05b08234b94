"""Make Composer load its own checkpoints (``load_path``, ``autoresume``) with ``torch.load(weights_only=True)``,
and refuse an unsafe ``load_path`` before anything starts.

Composer 0.32 calls ``torch.load(..., weights_only=False)`` in ``composer.utils.checkpoint`` and offers no public
hook to change that (``Trainer`` has no ``torch.load`` argument; ``load_object_store`` and ``load_ignore_keys`` act
around the load, not on it). So this replaces that one private function, ``_torch_load_with_validation``, by
:func:`algorithms.common.checkpoint_loading.safe_load`, keeping Composer's checkpoint validation hook. A test
(``tests/recipes/test_run_lifecycle.py``) fails if a Composer upgrade renames or bypasses it.
"""

from __future__ import annotations

from typing import Any

from composer.utils import checkpoint as composer_checkpoint

from algorithms.common.checkpoint_loading import safe_load
from recipes.core.errors import ConfigError


def _weights_only_load(checkpoint_filepath: Any, map_location: str) -> Any:
    return safe_load(composer_checkpoint._ensure_valid_checkpoint(checkpoint_filepath), map_location=map_location)


def use_weights_only_checkpoint_loading() -> None:
    """Idempotently route Composer's checkpoint loading through ``weights_only=True``."""
    composer_checkpoint._torch_load_with_validation = _weights_only_load


def check_checkpoint(key: str, path: str) -> None:
    """Load ``path`` as :func:`safe_load` would (memory-mapped, so cheap for large files): a ConfigError naming
    ``key`` if the file is missing or refused as unsafe (it holds objects other than tensors and the allowlist)."""
    try:
        safe_load(path, mmap=True)
    except FileNotFoundError:
        raise ConfigError(f'{key}: checkpoint file not found: {path}') from None
    except Exception as e:  # noqa: BLE001 - any refusal by the weights_only unpickler or a corrupt file
        raise ConfigError(f'{key}: {path} was refused as unsafe by weights_only loading '
                          f'({type(e).__name__}: {str(e).splitlines()[0][:160]})') from None
