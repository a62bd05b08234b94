"""A per-layer similarity heat-map: layers down, compared models (or retraining epochs) across, one PNG.

Matplotlib is imported lazily with the Agg backend: the rest of ``algorithms.analysis`` does not need it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ['similarity_heatmap']

log = logging.getLogger(__name__)

Column = Union[Mapping[str, float], Sequence[Mapping[str, Any]]]


def pyplot(what: str = 'the similarity heat-map') -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend; a clear ImportError naming ``what`` without it."""
    try:
        import matplotlib
    except ImportError as e:  # an optional dependency
        raise ImportError(f'{what} needs matplotlib: pip install matplotlib') from e
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig: Any, path: Union[str, Path], what: str) -> Path:
    """Write ``fig`` to ``path`` (parent folders created), close it, log ``what: path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    pyplot().close(fig)
    log.info('%s: %s', what, path)
    return path


def _as_mapping(column: Column) -> dict[str, float]:
    """``{layer: similarity}`` from such a mapping or from :func:`layer_similarity` rows."""
    if isinstance(column, Mapping):
        return {str(k): float(v) for k, v in column.items()}
    return {str(row['layer']): float(row['similarity']) for row in column}


def similarity_heatmap(columns: Mapping[str, Column], path: Union[str, Path], title: Optional[str] = None,
                       xlabel: str = 'model', vmin: float = 0.0, vmax: float = 1.0, annotate: bool = True) -> Path:
    """Write a heat-map of similarities to ``path`` (PNG) and return the path.

    Args:
        columns: ``{column label: column}`` in display order; a column is ``{layer: similarity}`` or the rows
            :func:`~algorithms.analysis.layer_similarity` returns. Columns are models compared with a reference
            (``'mag 30%'``, ``'re-init'``...) or retraining epochs (``'ep 1'``, ``'ep 5'``...). Layers appear in
            the order first seen; a layer missing from a column is left blank.
        title: the figure title; ``xlabel``: the axis label of the columns.
        vmin, vmax: the colour scale (similarities lie in [0, 1]).
        annotate: print each value in its cell.
    """
    plt = pyplot()
    data = {label: _as_mapping(col) for label, col in columns.items()}
    if not data:
        raise ValueError('similarity_heatmap: no columns to draw')
    layers = list(dict.fromkeys(layer for col in data.values() for layer in col))
    labels = list(data)
    grid = [[data[c].get(layer, math.nan) for c in labels] for layer in layers]
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * len(labels), 1.2 + 0.45 * len(layers)), dpi=110)
    image = ax.imshow(grid, cmap='viridis', vmin=vmin, vmax=vmax, aspect='auto')
    tilt = len(labels) > 4
    ax.set_xticks(range(len(labels)), labels, rotation=30 if tilt else 0, ha='right' if tilt else 'center')
    ax.set_yticks(range(len(layers)), layers)
    ax.set_xlabel(xlabel)
    ax.set_ylabel('layer')
    if title:
        ax.set_title(title)
    if annotate:
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if not math.isnan(value):
                    ax.text(j, i, f'{value:.2f}', ha='center', va='center', fontsize=8,
                            color='black' if value > vmin + 0.6 * (vmax - vmin) else 'white')
    fig.colorbar(image, ax=ax, label='similarity')
    fig.tight_layout()
    return save_figure(fig, path, 'heat-map')
