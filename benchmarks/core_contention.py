"""How much one CPU task slows down when another runs beside it on this machine: the ceiling on the efficiency of
any 2-worker schedule here, measured without Dask.

    .venv/bin/python -m benchmarks.core_contention --seconds 20 --repeats 3 --out benchmarks/results/core_contention.md

The workload is a ResNet-8 training step on random 28x28 images (batch 128, one thread), the shape of a blockwise
task's compute. Phases alternate: one process alone, then two at once (each pinned to one thread), ``repeats`` times;
the report gives each phase's steps per second per process and the ratio (alone / side by side), i.e. the task
slowdown a second worker causes by sharing caches, memory bandwidth and the host's cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Optional


def _worker(seconds: float, start_at: float, queue: 'mp.Queue') -> None:
    import torch

    from recipes.architectures.cifar_resnet import resnet8

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = resnet8(in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    for _ in range(3):  # warm-up
        torch.nn.functional.cross_entropy(model(x), y).backward()
    while time.time() < start_at:
        time.sleep(0.01)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        steps += 1
    queue.put(steps / (time.perf_counter() - t0))


def phase(n: int, seconds: float) -> list[float]:
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    start_at = time.time() + 8.0  # after both processes have imported torch and warmed up
    procs = [ctx.Process(target=_worker, args=(seconds, start_at, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return rates


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog='python -m benchmarks.core_contention', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seconds', type=float, default=20.0)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--out')
    args = p.parse_args(argv)
    from benchmarks.machine import machine_info

    alone, side = [], []
    for _ in range(args.repeats):
        alone += phase(1, args.seconds)
        side += phase(2, args.seconds)
    ratio = statistics.mean(alone) / statistics.mean(side)
    info = machine_info()
    lines = ['# One task alone vs two side by side on this CPU', '',
             f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, {info['date']}. Command: "
             f"`python -m benchmarks.core_contention --seconds {args.seconds:g} --repeats {args.repeats}`.", '',
             'ResNet-8 training steps (batch 128, 28x28, one thread per process), phases alternated.', '',
             '| phase | steps/s per process (each phase) | mean |', '|---|---|---:|',
             f"| alone | {', '.join(f'{r:.2f}' for r in alone)} | {statistics.mean(alone):.2f} |",
             f"| two side by side | {', '.join(f'{r:.2f}' for r in side)} | {statistics.mean(side):.2f} |", '',
             f'Slowdown of a task when a second one runs beside it: **{ratio:.2f}x**, so no 2-worker schedule can '
             f'exceed an efficiency of about {1 / ratio:.2f} on this machine for this kind of work.', '']
    text = '\n'.join(lines) + '\n```json\n' + json.dumps({'alone': alone, 'side_by_side': side, 'ratio': ratio,
                                                       'machine': info}, indent=1) + '\n```\n'
    sys.stdout.write(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
