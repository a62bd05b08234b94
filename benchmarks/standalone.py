"""Load one of the repository's plain-PyTorch modules from its file, without its package ``__init__`` (which imports
Composer): the GPU image that ``benchmarks/crd_step_overhead.py`` and ``benchmarks/energy_check.py`` run on has torch
but not Composer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def load(relative: str) -> Any:
    """The module at ``REPO / relative`` (it must import nothing relative to its package)."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem + '_standalone', path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
