"""Make Composer load its own checkpoints (``load_path``, ``autoresume``) with ``torch.load(weights_only=True)``,
and refuse an unsafe ``load_path`` before anything starts.

Composer 0.32 calls ``torch.load(..., weights_only=False)`` in ``composer.utils.checkpoint`` and offers no public
hook to change that (``Trainer`` has no ``torch.load`` argument; ``load_object_store`` and ``load_ignore_keys`` act
around the load, not on it). So this replaces that one private function, ``_torch_load_with_validation``, by
:func:`algorithms.common.checkpoint_loading.safe_load`, keeping Composer's checkpoint validation hook. A test
(``tests/recipes/test_run_lifecycle.py``) fails if a Composer upgrade renames or bypasses it.

Saving goes the same way: Composer writes a checkpoint straight under its final name, so a full disk left a partial
``ep1-ba8-rank0.pt`` that then blocked the rerun (``FileExistsError: ... may conflict with a future checkpoint``).
:func:`use_atomic_checkpoint_writes` wraps the private ``_write_checkpoint_file``: the file is written under a hidden
temporary name in the same folder and renamed when complete; a failed write removes it, and a full disk is one
``OSError(ENOSPC)`` saying so (the rerun then resumes from the last complete checkpoint).
"""

from __future__ import annotations

import errno
import os
from typing import Any, Callable, Optional

from composer.utils import checkpoint as composer_checkpoint

from algorithms.common.checkpoint_loading import safe_load
from recipes.core.errors import ConfigError


def _weights_only_load(checkpoint_filepath: Any, map_location: str) -> Any:
    return safe_load(composer_checkpoint._ensure_valid_checkpoint(checkpoint_filepath), map_location=map_location)


def use_weights_only_checkpoint_loading() -> None:
    """Idempotently route Composer's checkpoint loading through ``weights_only=True``."""
    composer_checkpoint._torch_load_with_validation = _weights_only_load


def _disk_full(error: BaseException) -> bool:
    """Whether ``error`` or an error it was raised from is ENOSPC (torch's writer wraps it in a RuntimeError)."""
    seen: Optional[BaseException] = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _atomic(write: Callable[[dict[str, Any], str], None]) -> Callable[[dict[str, Any], str], None]:
    def write_atomically(state_dict: dict[str, Any], filename: str) -> None:
        folder, name = os.path.split(filename)
        partial = os.path.join(folder, f'.partial-{os.getpid()}-{name}')  # same suffix: Composer picks the format
        try:
            write(state_dict, partial)
            os.replace(partial, filename)
        except BaseException as e:
            if os.path.exists(partial):
                os.remove(partial)
            if isinstance(e, Exception) and _disk_full(e):
                raise OSError(errno.ENOSPC, f'No space left on device while writing checkpoint {filename} (no partial '
                                            'file was left; free space and rerun the same command to resume)') from None
            raise

    write_atomically.wrapped = write  # type: ignore[attr-defined]
    return write_atomically


def use_atomic_checkpoint_writes() -> None:
    """Idempotently make Composer write each checkpoint to a temporary name and rename it when complete."""
    if not hasattr(composer_checkpoint._write_checkpoint_file, 'wrapped'):
        composer_checkpoint._write_checkpoint_file = _atomic(composer_checkpoint._write_checkpoint_file)


def checkpoint_error(key: str, path: str, error: BaseException) -> ConfigError:
    """The one-line ConfigError for a checkpoint at ``key`` that failed to load with ``error``: missing, not a
    checkpoint (empty, truncated, corrupt: named with its size), refused as unsafe (:mod:`checkpoint_loading`
    tells these apart), weights that do not fit (ValueError), or that error's first line."""
    if isinstance(error, FileNotFoundError):
        return ConfigError(f'{key}: checkpoint file not found: {path}')
    lines = str(error).strip().splitlines() or ['']
    if isinstance(error, ValueError):  # UnreadableCheckpoint, UnsafeCheckpoint, or weights that do not fit a model
        return ConfigError(f'{key}: {lines[0]}')
    return ConfigError(f'{key}: {path} cannot be loaded ({type(error).__name__}: {lines[0][:160]})')


def check_checkpoint(key: str, path: str) -> None:
    """Load ``path`` as :func:`safe_load` would (memory-mapped, so cheap for large files): a ConfigError naming
    ``key`` if the file is missing, not a checkpoint (empty, truncated, corrupt) or refused as unsafe (it holds
    objects other than tensors and the allowlist)."""
    try:
        safe_load(path, mmap=True)
    except Exception as e:  # noqa: BLE001 - every failure is one line naming the key (see checkpoint_error)
        raise checkpoint_error(key, path, e) from None
