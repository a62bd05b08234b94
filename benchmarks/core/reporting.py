"""What every study report shares: its command line (a records folder in, a report folder out), the header that says
how to regenerate and rerun it and on which machine it ran, and one-line errors; and what a study driver besides the
engine shares (``benchmarks.bert.study``): its command line (a study YAML in, read by
:func:`~benchmarks.study.spec.load_study`), one-line errors, records written once (so that a study resumes).

A report module defines ``build(root, out) -> list of markdown lines`` (``build(root, out, args)`` when it adds
options of its own) and calls :func:`report_main`, the one report command line
(``python -m benchmarks.<family>.report ROOT [options] --out DIR``)::

    def main(argv=None):
        return report_main('benchmarks.pruning.report', __doc__, build, argv)

Its header (:func:`header`) names the command that regenerates it from the records it copied (:func:`command`).

A study driver passes ``load_study`` and its ``run(study, args) -> exit status`` to :func:`study_main`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

from algorithms.callbacks.machine import read_machines
from benchmarks.study.spec import StudyError
from recipes.core.cli import LOG_FORMAT
from recipes.core.errors import ConfigError

__all__ = ['ReportError', 'report_main', 'machine_line', 'header', 'command', 'write_report', 'LOG_FORMAT',
           'study_main', 'write_once']

log = logging.getLogger(__name__)


class ReportError(ValueError):
    """Records a report cannot be built from: the message says what is missing and where."""


def machine_line(sessions: Sequence[dict[str, Any]], last: bool = True) -> str:
    """``'Machine: AMD EPYC, 2 cores, torch 2.7.0, 2026-11-26 18:21 UTC.'`` from ``machine.json`` sessions (the last
    one, or all of them)."""
    chosen = list(sessions)[-1:] if last else list(sessions)
    if not chosen:
        return 'Machine: not recorded.'
    return 'Machine: ' + '; '.join(f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('device', 'CPU')}, torch "
                                   f"{m.get('torch')}, {m.get('date')}" for m in chosen) + '.'


def header(title: str, regenerate: str, rerun: Optional[str] = None, root: Optional[Path] = None,
           sessions: Optional[Sequence[dict[str, Any]]] = None) -> list[str]:
    """The report's first lines, the same for every report: its title, the command that regenerates it from the
    committed records, the commands that rerun the study, and the machine of the last session (``sessions``, else
    those of ``<root>/machine.json``; no machine line when neither is given)."""
    lines = [f'# {title}', '', f'Regenerate from the committed records: `{regenerate}`'
             + (f'; rerun the study: {rerun}.' if rerun else '.'), '']
    if sessions is None and root is not None:
        sessions = read_machines(root)
    if sessions is not None:
        lines += [machine_line(sessions), '']
    return lines


def command(prog: str, root: str | Path, out: str | Path, options: Sequence[tuple[str, Optional[str]]] = ()) -> str:
    """``python -m <prog> ROOT [--flag value ...] --out OUT``, each word quoted for a shell; an option whose value is
    None is left out. With ``ROOT`` the committed copy of the records, the command that regenerates a report."""
    words = ['python', '-m', prog, str(root)] + [w for flag, v in options if v is not None for w in (flag, str(v))]
    return ' '.join(shlex.quote(w) for w in [*words, '--out', str(out)])


def write_report(out: Path, lines: Sequence[str]) -> None:
    """``<out>/report.md``: the lines, each ended by a newline."""
    (Path(out) / 'report.md').write_text('\n'.join(lines) + '\n')


def report_main(prog: str, doc: Optional[str], build: Callable[..., list[str]], argv: Optional[list[str]] = None,
                root_help: str = 'the study runs_root, or a committed copy of its records',
                options: Optional[Callable[[argparse.ArgumentParser], Any]] = None) -> int:
    """``python -m <prog> ROOT [options] --out OUT``: build the report from the records under ROOT into OUT (created)
    and write ``OUT/report.md``; ``options`` adds the report's own arguments to the parser, and ``build`` then gets
    the parsed ``args`` too. A missing or empty ROOT, a :class:`ReportError` or a bad study YAML is one ``error:``
    line and exit status 2, and leaves nothing behind: an OUT this call created is removed (a report checks its
    records before it writes into an OUT that was there)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    p = argparse.ArgumentParser(prog=f'python -m {prog}', description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('root', help=root_help)
    if options is not None:
        options(p)
    p.add_argument('--out', required=True, help='the report folder (report.md, plots, a copy of the records)')
    args = p.parse_args(argv)
    root, out = Path(args.root), Path(args.out)
    created = next((d for d in reversed([out, *out.parents]) if not d.exists()), None)  # the top folder it makes
    try:
        if not root.is_dir():
            raise ReportError(f'no such folder: {root}')
        if not any(root.iterdir()):
            raise ReportError(f'{root}: empty folder, no records to report on')
        out.mkdir(parents=True, exist_ok=True)
        lines = build(root, out, args) if options is not None else build(root, out)
    except (ReportError, StudyError, ConfigError) as e:
        if created is not None and created.is_dir():
            shutil.rmtree(created)
        sys.stderr.write(f'error: {e}\n')
        return 2
    write_report(out, lines)
    return 0


def study_main(prog: str, doc: Optional[str], load: Callable[[str], Any],
               run: Callable[[Any, argparse.Namespace], Optional[int]], argv: Optional[list[str]] = None,
               options: Optional[Callable[[argparse.ArgumentParser], Any]] = None) -> int:
    """``python -m <prog> STUDY [options]``: ``run(load(STUDY), args)``, its exit status; a
    :class:`~benchmarks.study.spec.StudyError` or a ConfigError (the YAML, a missing or unknown key, a bad entry or
    recipe) is one ``error:`` line and exit status 2. ``options`` adds the driver's own arguments to the parser."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    p = argparse.ArgumentParser(prog=f'python -m {prog}', description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('study', help='the study YAML, e.g. benchmarks/studies/<study>.yaml')
    if options is not None:
        options(p)
    args = p.parse_args(argv)
    try:
        return int(run(load(args.study), args) or 0)
    except (StudyError, ConfigError) as e:
        sys.stderr.write(f'error: {e}\n')
        return 2


def write_once(path: Path, make: Callable[[], Any]) -> bool:
    """Write ``make()`` to ``path`` as JSON unless the file is there (a study resumes); whether it wrote."""
    if path.is_file():
        return False
    log.info('writing %s', path)
    tmp = path.with_name(f'.{path.name}.tmp')  # a kill mid-write leaves no half record for the rerun to trust
    tmp.write_text(json.dumps(make(), indent=1) + '\n')
    os.replace(tmp, path)
    return True
