"""A machine-readable record of a run: one JSON line per evaluation, and a summary when training ends.

``<folder>/record.jsonl`` gets, at every evaluation: ``step``, ``epoch``, ``samples``, ``train_wct_s`` (training
wall-clock since the start, evaluation excluded; checkpoint saving included), ``total_wct_s`` (everything since the
start), ``eval_wct_s``, ``cpu_s`` (this process's CPU time), ``metrics`` (``{'<evaluator>/<metric>': value}``) and
``teachers`` (the checkpoints of the run's teachers, whatever algorithm uses them: the benchmarks add their
training cost). ``<folder>/summary.json`` is written when ``fit`` ends, with the same clocks, the teachers and
``finished: true``. The recipes write the resolved config beside them as ``config.yaml``.
The clocks and the latest metrics are saved in checkpoints (:func:`checkpoint_record` reads them back), so a
resumed run keeps counting where it left off, and record lines written after the checkpoint it resumes from (work
the interrupted run lost) are dropped. Only global rank 0 writes.
Benchmarks and reports read these files, and a teacher's ``summary.json`` gives the teacher's own training cost.

This module is the run folder's protocol, used by every recipe, driver and study: its file names,
:func:`run_finished` (is this run done?), :func:`epoch_checkpoints` (the checkpoints Composer kept, in training
order), and a study root's ``machine.json`` (:func:`record_machine`, :func:`read_machines`, from
:mod:`algorithms.callbacks.machine`, which imports no Composer).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

from composer.core import Callback, Event, State
from composer.loggers import Logger
from composer.utils import dist

from algorithms.callbacks.machine import MACHINE_FILE, machine_info, read_machines, record_machine
from algorithms.common.checkpoint_loading import safe_load

# The run folder's layout, shared by the recipes, the drivers and the benchmarks.
CONFIG_FILE = 'config.yaml'
CHECKPOINT_FOLDER = 'checkpoints'  # the recipes' save_folder inside a run folder
LATEST_CHECKPOINT = f'{CHECKPOINT_FOLDER}/latest-rank0.pt'  # Composer's symlink to a run's newest checkpoint
MANIFEST_FILE = 'manifest.json'  # a multi-run driver's index of its runs (Matryoshka, pruning pipelines)
log = logging.getLogger(__name__)
RECORD_FILE = 'record.jsonl'
SUMMARY_FILE = 'summary.json'
_EPOCH_CHECKPOINT = re.compile(r'ep(\d+)-ba(\d+)-rank0\.pt')  # Composer's default checkpoint file name

__all__ = ['CHECKPOINT_FOLDER', 'CONFIG_FILE', 'LATEST_CHECKPOINT', 'MACHINE_FILE', 'MANIFEST_FILE', 'RECORD_FILE',
           'SUMMARY_FILE', 'RunRecord', 'checkpoint_record', 'epoch_checkpoints', 'machine_info', 'read_machines',
           'read_records', 'record_machine', 'run_finished']


def checkpoint_record(path: str | os.PathLike) -> dict[str, Any]:
    """What a checkpoint says of the run that wrote it: its clocks (``train_wct_s``, ``total_wct_s``, ...), ``step``
    and its latest evaluation ``metrics``. This is how a teacher's own training cost and accuracy travel with it."""
    state = safe_load(path)
    records = state.get('state', {}).get('callbacks', {}).get(RunRecord.__qualname__)
    if records is None:
        raise ValueError(f'{path} has no run record (it was not written by a run with the RunRecord callback)')
    return records


