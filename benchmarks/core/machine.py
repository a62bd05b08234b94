"""What machine a measurement came from (:func:`machine_info`, from :mod:`algorithms.callbacks.machine`, the one
writer and reader of ``machine.json``), and :func:`record_session`, a study's session appended to its runs root.
Composer is imported only when asked for its version, so that the scripts that also run without it can import this
module."""

from __future__ import annotations

from pathlib import Path

from algorithms.callbacks.machine import machine_info, read_machines, record_machine

__all__ = ['machine_info', 'read_machines', 'record_machine', 'record_session']


def record_session(root: Path, study: str) -> None:
    """Append this machine to ``<root>/machine.json`` (one entry per session that ran part of a study)."""
    record_machine(root, machine_info(), study=study)
