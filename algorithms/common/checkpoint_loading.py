"""Load Composer checkpoints and state dicts with ``torch.load(weights_only=True)``.

A Composer checkpoint holds, besides tensors, RNG states (numpy arrays), a ``timedelta`` and the torch version.
``SAFE_GLOBALS`` allowlists exactly those types, so nothing else in a file can run code when it is loaded.

A file that cannot be loaded is told apart by what it holds, not by torch's message (torch reports random bytes
and a crafted pickle alike as "Weights only load failed"): :class:`UnreadableCheckpoint` for an empty, truncated or
non-torch file, :class:`UnsafeCheckpoint` for a well-formed pickle that ``weights_only`` refuses. Both say so in
one line naming the file.
"""

from __future__ import annotations

import datetime
import io
import os
import pickle
import pickletools
import zipfile
from typing import Any, Optional

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


class UnreadableCheckpoint(ValueError):
    """Not a checkpoint torch can read: an empty or truncated file, or neither a zip archive nor a pickle."""


class UnsafeCheckpoint(pickle.UnpicklingError, ValueError):
    """A well-formed pickle that ``weights_only=True`` refuses: it names objects outside the allowlist."""


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:160] if lines else type(error).__name__


def _well_formed_pickle(data: bytes) -> bool:
    """Whether ``data`` starts with one complete pickle (opcodes and stack checked, nothing executed)."""
    try:
        pickletools.dis(io.BytesIO(data), out=io.StringIO())
    except Exception:  # noqa: BLE001 - any parse failure: not a pickle
        return False
    return True


def _pickle_of(path: str) -> Optional[bytes]:
    """The pickle a checkpoint holds (``data.pkl`` of torch's zip format, else the file itself); None for a zip
    archive that cannot be read (truncated: its central directory is at the end)."""
    with open(path, 'rb') as f:
        if f.read(4) != b'PK\x03\x04':
            f.seek(0)
            return f.read()
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n == 'data.pkl' or n.endswith('/data.pkl')]
            return z.read(names[0]) if names else None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None


def diagnose_load_error(path: str | os.PathLike, error: BaseException) -> Optional[ValueError]:
    """What a failed ``torch.load(path, weights_only=True)`` means, as one of the two errors above (one line naming
    the file and its size), or None when the file looks like a sound checkpoint (then ``error`` is the news)."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size == 0:
        return UnreadableCheckpoint(f'{path} is empty (0 bytes): not a checkpoint')
    with open(path, 'rb') as f:
        is_zip = f.read(4) == b'PK\x03\x04'
    data = _pickle_of(path)
    if data is None:
        return UnreadableCheckpoint(f'{path} is not a checkpoint ({size:,} bytes): a truncated or corrupt zip archive')
    if not _well_formed_pickle(data):
        what = 'its data.pkl is not a complete pickle' if is_zip else 'neither a torch zip archive nor a pickle'
        return UnreadableCheckpoint(f'{path} is not a checkpoint ({size:,} bytes): {what} (truncated or corrupt?)')
    if isinstance(error, pickle.UnpicklingError):
        # torch's message is a generic preamble; the unpickler's own complaint (the refused GLOBAL) is its context
        text = _first_line(error.__context__ if error.__context__ is not None else error)
        return UnsafeCheckpoint(f'{path} was refused as unsafe by weights_only loading ({text})')
    return None


def safe_load(path: str | os.PathLike, map_location: Any = 'cpu', mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` with the allowlist above; a clear error if the file is missing.

    ``mmap=True`` maps the tensors instead of reading them (cheap, to check a file); a file in torch's legacy
    (non-zip) format is then read normally.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnreadableCheckpoint: the file is empty, truncated or not a torch file.
        UnsafeCheckpoint: the file is a pickle that ``weights_only`` refuses.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        return _load(path, map_location, mmap)
    except Exception as e:  # noqa: BLE001 - classified below; anything else is raised as it is
        problem = diagnose_load_error(path, e)
        if problem is None:
            raise
        raise problem from None


def _load(path: str | os.PathLike, map_location: Any, mmap: bool) -> Any:
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        if mmap:
            try:
                return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
            except RuntimeError as e:
                if 'zipfile' not in str(e):
                    raise
        return torch.load(path, map_location=map_location, weights_only=True)
