"""One parallel-blockwise task on a GPU, under the energy sampler: VGG-16 (CIFAR shape, 3x32x32) as the teacher,
the block of one of its 3x3 convs trained on the teacher prefix only, with spliced checks.

    python -m benchmarks.measurements.blockwise_gpu_check --layer features.10 --epochs 3 \
        --out benchmarks/results/blockwise_gpu_h100.md

The teacher has random weights and the images are Gaussian, labelled by the teacher itself (so it scores 100% and a
check measures how much of its function the block keeps); the point is the task's cost on the card: local-training
throughput, the prefix's share of the teacher's parameters, peak GPU memory of the prefix task against a forward
and backward pass of the whole teacher, and the energy NVML counts. Runs without Composer (the GPU image has none):
the distillation package's ``__init__`` (which imports Composer) is bypassed.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import torch

from benchmarks.measurements.energy_check import measured
from benchmarks.core.markdown import table
from benchmarks.measurements.timing import bare_package, command, device_name, emit, load, markdown, script


def synthetic(teacher: torch.nn.Module, n: int, batch: int, device: torch.device, seed: int = 0):
    g = torch.Generator(device='cpu').manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g).to(device)
    with torch.no_grad():
        y = torch.cat([teacher(x[i:i + 1000]).argmax(1) for i in range(0, n, 1000)])
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def step_memory(step: Any, device: torch.device) -> Optional[float]:
    """Peak GPU memory (MiB) one training step adds to what is already allocated (None on CPU)."""
    if device.type != 'cuda':
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2 ** 20


def data_factory(train: list, val: list) -> tuple[list, list]:
    return train, val


def main(argv: Optional[list[str]] = None) -> int:
    p = script('blockwise_gpu_check', __doc__)
    p.add_argument('--layer', default='features.10')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--train', type=int, default=50000)
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--val', type=int, default=5000)
    p.add_argument('--out')
    args = p.parse_args(argv)
    bare_package('algorithms.distillation')
    from algorithms import blockwise as bw

    vgg = load('recipes/models/architectures/vgg.py')
    energy = load('algorithms/profiling/energy.py')
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    cuda = device.type == 'cuda'
    torch.manual_seed(0)
    teacher = vgg.vgg16().to(device).eval()
    layer = bw.find_replaceable(teacher, (3, 32, 32), names=[args.layer])[0]
    train = synthetic(teacher, args.train, args.batch, device)
    val = synthetic(teacher, args.val, 1000, device, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / 'teacher.pt'
        torch.save(teacher.state_dict(), ckpt)
        full_params = sum(p.numel() for p in teacher.parameters())
        full_peak = step_memory(lambda: teacher.train()(train[0][0]).sum().backward(), device)
        teacher.cpu()  # off the GPU: the task builds its own prefix
        if cuda:
            torch.cuda.empty_cache()
        settings = bw.LocalTrainingSettings(epochs=args.epochs, check_every=1)
        task = bw.BlockTask(layer=layer, block='ds2', settings=settings, build_teacher=vgg.vgg16, checkpoint=str(ckpt),
                            input_shape=(3, 32, 32), data=functools.partial(data_factory, train, val), out_dir=tmp,
                            reference=100.0, device=str(device))
        sampler = energy.EnergySampler(energy.default_sources(), interval=1.0).start()
        start = time.perf_counter()
        summary = bw.run_block_task(task)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        power = sampler.stop()
        prefix = bw.TeacherPrefix(vgg.vgg16, layer, ckpt, (3, 32, 32), device)
        block = bw.build_block('ds2', prefix.teacher.get_submodule(layer.conv))
        task_peak = step_memory(lambda: bw.local_loss(block(prefix(train[0][0])[0]), prefix(train[0][0])[1])
                                .backward(), device)
    result = {'device': device_name(), 'torch': torch.__version__,
              'layer': args.layer, 'in_shape': layer.in_shape, 'out_shape': layer.out_shape, 'epochs': args.epochs,
              'train_images': args.train, 'task_seconds': seconds,
              'images_per_s': args.epochs * args.train / summary['seconds'],
              'prefix_params': summary['prefix_params'], 'teacher_params': full_params,
              **{k: summary[k] for k in ('layer_macs', 'block_macs', 'checks', 'accepted')},
              'step_memory_prefix_and_block_MiB': task_peak, 'step_memory_full_teacher_MiB': full_peak,
              'energy': power}
    rows = [
        [f"task wall-clock (prefix build, {args.epochs} epochs of {args.train:,} images, {len(summary['checks'])} "
         'checks)', f'{seconds:.1f} s'],
        ['local training + checks throughput', f"{result['images_per_s']:,.0f} images/s"],
        ['prefix parameters / teacher parameters', f"{summary['prefix_params']:,} / {full_params:,} "
         f"({100 * summary['prefix_params'] / full_params:.1f}%)"],
        [f'GPU memory one step adds (batch {args.batch}): prefix + block / whole teacher (weights, activations, '
         'gradients)', f"{task_peak or float('nan'):.0f} / {full_peak or float('nan'):.0f} MiB"],
        ['GPU energy over the task', measured(power['gpu'], '{joules:.0f} J, mean {mean_watts:.0f} W ({method})')],
        ['CPU package energy', measured(power['cpu_package'], '{joules:.0f} J')],
        ['spliced checks (epoch, accuracy %)', summary['checks']]]
    lines = ['# One blockwise task on a GPU', '',
             f"Device: {result['device']}; torch {torch.__version__}; command: "
             f"`{command('blockwise_gpu_check', args, 'layer', 'epochs')}`.", '',
             f"VGG-16 (random weights, 3x32x32), layer `{args.layer}` {tuple(layer.in_shape)} -> "
             f"{tuple(layer.out_shape)}, block ds2: {summary['block_macs']:,} MACs vs the conv's "
             f"{summary['layer_macs']:,} per image.", '', *table(['measure', 'value'], rows)]
    emit(markdown(lines, result), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
