"""Callbacks every run uses: a machine-readable run record and a stop on a non-finite loss."""

from algorithms.callbacks.nan_guard import NonFiniteLossGuard
from algorithms.callbacks.run_record import RunRecord, checkpoint_record, read_records

__all__ = ['NonFiniteLossGuard', 'RunRecord', 'checkpoint_record', 'read_records']
