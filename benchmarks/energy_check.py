"""Check the energy sampler on real hardware: idle, then a bf16 matrix-product load, each under its own sampler.

    python -m benchmarks.energy_check --seconds 10 --out benchmarks/results/energy_check_h100.md   # on a GPU

Prints and writes the sampler's summaries (GPU energy from NVML's counter, CPU package energy from RAPL where
readable, CPU utilisation), and the GPU energy against the power NVML reports, so that the counter's joules can be
compared with watts times seconds. Runs without Composer (loads ``algorithms/profiling/energy.py`` by path).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Optional

import torch

from benchmarks.standalone import emit, load


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
    p = argparse.ArgumentParser(prog='python -m benchmarks.energy_check', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seconds', type=float, default=10.0)
    p.add_argument('--out')
    args = p.parse_args(argv)
    energy = load('algorithms/profiling/energy.py')
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only'
    result = {'device': device, 'torch': torch.__version__, 'idle': phase(energy, args.seconds, False),
              'load': phase(energy, args.seconds, True)}
    lines = ['# Energy sampler on real hardware', '', f'Device: {device}; torch {torch.__version__}; command: '
             f'`python -m benchmarks.energy_check --seconds {args.seconds:g}`.', '',
             '| phase | seconds | GPU J (mean W) | CPU package J | CPU util % | bf16 TFLOP/s |', '|---|---|---|---|---|---|']
    for name in ('idle', 'load'):
        s = result[name]
        gpu = s['gpu']
        gpu_text = f"{gpu['joules']:.0f} ({gpu['mean_watts']:.0f} W)" if gpu.get('available') else \
            f"unavailable: {gpu['reason']}"
        cpu = s['cpu_package']
        cpu_text = f"{cpu['joules']:.0f}" if cpu.get('available') else f"unavailable: {cpu['reason']}"
        util = s['cpu_util']
        util_text = f"{util['mean_percent']:.1f}" if util.get('available') else 'unavailable'
        lines.append(f"| {name} | {s['seconds']:.1f} | {gpu_text} | {cpu_text} | {util_text} | {s['tflops']:.0f} |")
    text = '\n'.join(lines) + '\n\n```json\n' + json.dumps(result, indent=1, default=str) + '\n```\n'
    emit(text, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
