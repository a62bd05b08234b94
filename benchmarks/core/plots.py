"""Accuracy vs training wall-clock: one line per run, the Pareto front of final points, the target line.

Markers sit at evaluations, one marker shape per training duration; the front is drawn as a step line (the best
accuracy reachable within a given wall-clock) through circled final points. With ``with_teachers`` every run's
curve is shifted right by its teachers' own training time (recursively, each teacher once) and the front recomputed.
Matplotlib is imported lazily with the Agg backend (``pip install .[benchmarks]``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from algorithms.analysis.plots import pyplot, save_figure
from benchmarks.core.analysis import Analysis
from benchmarks.core.records import duration_key

log = logging.getLogger(__name__)
MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '*', '<', '>', 'h', 'p')


def _pyplot() -> Any:
    return pyplot('plots (pip install "kd-recipes[benchmarks]")')


def plot_accuracy_vs_time(a: Analysis, path: str | Path, with_teachers: bool = False) -> Path:
    """Write the accuracy-vs-wall-clock PNG to ``path`` and return it."""
    plt = _pyplot()
    runs = [r for r in a.results.values() if r.curve]
    durations = sorted({r.duration for r in runs}, key=duration_key)
    marker = {d: MARKERS[i % len(MARKERS)] for i, d in enumerate(durations)}
    cmap = plt.get_cmap('tab20')
    fig, ax = plt.subplots(figsize=(12, 7), dpi=110)
    for i, r in enumerate(runs):
        shift = r.teacher_s if with_teachers else 0.0
        xs = [t + shift for t, _ in r.curve]
        ys = [100 * acc for _, acc in r.curve]
        style = dict(linewidth=2.2, zorder=3) if r.name == a.study.baseline else dict(linewidth=1.0, alpha=0.85)
        ax.plot(xs, ys, marker=marker[r.duration], markersize=4, color=cmap(i % 20),
                label=f'{r.name} ({r.duration})', **style)
    front = a.pareto(with_teachers)
    if front:
        fx = [t for t, _, _ in front]
        fy = [100 * acc for _, acc, _ in front]
        right = max(max(t + (r.teacher_s if with_teachers else 0.0) for t, _ in r.curve) for r in runs)
        ax.step(fx + [right], fy + [fy[-1]], where='post', color='black', linewidth=2.5, alpha=0.35, zorder=2,
                label='Pareto front (final points)')
        ax.scatter(fx, fy, s=90, facecolors='none', edgecolors='black', linewidths=1.5, zorder=4)
    if a.target is not None:
        ax.axhline(100 * a.target, color='red', linestyle='--', linewidth=1.2,
                   label=f'target {100 * a.target:.2f}% ({a.study.baseline})')
    finals = [100 * r.curve[-1][1] for r in runs]
    if finals:  # the interesting part is near the top: every final point, the target, not every first epoch
        top = max(100 * acc for r in runs for _, acc in r.curve)
        low = min(min(finals), (100 * a.target if a.target else top) - 2.0)
        ax.set_ylim(max(0.0, low - 1.0), min(100.0, top + 0.5))
    ax.set_xlim(left=0)
    ax.set_xlabel('training wall-clock (s)' + (" + teachers' own training (s)" if with_teachers else ''))
    ax.set_ylabel(f'{a.study.metric} (%)')
    title = 'Accuracy vs training wall-clock' + (' (teacher cost added)' if with_teachers else '')
    ax.set_title(f'{title}: study {a.study.name}; markers at evaluations, shape = duration')
    ax.grid(True, alpha=0.3)
    ax.legend(loc='center left', bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path, 'wrote')
