"""Helpers for benchmarks that also run on GPU images with torch but without Composer (``crd_step_overhead.py``,
``energy_check.py``, ``blockwise_gpu_check.py``): load a plain-PyTorch module of the repository by path, or register
a package without running its ``__init__`` (which imports Composer); and print-and-save a result."""

from __future__ import annotations

import importlib.util
import sys
import types
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


def bare_package(name: str) -> None:
    """Register package ``name`` without running its ``__init__`` (its submodules still import)."""
    module = types.ModuleType(name)
    module.__path__ = [str(REPO / name.replace('.', '/'))]  # type: ignore[attr-defined]
    sys.modules.setdefault(name, module)


def emit(text: str, out: str | None) -> None:
    """Write a benchmark's result to stdout and, if ``out`` is given, to that file (folders created)."""
    sys.stdout.write(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
