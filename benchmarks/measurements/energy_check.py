"""Check the energy sampler on real hardware: idle, then a bf16 matrix-product load, each under its own sampler.

    python -m benchmarks.measurements.energy_check --seconds 10 --out benchmarks/results/energy_check_h100.md   # on a GPU

Prints and writes the sampler's summaries (GPU energy from NVML's counter, CPU package energy from RAPL where
readable, CPU utilisation), and the GPU energy against the power NVML reports, so that the counter's joules can be
compared with watts times seconds. Runs without Composer (loads ``algorithms/profiling/energy.py`` by path).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

import torch

from benchmarks.core.markdown import table
from benchmarks.measurements.timing import command, device_name, emit, load, markdown, script


def measured(summary: dict[str, Any], text: str) -> str:
    """``text`` formatted with one source of a sampler's summary, or why that source is unavailable."""
    return text.format(**summary) if summary.get('available') else f"unavailable: {summary['reason']}"


def phase(energy: Any, seconds: float, work: bool) -> dict[str, Any]:
    sampler = energy.EnergySampler(energy.default_sources(), interval=1.0).start()
    end = time.monotonic() + seconds
    products = 0
    if work and torch.cuda.is_available():
        a = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16)
        while time.monotonic() < end:
            for _ in range(20):
                a @ a
            torch.cuda.synchronize()
            products += 20
    else:
        time.sleep(seconds)
    summary = sampler.stop()
    summary['matrix_products'] = products
    summary['tflops'] = products * 2 * 8192 ** 3 / summary['seconds'] / 1e12 if products else 0.0
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    p = script('energy_check', __doc__)
    p.add_argument('--seconds', type=float, default=10.0)
    p.add_argument('--out')
    args = p.parse_args(argv)
    energy = load('algorithms/profiling/energy.py')
    result = {'device': device_name(), 'torch': torch.__version__, 'idle': phase(energy, args.seconds, False),
              'load': phase(energy, args.seconds, True)}
    rows = [[name, f"{s['seconds']:.1f}", measured(s['gpu'], '{joules:.0f} ({mean_watts:.0f} W)'),
             measured(s['cpu_package'], '{joules:.0f}'), measured(s['cpu_util'], '{mean_percent:.1f}'),
             f"{s['tflops']:.0f}"] for name, s in (('idle', result['idle']), ('load', result['load']))]
    lines = ['# Energy sampler on real hardware', '', f"Device: {result['device']}; torch {torch.__version__}; "
             f"command: `{command('energy_check', args, 'seconds')}`.", '',
             *table(['phase', 'seconds', 'GPU J (mean W)', 'CPU package J', 'CPU util %', 'bf16 TFLOP/s'], rows)]
    emit(markdown(lines, result), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
