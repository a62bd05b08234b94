"""Callbacks every run uses: a machine-readable run record and a stop on a non-finite loss; and the run folder's
protocol (:mod:`~algorithms.callbacks.run_record`) with the machine description (:mod:`~algorithms.callbacks.machine`).

Names are imported on first use, so that ``algorithms.callbacks.machine`` loads without Composer (GPU images)."""

import importlib
from typing import Any

_EXPORTS = {'NonFiniteLossGuard': 'nan_guard', 'RunRecord': 'run_record', 'checkpoint_record': 'run_record',
            'read_records': 'run_record'}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(f'{__name__}.{_EXPORTS[name]}'), name)
