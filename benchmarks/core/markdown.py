"""Markdown tables every report uses: from a header and rows, or from a pandas frame (e.g. a pivot of intervals)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional

from benchmarks.core.intervals import Interval, mean_interval

if TYPE_CHECKING:
    import pandas as pd

__all__ = ['table', 'frame_table', 'interval_pivot', 'interval_cell', 'missing']


def table(head: Sequence[str], rows: Sequence[Sequence[object]], align: str = '') -> list[str]:
    """The lines of a markdown table; cells are written with ``str``; ``align`` has one letter per column, ``r`` for a
    right-aligned one (``---:``), any other (or none) for the default."""
    marks = ''.join('---:|' if a == 'r' else '---|' for a in align.ljust(len(head))[:len(head)])
    return ['| ' + ' | '.join(head) + ' |', '|' + marks] + ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]


def missing(value: Any) -> bool:
    """None or NaN (an empty cell of a frame)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def frame_table(frame: 'pd.DataFrame', fmt: Callable[[Any], str] = str, index: Optional[str] = None,
                columns: Optional[Callable[[Any], str]] = None) -> list[str]:
    """The lines of a markdown table of ``frame``: its index as the first column (headed ``index``, else the index's
    name), each cell written by ``fmt`` (missing cells empty), column labels by ``columns`` (else ``str``)."""
    label = columns or str
    head = [index if index is not None else str(frame.index.name or '')] + [label(c) for c in frame.columns]
    rows = [[key] + ['' if missing(v) else fmt(v) for v in values]
            for key, values in zip(frame.index, frame.itertuples(index=False, name=None))]
    return table(head, rows)


def interval_pivot(frame: 'pd.DataFrame', index: str, columns: str, values: str,
                   order: Optional[Sequence[Any]] = None) -> 'pd.DataFrame':
    """A frame of :class:`~benchmarks.core.intervals.Interval` cells: the mean and 95% interval of ``values`` over the rows
    of ``frame`` (e.g. one row per seed) sharing each (``index``, ``columns``) pair; rows with no value are left out;
    ``order`` names the rows to keep, in their order (rows not in it are left out), columns are sorted. A frame with
    no value gives an empty frame (a table with a header only)."""
    import pandas as pd

    present = frame.loc[frame[values].map(lambda v: not missing(v)).astype(bool)] if len(frame) else frame
    if present.empty:
        return pd.DataFrame(index=pd.Index([], name=index))
    cells = present.groupby([index, columns])[values].agg(lambda s: mean_interval(list(s)))
    pivot = cells.unstack(columns).sort_index(axis=1)
    if order is not None:
        pivot = pivot.reindex([k for k in order if k in pivot.index])
    return pivot.astype(object).where(pivot.notna(), None)


def interval_cell(digits: int = 2, scale: float = 1.0) -> Callable[[Interval], str]:
    """A ``fmt`` for :func:`frame_table` writing an interval as ``mean [lo, hi]``."""
    return lambda iv: iv.fmt(digits, scale)
