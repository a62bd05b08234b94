"""Load Composer checkpoints and state dicts with ``torch.load(weights_only=True)``.

A Composer checkpoint holds, besides tensors, RNG states (numpy arrays), a ``timedelta`` and the torch version.
``SAFE_GLOBALS`` allowlists exactly those types, so nothing else in a file can run code when it is loaded.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import numpy as np
import torch

SAFE_GLOBALS: list[Any] = [
    np._core.multiarray._reconstruct,  # type: ignore[attr-defined]
    np.ndarray,
    np.dtype,
    *[type(np.dtype(t)) for t in ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64',
                                  'float16', 'float32', 'float64')],
    datetime.timedelta,
    torch.torch_version.TorchVersion,
]


def safe_load(path: str | os.PathLike, map_location: Any = 'cpu', mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` with the allowlist above; a clear error if the file is missing.

    ``mmap=True`` maps the tensors instead of reading them (cheap, to check a file); a file in torch's legacy
    (non-zip) format is then read normally."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        if mmap:
            try:
                return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
            except RuntimeError as e:
                if 'zipfile' not in str(e):
                    raise
        return torch.load(path, map_location=map_location, weights_only=True)
