"""What machine a run or a measurement came from, and the one writer and reader of a runs root's ``machine.json``.

``machine.json`` is ``{'study': <name>, 'sessions': [<machine_info()>, ...]}``: one entry appended by every session
that ran part of a study (a session may add its own keys, e.g. ``runs``: the runs it was about to train), so a report
can name the CPU beside its numbers. This module imports neither Composer (only when asked for its version) nor
anything of :mod:`algorithms.callbacks`' callbacks, so GPU images without Composer can describe their machine too.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any, Optional

import torch

MACHINE_FILE = 'machine.json'


def _cpu_model() -> str:
    try:
        names = [line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                 if line.startswith('model name')]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def _composer_version() -> Optional[str]:
    try:
        import composer
    except ImportError:  # a GPU image without Composer still describes its machine
        return None
    return composer.__version__


def machine_info() -> dict[str, Any]:
    """A small dict to store beside every result: CPU model, cores, torch threads, accelerator, platform, Python,
    torch and Composer versions, and the date (UTC)."""
    cuda = torch.cuda.is_available()
    return {
        'cpu': _cpu_model(),
        'cores': os.cpu_count(),
        'torch_threads': torch.get_num_threads(),
        'device': torch.cuda.get_device_name(0) if cuda else 'CPU only (no GPU)',
        'platform': platform.platform(),
        'python': platform.python_version(),
        'torch': torch.__version__,
        'composer': _composer_version(),
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    }


def read_machines(root: str | os.PathLike) -> list[dict[str, Any]]:
    """The sessions recorded in ``<root>/machine.json``, oldest first (empty if there is none or it is unreadable)."""
    try:
        data = json.loads((Path(root) / MACHINE_FILE).read_text())
    except (OSError, ValueError):
        return []
    sessions = data.get('sessions') if isinstance(data, dict) else None
    return [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []


def record_machine(root: str | os.PathLike, info: dict[str, Any], study: Optional[str] = None) -> Path:
    """Append the session ``info`` (usually :func:`machine_info`, maybe with extra keys) to ``<root>/machine.json``,
    naming the ``study`` (kept from the file when not given); returns the file's path."""
    path = Path(root) / MACHINE_FILE
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    old = old if isinstance(old, dict) else {}
    data = {'study': study} if study is not None else ({'study': old['study']} if 'study' in old else {})
    data['sessions'] = [*read_machines(root), dict(info)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + '\n')
    return path
