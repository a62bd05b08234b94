"""One live run per run folder: a second run into the same ``run_dir`` is refused in one line naming the first's PID.

Two runs writing one folder would interleave ``record.jsonl``, and leave the config and summary of one beside the
checkpoints of the other. :func:`lock_run_dir` takes an exclusive ``fcntl.flock`` on ``<run_dir>/.lock`` and writes
its PID there. The operating system releases the lock when the process ends, however it ends (even ``kill -9``), so a
stale ``.lock`` left by a killed run never blocks the rerun that resumes it. :class:`RunLock` releases it when the
Trainer closes. Only global rank 0 takes it (the ranks of one multi-GPU run share the folder).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Optional

from composer.core import Callback, State
from composer.loggers import Logger

from recipes.core.errors import ConfigError

LOCK_FILE = '.lock'
_held: dict[str, int] = {}  # realpath of a run folder -> the descriptor holding its lock in this process


class RunLock(Callback):
    """Holds the lock of ``run_dir`` until the Trainer closes (:meth:`release` does it by hand)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.key = os.path.realpath(run_dir)

    def release(self) -> None:
        fd = _held.pop(self.key, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def close(self, state: State, logger: Logger) -> None:
        self.release()


def lock_run_dir(run_dir: str | os.PathLike) -> RunLock:
    """Create ``run_dir`` and lock it for this process; a ConfigError naming the holder's PID if another holds it.

    A run folder locked earlier by this same process (a run that ended without closing its Trainer) is taken over:
    within one process runs follow each other."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    lock = RunLock(folder)
    lock.release()
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: another live process holds it
        holder = _read_pid(fd)
        os.close(fd)
        raise ConfigError(f'run_dir: {folder} is in use by another run (PID {holder or "unknown"}, lock '
                          f'{folder / LOCK_FILE}); wait for it to end or choose another run_dir') from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    _held[lock.key] = fd
    return lock


def _read_pid(fd: int) -> Optional[str]:
    text = os.pread(fd, 32, 0).decode(errors='replace').strip()
    return text if text.isdigit() else None

