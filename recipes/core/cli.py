"""One command-line helper for drivers that are more than one ``Trainer.fit``: Matryoshka chains today, pruning
pipelines (train -> prune -> re-init) and the blockwise trainer next.

A driver states its stages; this module gives each the same behaviour as ``recipes/train.py``:

* ``-f FILE`` plus dotted ``key=value`` overrides (:func:`driver_args`, :func:`dotlist` to pass dicts on);
* every stage is validated before the first one starts (:meth:`Stage.check`), so a typo in the last stage does not
  surface after an hour of training;
* a bad config is one ``error: ...`` line on stderr and exit status 2 (:func:`run_main`);
* stages are resumable: a stage whose :meth:`Stage.done` is true is skipped, and a stage that trains with
  ``autoresume`` continues from its last checkpoint, so running the same command again finishes the job.

A driver script starts with the path bootstrap (so that ``composer path/to/driver.py`` works from a checkout)::

    REPO = Path(__file__).resolve().parents[2]
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from recipes.core.errors import ConfigError

__all__ = ['Stage', 'dotlist', 'format_value', 'driver_args', 'run_stages', 'run_main', 'train_stage']

log = logging.getLogger('recipes.core.cli')
LOG_FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'


def format_value(value: Any) -> str:
    """A value as the right-hand side of a ``key=value`` override (strings as they are, the rest as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def dotlist(overrides: dict[str, Any]) -> list[str]:
    """``{'optimizer.lr': 0.1, 'teachers': ['a.pt']}`` -> ``['optimizer.lr=0.1', 'teachers=["a.pt"]']``."""
    return [f'{k}={format_value(v)}' for k, v in overrides.items()]


def driver_args(argv: Optional[Sequence[str]], description: str, default_file: Optional[str] = None,
                prog: Optional[str] = None) -> argparse.Namespace:
    """Parse ``-f FILE [dotted.key=value ...]`` (``args.file``, ``args.overrides``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-f', '--file', default=default_file, required=default_file is None,
                        help='YAML' + (' (default: %(default)s)' if default_file else ''))
    parser.add_argument('overrides', nargs='*', help='dotted.key=value pairs merged over the YAML')
    return parser.parse_args(None if argv is None else list(argv))


@dataclass
class Stage:
    """One resumable step of a driver.

    Attributes:
        name: shown in the log.
        run: does the work (e.g. trains a recipe with ``autoresume``).
        done: true when the stage's result already exists (then it is skipped).
        check: validates the stage's config and raises ConfigError; called for every stage before any runs.
    """

    name: str
    run: Callable[[], Any]
    done: Callable[[], bool] = lambda: False
    check: Optional[Callable[[], Any]] = None
    result: Any = field(default=None, init=False)


def run_stages(stages: Sequence[Stage], logger: logging.Logger = log) -> dict[str, str]:
    """Check every stage, then run those not done, in order; returns ``{name: 'skipped' | 'ran'}``."""
    for stage in stages:
        if stage.check is not None:
            stage.check()
    status = {}
    for stage in stages:
        if stage.done():
            logger.info('%s: finished earlier, skipped', stage.name)
            status[stage.name] = 'skipped'
            continue
        logger.info('%s: running', stage.name)
        stage.result = stage.run()
        status[stage.name] = 'ran'
    return status


def run_main(fn: Callable[[], int | None]) -> int:
    """Run a driver's body: a ConfigError prints ``error: <message>`` and returns 2; a loss that became NaN or
    infinite (``FloatingPointError`` from the guard) and a full disk (ENOSPC) print one such line and return 1;
    otherwise ``fn``'s status."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        return int(fn() or 0)
    except ConfigError as e:
        sys.stderr.write(f'error: {e}\n')
        return 2
    except FloatingPointError as e:
        sys.stderr.write(f'error: {e}\n')
        return 1
    except OSError as e:  # a full disk: one line (no partial checkpoint is left; the same command resumes)
        if e.errno != errno.ENOSPC:
            raise
        sys.stderr.write(f'error: {e.strerror}\n')
        return 1


def train_stage(cfg: dict[str, Any]) -> None:
    """Train one resolved recipe config (validated again, then built and fitted); the body of a training stage."""
    from recipes.core.builders import launch, prepare

    trainer = launch(prepare(cfg))
    try:
        trainer.fit()
    finally:
        trainer.close()
