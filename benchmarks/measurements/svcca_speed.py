"""SVCCA speed: ``algorithms.analysis.svcca`` (torch.linalg, float64) against google/svcca's numpy procedure.

    .venv/bin/python benchmarks/measurements/svcca_speed.py       # writes benchmarks/results/svcca_speed.{json,md}

Two layers of 512 neurons over 10,000 datapoints, keep k=64 directions per layer, timed side by side in one
process in interleaved rounds (the first round is warm-up; each round alternates which goes first). The reference
is ``benchmarks/measurements/svcca_reference.py``, a transcription of ``cca_core.get_cca_similarity`` with the tutorial's SVD
step. The activations share a 48-dimensional signal over a decaying spectrum plus independent noise, so the
kept subspaces and the similarity (about 0.6) are not trivial. Wall-clock and process CPU time are both recorded,
with ``/proc/loadavg`` before and after (other processes on a shared machine slow both sides).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # also run as a script, by path

from algorithms.analysis import svcca  # noqa: E402
from benchmarks.core.machine import machine_info  # noqa: E402
from benchmarks.measurements.svcca_reference import svcca_reference  # noqa: E402
from benchmarks.measurements.timing import REPO, interleave, script, write  # noqa: E402

GOAL_S, GOAL_RATIO, GOAL_DIFF = 0.5, 5.0, 1e-4


def activations(neurons: int, datapoints: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two ``neurons x datapoints`` layers sharing a 48-d signal, each with a decaying spectrum plus noise."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((48, datapoints))
    layers = []
    for _ in range(2):
        own = rng.standard_normal((48, datapoints))
        signal = np.vstack([shared, own]) * np.logspace(1, -0.5, 96)[:, None]
        mix = rng.standard_normal((neurons, 96)) / np.sqrt(96)
        layers.append(mix @ signal + 0.3 * rng.standard_normal((neurons, datapoints)))
    return layers[0], layers[1]


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as ``/proc/loadavg`` writes them."""
    return ' '.join(f'{x:.2f}' for x in os.getloadavg())


def numpy_blas() -> str:
    """numpy's BLAS library and version, e.g. 'scipy-openblas 0.3.27'."""
    try:
        blas = np.show_config(mode='dicts')['Build Dependencies']['blas']
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no dict mode
        return 'unknown BLAS'


def busy_cpu_s() -> float:
    """CPU seconds all processes have used since boot (``/proc/stat``), or NaN where unreadable."""
    try:
        fields = [int(v) for v in Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:]]
    except (OSError, ValueError):
        return math.nan
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def timed(fn: Callable[[], float]) -> dict[str, float]:
    """Wall-clock, this process's CPU time, other processes' CPU time (s) and the result of ``fn()``."""
    wall, cpu, busy = time.perf_counter(), time.process_time(), busy_cpu_s()
    value = fn()
    own = time.process_time() - cpu
    return {'wall': time.perf_counter() - wall, 'cpu': own, 'others_cpu': max(0.0, busy_cpu_s() - busy - own),
            'value': value}


