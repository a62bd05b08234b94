"""What machine a measurement came from: CPU model, cores, accelerator, library versions, date. Composer is imported
only when asked for its version, so that the scripts that also run without it can import this module."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch


def _cpu_model() -> str:
    try:
        names = [line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                 if line.startswith('model name')]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """A small dict to store beside every benchmark result."""
    import composer

    cuda = torch.cuda.is_available()
    return {
        'cpu': _cpu_model(),
        'cores': os.cpu_count(),
        'torch_threads': torch.get_num_threads(),
        'device': torch.cuda.get_device_name(0) if cuda else 'CPU only (no GPU)',
        'platform': platform.platform(),
        'python': platform.python_version(),
        'torch': torch.__version__,
        'composer': composer.__version__,
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    }


def record_session(root: Path, study: str) -> None:
    """Append this machine to ``<root>/machine.json`` (one entry per session that ran part of a study)."""
    path = Path(root) / 'machine.json'
    sessions = json.loads(path.read_text())['sessions'] if path.is_file() else []
    sessions.append(machine_info())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({'study': study, 'sessions': sessions}, indent=2) + '\n')
