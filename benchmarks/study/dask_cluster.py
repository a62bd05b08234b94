"""Run a study on a Dask cluster: ``python -m benchmarks.study STUDY.yaml --dask local:N | gpus:N | tcp://HOST:PORT``.

The runs go stage by stage (:func:`benchmarks.study.spec.stages`): every unfinished run of a stage is submitted at once,
one run per worker at a time, and the next stage starts when the whole stage has ended (its runs need the checkpoints
of the stages before). On its worker a run is a subprocess, from the repository root, of the command that
``--print-commands`` prints, with the worker's own Python as the launcher (``--launcher`` replaces it), so Composer
runs in a process of its own; its output goes to ``<runs_root>/<run>/driver.log``. The semantics are those of
:func:`benchmarks.study.engine.run_study` (finished runs skipped, a failed run blocks the runs that learn from it, the
others go on, the study family's hook describes each finished run, here in this process); which worker ran what, and
when, is appended to ``<runs_root>/dask_runs.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from benchmarks.study.spec import Study, StudyRun

# Workers import this module to run execute_run: only the standard library here (the study modules import
# Composer and torch, seconds per worker); the driver's functions import them when called.
log = logging.getLogger('benchmarks.study.engine')
REPO = Path(__file__).resolve().parents[2]
RUNS_FILE = 'dask_runs.json'
RUN_LOG = 'driver.log'
TAIL_LINES = 20


@dataclasses.dataclass(frozen=True)
class DaskSpec:
    """Where the runs go: a local cluster of ``workers`` processes (one per GPU with ``gpus``), or ``address``."""

    text: str
    workers: int = 1
    gpus: bool = False
    address: Optional[str] = None


def parse_dask_spec(text: str) -> DaskSpec:
    """``local:N`` (N single-threaded worker processes), ``gpus:N`` (one worker per GPU) or a scheduler address."""
    from benchmarks.study.spec import StudyError

    kind, colon, value = text.partition(':')
    if kind in ('local', 'gpus') and colon and value.isdigit() and int(value) >= 1:
        return DaskSpec(text, workers=int(value), gpus=kind == 'gpus')
    if kind in ('tcp', 'tls') and value.startswith('//') and len(value) > 2:
        return DaskSpec(text, address=text)
    raise StudyError(f'--dask {text!r}: expected local:N or gpus:N (N >= 1 workers), or a scheduler address '
                     'tcp://HOST:PORT')


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec='milliseconds')


def execute_run(args: list[str], log_file: str, launcher: Optional[list[str]] = None,
                threads: Optional[int] = None) -> dict[str, Any]:
    """On a worker: ``<launcher or this Python> <args>`` from the repository root, its output appended to
    ``log_file``. Returns the exit status, the worker, the host, the start and end times (and, on failure, the last
    lines of the log)."""
    from distributed import get_worker

    words = [*(launcher or [sys.executable]), *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p))
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    out = {'worker': get_worker().address, 'host': socket.gethostname(), 'start': _now()}
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_file, 'a') as f:
        f.write(f"# {out['start']} {out['host']} ({out['worker']}): {shlex.join(words)}\n")
        f.flush()
        rc = subprocess.call(words, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
    out.update(end=_now(), wall_s=round(time.perf_counter() - t0, 3), returncode=rc)
    if rc != 0:
        out['tail'] = '\n'.join(Path(log_file).read_text(errors='replace').splitlines()[-TAIL_LINES:])
    return out


def _anchored(study: Study) -> Study:
    """The study with the paths its runs' processes (started in the repository root) must read as this one does: a
    relative runs root, and recipes found relative to the current folder, made absolute (unless that is the root)."""
    if Path.cwd().resolve() == REPO:
        return study
    runs = [dataclasses.replace(r, recipe=str(Path(r.recipe).resolve()))
            if not Path(r.recipe).is_absolute() and Path(r.recipe).is_file() else r for r in study.runs]
    return dataclasses.replace(study, runs_root=str(Path(study.runs_root).resolve()), runs=runs)


class _Journal:
    """``<runs_root>/dask_runs.json``: one session per invocation that runs something, rewritten after every run."""

    def __init__(self, runs_root: str, spec: DaskSpec, workers: list[str]) -> None:
        self.path = Path(runs_root) / RUNS_FILE
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {'sessions': []}
        self.runs: list[dict[str, Any]] = []
        self.data['sessions'].append({'date': _now(), 'dask': spec.text, 'workers': workers, 'runs': self.runs})

    def add(self, entry: dict[str, Any]) -> None:
        self.runs.append(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2) + '\n')


def run_study_dask(study: Study, only: Optional[list[str]], spec: DaskSpec,
                   launcher: Optional[str] = None) -> dict[str, str]:
    """:func:`benchmarks.study.engine.run_study` on a Dask cluster, stage by stage; returns the same status dict."""
    from algorithms.blockwise.cluster import open_client, worker_names
    from benchmarks.study.engine import describe, family_hook, pending_runs
    from benchmarks.study.spec import stages

    study = _anchored(study)
    runs, todo, status = pending_runs(study, only)
    hook = family_hook(study)
    for r in runs:
        if r not in todo:
            describe(study, r, status, hook)
    if todo:
        todo_names = {r.name for r in todo}
        groups = [g for g in ([r for r in s if r.name in todo_names] for s in stages(study, [r.name for r in runs]))
                  if g]
        # local CPU workers share this machine's cores; GPU and remote workers keep their own environment
        threads = None if spec.gpus or spec.address else max(1, (os.cpu_count() or 1) // spec.workers)
        prefix = shlex.split(launcher) if launcher else None
        with open_client(workers=spec.workers, address=spec.address, gpus=spec.gpus, torch_threads=None) as client:
            journal = _Journal(study.runs_root, spec, worker_names(client))
            for k, group in enumerate(groups, 1):
                _run_stage(client, study, (runs, group), f'stage {k}/{len(groups)}', status, journal, prefix,
                           threads, hook)
    counts = {s: sum(v == s for v in status.values()) for s in sorted(set(status.values()))}
    log.info('study %s: %s; records under %s', study.name, counts, study.runs_root)
    return status


def _run_stage(client: Any, study: Study, runs_group: tuple[list[StudyRun], list[StudyRun]], stage: str,
               status: dict[str, str], journal: _Journal, launcher: Optional[list[str]], threads: Optional[int],
               hook: Any) -> None:
    """Submit the stage's runs whose teachers finished, wait for all of them, record (and describe) each as it
    ends."""
    from distributed import as_completed

    from benchmarks.study.engine import command, describe, run_finished, unusable_teachers

    runs, group = runs_group
    futures = {}
    for r in group:
        bad = unusable_teachers(study, r, runs, status)
        if bad:
            status[r.name] = 'blocked'
            log.error('%s %s: skipped, its teacher(s) %s did not finish', stage, r.name, ', '.join(bad))
            continue
        args = shlex.split(command(study, r, launcher=''))
        log_file = f'{study.run_dir(r.name)}/{RUN_LOG}'
        futures[client.submit(execute_run, args, log_file, launcher, threads, pure=False)] = (r, log_file)
        log.info('%s %s: submitted (%s %s; output in %s)', stage, r.name, args[0], r.recipe, log_file)
    try:
        for future in as_completed(list(futures)):
            r, log_file = futures[future]
            try:
                out = future.result()
            except Exception as e:  # the task itself failed (e.g. its worker died too often): only this run is lost
                out = {'returncode': None, 'error': f'{type(e).__name__}: {e}'}
            ok = out.get('returncode') == 0 and run_finished(study, r)
            status[r.name] = 'trained' if ok else 'failed'
            journal.add({'name': r.name, 'stage': stage, 'status': status[r.name], 'log': log_file,
                         **{k: v for k, v in out.items() if k != 'tail'}})
            where = f"{out.get('worker')} ({out.get('host')})"
            if ok:
                log.info('%s %s: trained on %s in %.1f s', stage, r.name, where, out['wall_s'])
                describe(study, r, status, hook)
            elif out.get('returncode') == 0:
                log.error('%s %s: failed on %s: it exited 0 but its records do not say finished (is %s shared '
                          'with the workers?)', stage, r.name, where, study.runs_root)
            else:
                log.error('%s %s: failed on %s (%s); last lines of %s:\n%s', stage, r.name, where,
                          out.get('error') or f"exit status {out['returncode']}", log_file, out.get('tail', ''))
    except KeyboardInterrupt:
        client.cancel(list(futures))
        raise
