"""Read the records runs leave behind (and copy the small ones): nothing here trains or imports a recipe.

A run folder holds ``config.yaml`` (the resolved config), ``record.jsonl`` (one line per evaluation) and, once
finished, ``summary.json``; a Matryoshka output folder holds ``manifest.json``; a study's runs root may hold
``machine.json`` (see :mod:`algorithms.callbacks.machine`). Runs are found by walking a root for ``config.yaml`` and are
named by their folder relative to that root (``teacher-lr0.1``, ``matryoshka/g1/m0``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from composer.core import Time, TimeUnit

from algorithms.callbacks.run_record import (CONFIG_FILE, MACHINE_FILE, MANIFEST_FILE, RECORD_FILE, SUMMARY_FILE,
                                            read_records)
from algorithms.common.time_strings import parse_time

log = logging.getLogger(__name__)

SMALL_FILES = (CONFIG_FILE, RECORD_FILE, SUMMARY_FILE, MANIFEST_FILE, MACHINE_FILE)
KD_KEY = 'knowledge_distillation'
_UNIT_ORDER = {TimeUnit.DURATION: 0, TimeUnit.TOKEN: 1, TimeUnit.SAMPLE: 2, TimeUnit.BATCH: 3, TimeUnit.EPOCH: 4}


def _time(value: Any) -> Optional[Time]:
    try:
        return parse_time(value)
    except ValueError:
        return None


def normalize_path(path: str | os.PathLike) -> str:
    """A path as a comparable string: normalised separators and ``..``, no trailing slash (not resolved on disk)."""
    return os.path.normpath(str(path))


def checkpoint_run_dir(checkpoint: str | os.PathLike) -> str:
    """The run folder a checkpoint ``<run_dir>/checkpoints/<file>.pt`` belongs to."""
    return normalize_path(Path(checkpoint).parent.parent)


def duration_key(duration: str) -> tuple[int, float, str]:
    """A sort key for Composer duration strings (``1ep`` < ``2ep`` < ``10ep``; units grouped)."""
    t = _time(duration)
    if t is None:
        return (99, 0.0, str(duration))
    return (_UNIT_ORDER.get(t.unit, 98), float(t.value), str(duration))


def duration_fraction(value: Any, max_duration: str) -> Optional[float]:
    """``value`` (e.g. ``0.3dur``, or ``1ep`` of a ``3ep`` run) as a fraction of ``max_duration``; ``None`` if the
    units differ."""
    t, total = _time(value), _time(max_duration)
    if t is None:
        return None
    if t.unit == TimeUnit.DURATION:
        return float(t.value)
    if total is not None and total.unit == t.unit and total.value > 0:
        return float(t.value) / float(total.value)
    return None


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        log.warning('cannot read %s: %s', path, e)
        return None


@dataclass
class RunFiles:
    """What one run folder says: its resolved config, its evaluations and its summary (if it finished)."""

    key: str
    folder: Path
    config: dict[str, Any]
    evals: list[dict[str, Any]] = field(default_factory=list)
    summary: Optional[dict[str, Any]] = None

    @property
    def finished(self) -> bool:
        return bool(self.summary and self.summary.get('finished'))

    @property
    def configured_run_dir(self) -> str:
        """The ``run_dir`` the run was started with (how other runs' teacher paths name it)."""
        return normalize_path(self.config.get('run_dir') or self.folder)

    @property
    def max_duration(self) -> str:
        return str(self.config.get('max_duration', '?'))

    @property
    def kd(self) -> Optional[dict[str, Any]]:
        """The ``knowledge_distillation`` section of the config, or ``None`` for a run without a teacher."""
        section = (self.config.get('algorithms') or {}).get(KD_KEY)
        return section if isinstance(section, dict) else None

    @property
    def teacher_checkpoints(self) -> list[str]:
        """The checkpoint paths of the run's teachers, whatever algorithm used them, as its run record lists them;
        for records written before the record listed them, the KD section's ``teachers`` of the config."""
        for source in (self.summary, *(self.evals[-1:] or [None])):
            if source and isinstance(source.get('teachers'), list):
                return [str(t) for t in source['teachers']]
        if self.kd is None:
            return []
        out = []
        for t in self.kd.get('teachers') or []:
            path = t.get('checkpoint') if isinstance(t, dict) else t
            if isinstance(path, str):
                out.append(path)
        return out

    def curve(self, metric: str) -> list[tuple[float, float]]:
        """``[(train_wct_s, metric value), ...]`` at every evaluation that recorded ``metric``."""
        return [(float(e['train_wct_s']), float(e['metrics'][metric]))
                for e in self.evals if metric in e.get('metrics', {}) and 'train_wct_s' in e]

    @property
    def train_wct_s(self) -> Optional[float]:
        """The run's whole training wall-clock: ``summary.json``'s, else its last evaluation's."""
        if self.summary and self.summary.get('train_wct_s') is not None:
            return float(self.summary['train_wct_s'])
        if self.evals:
            return float(self.evals[-1]['train_wct_s'])
        return None

    @property
    def cpu_s(self) -> Optional[float]:
        source = self.summary if self.summary and 'cpu_s' in self.summary else (self.evals[-1] if self.evals else {})
        return float(source['cpu_s']) if 'cpu_s' in source else None


def load_run(folder: Path, key: str) -> Optional[RunFiles]:
    """The run in ``folder`` (``None`` if its ``config.yaml`` cannot be read)."""
    try:
        config = yaml.safe_load((folder / CONFIG_FILE).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        log.warning('cannot read %s: %s', folder / CONFIG_FILE, e)
        return None
    summary = _read_json(folder / SUMMARY_FILE) if (folder / SUMMARY_FILE).is_file() else None
    return RunFiles(key=key, folder=folder, config=config, evals=read_records(folder), summary=summary)


def _walk(root: Path, name: str) -> list[Path]:
    return sorted(p for p in root.rglob(name) if 'checkpoints' not in p.relative_to(root).parts)


def load_runs(root: str | os.PathLike) -> dict[str, RunFiles]:
    """Every run under ``root`` (a folder with ``config.yaml``), by its folder relative to ``root``."""
    root = Path(root)
    runs = {}
    for config in _walk(root, CONFIG_FILE):
        key = config.parent.relative_to(root).as_posix()
        run = load_run(config.parent, key)
        if run is not None:
            runs[key] = run
    return runs


def load_manifests(root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every Matryoshka ``manifest.json`` under ``root``, by its folder relative to ``root``."""
    root = Path(root)
    out = {}
    for path in _walk(root, MANIFEST_FILE):
        manifest = _read_json(path)
        if manifest is not None:
            out[path.parent.relative_to(root).as_posix()] = manifest
    return out


def copy_records(root: str | os.PathLike, dest: str | os.PathLike, names: tuple[str, ...] = SMALL_FILES) -> int:
    """Copy the files called ``names`` (default: the small record files) under ``root``, never under a
    ``checkpoints`` folder, to the same places under ``dest``; returns how many files were copied. Copying a folder
    onto itself does nothing."""
    root, dest = Path(root), Path(dest)
    if dest.exists() and root.resolve() == dest.resolve():
        return 0
    n = 0
    for name in names:
        for path in _walk(root, name):
            target = dest / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            n += 1
    return n
