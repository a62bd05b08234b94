"""What machine a measurement came from: CPU model, cores, accelerator, library versions, date."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

import composer
import torch


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """A small dict to store beside every benchmark result."""
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
