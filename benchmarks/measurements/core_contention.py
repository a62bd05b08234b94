"""How much one CPU task slows down when another runs beside it on this machine: the ceiling on the efficiency of
any 2-worker schedule here, measured without Dask.

    .venv/bin/python -m benchmarks.measurements.core_contention --seconds 20 --repeats 3 --out benchmarks/results/core_contention.md

The workload is a blockwise task's step (``--workload block``: ResNet-8 prefix forward to layer1.0 and a ds2 block's
training step on random batches drawn from a 15,000-image tensor) or a whole ResNet-8 training step (``step``),
batch 128, one thread. Phases alternate: one process alone, then two at once (each pinned to one thread),
``repeats`` times; the report gives each phase's steps per second per process and the ratio (alone / side by side),
i.e. the task slowdown a second worker causes by sharing caches, memory bandwidth and the host's cores.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import time
from typing import Optional

from benchmarks.core.machine import machine_info
from benchmarks.measurements.timing import command, emit, markdown, script


def _worker(seconds: float, start_at: float, queue: 'mp.Queue', workload: str = 'step') -> None:
    """Steps per second of one single-threaded process running the workload from ``start_at`` for ``seconds``."""
    import torch

    from algorithms.blockwise import build_block, local_loss, run_until
    from recipes.models.architectures.cifar_resnet import resnet8

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = resnet8(in_channels=1)
    data, labels = torch.randn(15000, 1, 28, 28), torch.randint(0, 10, (15000,))
    block = build_block('ds2', model.layer1[0].conv2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01) if workload == 'step' else \
        torch.optim.RMSprop(block.parameters(), lr=2e-3)
    model.train(workload == 'step')

    def step() -> None:
        idx = torch.randint(0, len(data), (128,))
        if workload == 'step':  # a plain training step of the whole model
            loss = torch.nn.functional.cross_entropy(model(data[idx]), labels[idx])
        else:  # a block task's step: the prefix forward, then the block's
            with torch.no_grad():
                inputs, target = run_until(model, 'layer1.0.conv2', 'layer1.0.bn2', data[idx])
            loss = local_loss(block(inputs), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

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
    """Steps per second of each of ``n`` processes running the workload at once."""
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
    p = script('core_contention', __doc__)
    p.add_argument('--seconds', type=float, default=20.0)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--workload', choices=('step', 'block'), default='block',
                   help="'block': a block task's step (prefix forward + block training on random batches of a "
                        "15,000-image tensor); 'step': a whole-model training step")
    p.add_argument('--out')
    args = p.parse_args(argv)
    alone, side = [], []
    for _ in range(args.repeats):
        alone += phase(1, args.seconds, args.workload)
        side += phase(2, args.seconds, args.workload)
    ratio = statistics.mean(alone) / statistics.mean(side)
    info = machine_info()
    lines = ['# One task alone vs two side by side on this CPU', '',
             f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, {info['date']}. Command: "
             f"`{command('core_contention', args, 'workload', 'seconds', 'repeats')}`.", '',
             f"Workload `{args.workload}` (ResNet-8, batch 128, 28x28, one thread per process; 'block' = a block "
             "task's step: prefix forward to layer1.0 + ds2 block training), phases alternated.", '',
             '| phase | steps/s per process (each phase) | mean |', '|---|---|---:|',
             *(f"| {name} | {', '.join(f'{r:.2f}' for r in rates)} | {statistics.mean(rates):.2f} |"
               for name, rates in (('alone', alone), ('two side by side', side))), '',
             f'Slowdown of a task when a second one runs beside it: **{ratio:.2f}x**, so no 2-worker schedule can '
             f'exceed an efficiency of about {1 / ratio:.2f} on this machine for this kind of work.']
    emit(markdown(lines, {'alone': alone, 'side_by_side': side, 'ratio': ratio, 'machine': info}), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