def main(argv: Optional[list[str]] = None) -> int:
    p = script('svcca_speed', __doc__)
    p.add_argument('--neurons', type=int, default=512)
    p.add_argument('--datapoints', type=int, default=10_000)
    p.add_argument('--keep', type=int, default=64)
    p.add_argument('--rounds', type=int, default=8, help='interleaved rounds; the first is warm-up')
    p.add_argument('--device', default='cpu', help="where ours runs ('cuda' on a GPU machine)")
    p.add_argument('--out', default=str(REPO / 'benchmarks' / 'results'))
    args = p.parse_args(argv)
    a, b = activations(args.neurons, args.datapoints)
    ta, tb = torch.from_numpy(a).to(args.device), torch.from_numpy(b).to(args.device)
    fns = {'ours': lambda: svcca(ta, tb, keep=args.keep).mean,  # a float: waits for a GPU to finish
           'reference': lambda: svcca_reference(a, b, keep=args.keep)}
    load_before = loadavg()
    rounds = interleave(fns, args.rounds - 1, alternate=True, measure=timed)
    load_after = loadavg()

    def stat(name: str, fn: Callable = statistics.median, key: str = 'wall') -> float:
        return fn(t[key] for t in rounds[name])

    cores = os.cpu_count() or 1
    result: dict[str, Any] = {
        'setup': {'neurons': args.neurons, 'datapoints': args.datapoints, 'keep': args.keep,
                  'measured_rounds': args.rounds - 1, 'ours_device': args.device, 'dtype': 'float64'},
        'machine': {**machine_info(), 'numpy': np.__version__, 'numpy_blas': numpy_blas()},
        'loadavg_before': load_before, 'loadavg_after': load_after,
        'ours_s': stat('ours'), 'reference_s': stat('reference'),
        'ours_cpu_s': stat('ours', key='cpu'), 'reference_cpu_s': stat('reference', key='cpu'),
        'ours_range_s': [stat('ours', min), stat('ours', max)],
        'reference_range_s': [stat('reference', min), stat('reference', max)],
        'mean_ours': rounds['ours'][-1]['value'], 'mean_reference': rounds['reference'][-1]['value'],
        'max_abs_diff': max(abs(o['value'] - f['value']) for o, f in zip(rounds['ours'], rounds['reference'])),
        'others_cpu_s': sum(t['others_cpu'] for ts in rounds.values() for t in ts),
        'measured_wall_s': sum(t['wall'] for ts in rounds.values() for t in ts),
        'contended_rounds': {name: [i + 1 for i, t in enumerate(ts) if t['others_cpu'] > 0.1 * cores * t['wall']]
                             for name, ts in rounds.items()},
        'rounds': rounds,
    }
    result['speedup'] = result['reference_s'] / result['ours_s']
    result['goal'] = {'ours_s_at_most': GOAL_S, 'speedup_at_least': GOAL_RATIO, 'diff_at_most': GOAL_DIFF,
                      'met': result['ours_s'] <= GOAL_S and result['speedup'] >= GOAL_RATIO
                      and result['max_abs_diff'] <= GOAL_DIFF}
    write(args.out, 'svcca_speed', result, report(result))
    return 0


def report(r: dict[str, Any]) -> str:
    m, s = r['machine'], r['setup']

    def row(label: str, key: str) -> str:
        low, high = r[f'{key}_range_s']
        return (f"| {label} | {r[f'{key}_s']:.3f} | {low:.3f}-{high:.3f} | {r[f'{key}_cpu_s']:.3f} "
                f"| {r[f'mean_{key}']:.10f} |")

    return f"""# SVCCA speed: ours (torch.linalg) vs google/svcca's numpy procedure

Regenerate: `.venv/bin/python benchmarks/measurements/svcca_speed.py`
Machine: {m['cpu']} ({m['cores']} cores, torch threads {m['torch_threads']}), {m['device']}; torch {m['torch']},
numpy {m['numpy']}; {m['date']}. Load average (1/5/15 min) before {r['loadavg_before']}, after {r['loadavg_after']}.
Two layers of {s['neurons']} neurons x {s['datapoints']:,} datapoints, keep k={s['keep']} SVD directions each,
float64, ours on `{s['ours_device']}`; {s['measured_rounds']} measured rounds, interleaved (first round: warm-up).

| | median wall-clock (s) | range (s) | median process CPU (s) | mean canonical correlation |
|---|---|---|---|---|
{row('ours (`algorithms.analysis.svcca`)', 'ours')}
{row('reference (`benchmarks/measurements/svcca_reference.py`)', 'reference')}

- Ours is **{r['speedup']:.1f}x** faster ({r['ours_s']:.3f} s vs {r['reference_s']:.3f} s); the similarities differ by
  {r['max_abs_diff']:.1e}. Goal: ours <= {r['goal']['ours_s_at_most']} s, >= {r['goal']['speedup_at_least']:.0f}x,
  difference <= {r['goal']['diff_at_most']:.0e}: **{'met' if r['goal']['met'] else 'not met'}**.
- Other processes: {r['others_cpu_s']:.1f} CPU-s during the {r['measured_wall_s']:.1f} s of measured rounds
  ({100 * r['others_cpu_s'] / (r['measured_wall_s'] * m['cores']):.0f}% of the {m['cores']} cores, from `/proc/stat`);
  measured rounds in which they took over 10% of the cores: ours {r['contended_rounds']['ours'] or 'none'},
  reference {r['contended_rounds']['reference'] or 'none'}. Medians are robust to a few such rounds; the range is not.
- Where the time goes: the reference takes a thin SVD of each {s['neurons']} x {s['datapoints']:,} matrix
  (`np.linalg.svd`, {r['machine']['numpy_blas']}); ours eigen-decomposes each {s['neurons']} x {s['neurons']} Gram
  matrix and projects on the kept {s['keep']} directions (matrix products over the datapoints, torch's MKL), then
  runs cca_core's CCA on {s['keep']} x {s['keep']} blocks. Both libraries use their default thread counts.
"""


if __name__ == '__main__':
    sys.exit(main())
