"""What machine a measurement came from: CPU model, cores, accelerator, library versions, date."""

from __future__ import annotations

import datetime
import os
import platform
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
