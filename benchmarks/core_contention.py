"""How much one CPU task slows down when another runs beside it on this machine: the ceiling on the efficiency of
any 2-worker schedule here, measured without Dask.

    .venv/bin/python -m benchmarks.core_contention --seconds 20 --repeats 3 --out benchmarks/results/core_contention.md

The workload is a blockwise task's step (``--workload block``: ResNet-8 prefix forward to layer1.0 and a ds2 block's
training step on random batches drawn from a 15,000-image tensor) or a whole ResNet-8 training step (``step``),
batch 128, one thread. Phases alternate: one process alone, then two at once (each pinned to one thread), ``repeats`` times;
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
from typing import Optional

from benchmarks.standalone import emit


def _worker(seconds: float, start_at: float, queue: 'mp.Queue', workload: str = 'step') -> None:
    import torch

    from algorithms.blockwise import build_block, local_loss, run_until
    from recipes.architectures.cifar_resnet import resnet8

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = resnet8(in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    data, labels = torch.randn(15000, 1, 28, 28), torch.randint(0, 10, (15000,))
    block = build_block('ds2', model.layer1[0].conv2)
    block_opt = torch.optim.RMSprop(block.parameters(), lr=2e-3)
    model.eval()

    def step() -> None:
        idx = torch.randint(0, len(data), (128,))
        x, y = data[idx], labels[idx]
        if workload == 'step':  # a plain training step of the whole model
            model.train()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            return
        with torch.no_grad():  # a block task's step: the prefix forward, then the block's
            inputs, target = run_until(model, 'layer1.0.conv2', 'layer1.0.bn2', x)
        block_opt.zero_grad()
        local_loss(block(inputs), target).backward()
        block_opt.step()

    for _ in range(3):  # warm-up
        step()
    while time.time() < start_at:
        time.sleep(0.01)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        steps += 1
    queue.put(steps / (time.perf_counter() - t0))


def phase(n: int, seconds: float, workload: str = 'step') -> list[float]:
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    start_at = time.time() + 15.0  # after both processes have imported torch and warmed up
    procs = [ctx.Process(target=_worker, args=(seconds, start_at, queue, workload)) for _ in range(n)]
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
    p.add_argument('--workload', choices=('step', 'block'), default='block',
                   help="'block': a block task's step (prefix forward + block training on random batches of a "
                        "15,000-image tensor); 'step': a whole-model training step")
    p.add_argument('--out')
    args = p.parse_args(argv)
    from benchmarks.machine import machine_info

    alone, side = [], []
    for _ in range(args.repeats):
        alone += phase(1, args.seconds, args.workload)
        side += phase(2, args.seconds, args.workload)
    ratio = statistics.mean(alone) / statistics.mean(side)
    info = machine_info()
    lines = ['# One task alone vs two side by side on this CPU', '',
             f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, {info['date']}. Command: "
             f"`python -m benchmarks.core_contention --workload {args.workload} --seconds {args.seconds:g} "
             f"--repeats {args.repeats}`.", '',
             f"Workload `{args.workload}` (ResNet-8, batch 128, 28x28, one thread per process; 'block' = a block "
             "task's step: prefix forward to layer1.0 + ds2 block training), phases alternated.", '',
             '| phase | steps/s per process (each phase) | mean |', '|---|---|---:|',
             f"| alone | {', '.join(f'{r:.2f}' for r in alone)} | {statistics.mean(alone):.2f} |",
             f"| two side by side | {', '.join(f'{r:.2f}' for r in side)} | {statistics.mean(side):.2f} |", '',
             f'Slowdown of a task when a second one runs beside it: **{ratio:.2f}x**, so no 2-worker schedule can '
             f'exceed an efficiency of about {1 / ratio:.2f} on this machine for this kind of work.', '']
    text = '\n'.join(lines) + '\n```json\n' + json.dumps({'alone': alone, 'side_by_side': side, 'ratio': ratio,
                                                       'machine': info}, indent=1) + '\n```\n'
    emit(text, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