def read_records(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The evaluation records of the run in ``folder`` (an empty list if it has none yet); a torn line (a run
    killed while writing) is skipped with a warning."""
    path = Path(folder) / RECORD_FILE
    if not path.is_file():
        return []
    records = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning('%s line %d is not JSON; skipped', path, i + 1)
    return records


def run_finished(run_dir: str | os.PathLike, need_checkpoint: bool = False) -> bool:
    """Whether the run in ``run_dir`` completed: its ``summary.json`` says ``finished: true`` (and, with
    ``need_checkpoint``, its latest checkpoint is there for a later stage to start from). A torn or unreadable
    summary is "not finished", so the run is resumed rather than trusted. The one answer every driver and study
    uses to skip a finished run."""
    folder = Path(run_dir)
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not (isinstance(summary, dict) and summary.get('finished')):
        return False
    return not need_checkpoint or (folder / LATEST_CHECKPOINT).is_file()


def epoch_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The checkpoints the run in ``run_dir`` kept (``checkpoints/ep<E>-ba<B>-rank0.pt``, not the ``latest`` link), in
    training order (``ep10`` after ``ep9``); empty if it has none."""
    folder = Path(run_dir) / CHECKPOINT_FOLDER
    found = []
    for path in folder.glob('*.pt') if folder.is_dir() else []:
        match = _EPOCH_CHECKPOINT.fullmatch(path.name)
        if match and not path.is_symlink():
            found.append(((int(match[1]), int(match[2])), path))
    return [p for _, p in sorted(found)]


class RunRecord(Callback):
    """Write ``record.jsonl`` and ``summary.json`` into ``folder``.

    Args:
        folder (str): where the two files go (created at ``FIT_START`` on rank 0).
        teachers (list[str]): the checkpoint paths of the run's teachers (recorded in every line and the summary).
    """

    def __init__(self, folder: str | os.PathLike, teachers: Sequence[str] = ()) -> None:
        self.folder = Path(folder)
        self.teachers = teachers  # the recipe's list (filled as its algorithms are built): read when writing
        self._offsets = {'total_wct_s': 0.0, 'eval_wct_s': 0.0, 'cpu_s': 0.0}
        self._t0: float | None = None
        self._cpu0 = 0.0
        self._eval_s = 0.0
        self._eval_t0 = 0.0
        self._state: State | None = None
        self._resumed_step: int | None = None
        self._last_metrics: dict[str, float] = {}
        self._fit_ended = False

    # clocks ---------------------------------------------------------------------------------------------------
    def clocks(self) -> dict[str, float]:
        """Training, evaluation and total wall-clock seconds, and CPU seconds, including earlier segments."""
        total = self._offsets['total_wct_s'] + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)
        eval_s = self._offsets['eval_wct_s'] + self._eval_s
        cpu = self._offsets['cpu_s'] + (time.process_time() - self._cpu0 if self._t0 is not None else 0.0)
        return {'train_wct_s': total - eval_s, 'total_wct_s': total, 'eval_wct_s': eval_s, 'cpu_s': cpu}

    def _position(self, state: State) -> dict[str, int]:
        ts = state.timestamp
        return {'step': int(ts.batch), 'epoch': int(ts.epoch), 'samples': int(ts.sample), 'tokens': int(ts.token)}

    # events ---------------------------------------------------------------------------------------------------
    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.INIT:
            self._state = state
        elif event == Event.FIT_START:
            self._start(state)
        elif event == Event.EVAL_BEFORE_ALL:
            self._eval_t0 = time.perf_counter()
        elif event == Event.EVAL_AFTER_ALL:
            self._eval_s += time.perf_counter() - self._eval_t0
            self._write_eval(state)
            if self._fit_ended:  # Composer evaluates after FIT_END when eval_interval does not divide the duration
                self._write_summary(state)
        elif event == Event.FIT_END:
            self._fit_ended = True
            self._write_summary(state)

    def _start(self, state: State) -> None:
        self._fit_ended = False
        self._t0 = time.perf_counter()
        self._cpu0 = time.process_time()
        self._eval_s = 0.0
        if dist.get_global_rank() != 0:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / RECORD_FILE
        if self._resumed_step is None:
            path.write_text('')  # a fresh run starts a fresh record
        else:  # drop what the interrupted run did after the checkpoint it resumes from
            kept = [r for r in read_records(self.folder) if r['step'] <= self._resumed_step]
            path.write_text(''.join(json.dumps(r) + '\n' for r in kept))
        (self.folder / SUMMARY_FILE).unlink(missing_ok=True)

    def _metrics(self, state: State) -> dict[str, float]:
        values = {}
        for label, metrics in state.eval_metrics.items():
            for name, metric in metrics.items():
                values[f'{label}/{name}'] = float(metric.compute())
        return values

    def _write_eval(self, state: State) -> None:
        if dist.get_global_rank() != 0:
            return
        self._last_metrics = self._metrics(state)
        line = {**self._position(state), **self.clocks(), 'metrics': self._last_metrics,
                'teachers': list(self.teachers)}
        with open(self.folder / RECORD_FILE, 'a') as f:
            f.write(json.dumps(line) + '\n')

    def _write_summary(self, state: State) -> None:
        if dist.get_global_rank() != 0:
            return
        records = read_records(self.folder)
        summary = {
            **self._position(state),
            **self.clocks(),
            'finished': True,
            'final_metrics': records[-1]['metrics'] if records else {},
            'n_evals': len(records),
            'teachers': list(self.teachers),
        }
        (self.folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + '\n')

    # checkpointing --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        step = int(self._state.timestamp.batch) if self._state is not None else 0
        return {**self.clocks(), 'step': step, 'metrics': self._last_metrics, 'teachers': list(self.teachers)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._offsets = {k: float(state[k]) for k in self._offsets}
        self._resumed_step = int(state['step'])
        self._last_metrics = dict(state.get('metrics', {}))
