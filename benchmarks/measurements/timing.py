"""What the stand-alone measurement scripts share: their command line, interleaved timing rounds, medians and ratios,
a result's header, and writing it (markdown to stdout and a file, or markdown and JSON into a folder).

Nothing here imports Composer, so the scripts that also run on GPU images with torch alone (``crd_step_overhead.py``,
``energy_check.py``, ``blockwise_gpu_check.py``) use it too: ``load`` gives them a plain-PyTorch module of the
repository by path, ``bare_package`` a package without its ``__init__`` (which imports Composer).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from recipes.core.cli import LOG_FORMAT

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


def script(module: str, doc: Optional[str]) -> argparse.ArgumentParser:
    """Log at INFO and return the argument parser of ``python -m benchmarks.measurements.<module>``, ``doc`` its help."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    return argparse.ArgumentParser(prog=f'python -m benchmarks.measurements.{module}', description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def command(module: str, args: argparse.Namespace, *keys: str) -> str:
    """``python -m benchmarks.measurements.<module> --key value ...`` for ``keys`` of the parsed ``args`` (floats as ``%g``)."""
    def flag(key: str) -> str:
        value = getattr(args, key)
        return f"--{key.replace('_', '-')} {f'{value:g}' if isinstance(value, float) else value}"

    return ' '.join([f'python -m benchmarks.measurements.{module}', *map(flag, keys)])


def typed_command(module: str, argv: Optional[Sequence[str]]) -> str:
    """The command as typed: ``.venv/bin/python -m benchmarks.measurements.<module>`` and ``argv`` (the process's by default)."""
    return ' '.join([f'.venv/bin/python -m benchmarks.measurements.{module}', *(sys.argv[1:] if argv is None else argv)])


def seconds(fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    start = clock()
    fn()
    return clock() - start


def interleave(fns: Mapping[str, Callable[[], Any]], rounds: int, warmup: int = 1, alternate: bool = False,
               measure: Optional[Callable[[Callable[[], Any]], Any]] = None,
               clock: Callable[[], float] = time.perf_counter) -> dict[str, list[Any]]:
    """Call every function once per round, in order (reversed every other round if ``alternate``), so that drift of
    the machine falls on all of them alike: ``warmup`` rounds, then ``rounds`` counted ones. Returns per name what
    ``measure(fn)`` gave in the counted rounds; by default the call's wall-clock seconds on ``clock``."""
    items, out = list(fns.items()), {name: [] for name in fns}
    for r in range(warmup + rounds):
        for name, fn in items[::-1] if alternate and r % 2 else items:
            value = measure(fn) if measure else seconds(fn, clock)
            if r >= warmup:
                out[name].append(value)
        log.info('round %d/%d done%s', r + 1, warmup + rounds, ' (warm-up)' if r < warmup else '')
    return out


def medians(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The median of every name's samples."""
    return {name: statistics.median(v) for name, v in samples.items()}


def ratios(values: Mapping[str, float], base: str) -> dict[str, float]:
    """Every value divided by the value of ``base``."""
    return {name: v / values[base] for name, v in values.items()}


def device_name() -> str:
    """The GPU's name, or ``CPU only``."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only'


def header(title: str, cmd: str, machine: Mapping[str, Any], threads: bool = False, note: str = '') -> list[str]:
    """A result's first lines: its title, the command, and the machine (``benchmarks.core.machine.machine_info()``)."""
    cores = f"{machine['cores']} cores" + (f", {machine['torch_threads']} torch threads" if threads else '')
    return [f'# {title}', '', f'Command: `{cmd}`', '',
            f"Machine: {machine['cpu']} ({cores}), {machine['device']}, torch {machine['torch']}, Composer "
            f"{machine['composer']}; {machine['date']}.{note}", '']


def markdown(lines: Sequence[str], data: Any = None) -> str:
    """The lines as text, then ``data`` (if given) as a JSON block after a blank line."""
    text = '\n'.join(lines) + '\n'
    return text if data is None else f"{text}\n```json\n{json.dumps(data, indent=1, default=str)}\n```\n"


def emit(text: str, out: Optional[str]) -> None:
    """Write a result to stdout and, if ``out`` is given, to that file (folders created)."""
    sys.stdout.write(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)


def write(folder: str, stem: str, data: Any, text: str) -> None:
    """Write ``data`` to ``<folder>/<stem>.json`` and ``text`` to stdout and ``<folder>/<stem>.md``."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f'{stem}.json').write_text(json.dumps(data, indent=2) + '\n')
    emit(text, str(Path(folder) / f'{stem}.md'))


def load(relative: str) -> Any:
    """The module at ``REPO / relative`` (it must import nothing relative to its package)."""
    spec = importlib.util.spec_from_file_location(Path(relative).stem + '_standalone', REPO / relative)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def bare_package(name: str) -> None:
    """Register package ``name`` without running its ``__init__`` (its submodules still import)."""
    module = types.ModuleType(name)
    module.__path__ = [str(REPO / name.replace('.', '/'))]
    sys.modules.setdefault(name, module)
