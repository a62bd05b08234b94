"""Markdown pieces every report uses: a table from a header and rows of cells."""
from __future__ import annotations

from collections.abc import Sequence

__all__ = ['table']


def table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """The lines of a markdown table; cells are written with ``str``."""
    return ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)] + [
        '| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
