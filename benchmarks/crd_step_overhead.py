"""What a CRD step costs next to a plain KD step: the seed's chapter-III setting (resnet32x4 student and teacher,
CIFAR-100 shapes, batch 64, CRD over N = 50,000 samples with 16,384 negatives), timed side by side in one process.

    python -m benchmarks.crd_step_overhead --out benchmarks/results/crd_step_overhead_h100.md     # on a GPU

Four training steps, each forward + backward + SGD step of the student on the same device-resident batches:
``ce`` (the task loss alone), ``kd`` (+ the teacher's forward and KL KD, T=4), ``crd_kd`` (+ CRD: both embeddings,
the negatives drawn on a CPU generator and moved to the device, the two bank lookups ``[B, K+1, 128]``, the NCE
loss and the momentum update of the banks) and ``crd_kd_device_sampler`` (the same with the negatives drawn on the
device, as the CRD term draws them since this benchmark showed the CPU draw costing up to half the step). The arithmetic is the library's own (``crd_memory.py``, the losses
modules, the project's resnet32x4), loaded by path so that the script runs on an image without Composer; the
Composer-side cost of the terms (taps, loss dict) is not in it. Rounds interleave the three steps; the report gives
the median per-step time over rounds and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from benchmarks.standalone import emit, load

def build(args: argparse.Namespace, device: torch.device) -> dict[str, Callable[[int], None]]:
    """The three step functions, sharing one student, teacher and batch pool."""
    resnets = load('recipes/architectures/cifar_resnet.py')
    memory_mod = load('algorithms/feature_distillation/crd_memory.py')
    feature_losses = load('algorithms/feature_distillation/losses.py')
    kd_losses = load('algorithms/distillation/losses.py')
    torch.manual_seed(0)
    arch = getattr(resnets, args.arch)
    student, teacher = arch(num_classes=100).to(device), arch(num_classes=100).to(device).eval()
    feats: dict[str, torch.Tensor] = {}
    student.avgpool.register_forward_hook(lambda m, i, o: feats.__setitem__('s', o))
    teacher.avgpool.register_forward_hook(lambda m, i, o: feats.__setitem__('t', o))
    dim = student.fc.in_features
    embed_s, embed_t = memory_mod.Embed(dim, 128).to(device), memory_mod.Embed(dim, 128).to(device)
    memory = memory_mod.ContrastMemory(128, args.num_data, 0.07, 0.5).to(device)
    params = list(student.parameters()) + list(embed_s.parameters()) + list(embed_t.parameters())
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    pool = [(torch.randn(args.batch, 3, 32, 32, generator=g).to(device),
             torch.randint(0, 100, (args.batch,), generator=g).to(device),
             torch.randint(0, args.num_data, (args.batch,), generator=g).to(device)) for _ in range(4)]
    sampler = torch.Generator().manual_seed(1)
    device_sampler = torch.Generator(device=device).manual_seed(1)
    k = min(args.nce_k, args.num_data - 1)

    def step(kind: str) -> Callable[[int], None]:
        def run(i: int) -> None:
            x, y, idx = pool[i % len(pool)]
            logits = student(x)
            loss = F.cross_entropy(logits, y)
            if kind != 'ce':
                with torch.no_grad():
                    t_logits = teacher(x)
                loss = loss + kd_losses.kl_divergence_loss(logits, t_logits, temperature=4.0)
            if kind.startswith('crd_kd'):
                v_s, v_t = embed_s(feats['s']), embed_t(feats['t'].detach())
                if kind == 'crd_kd':  # negatives drawn on the CPU, as the term does, then moved
                    neg = torch.randint(0, args.num_data, (idx.shape[0], k), generator=sampler)
                    contrast_idx = torch.cat([idx.cpu().unsqueeze(1), neg], dim=1).to(device)
                else:  # drawn where the banks are
                    neg = torch.randint(0, args.num_data, (idx.shape[0], k), generator=device_sampler, device=device)
                    contrast_idx = torch.cat([idx.unsqueeze(1), neg], dim=1)
                out_s, out_t = memory(v_s, v_t, idx, contrast_idx)
                loss = loss + 0.8 * (feature_losses.contrast_loss(out_s, args.num_data) +
                                     feature_losses.contrast_loss(out_t, args.num_data))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    return {kind: step(kind) for kind in ('ce', 'kd', 'crd_kd', 'crd_kd_device_sampler')}


def measure(steps: dict[str, Callable[[int], None]], n: int, rounds: int, device: torch.device) -> dict[str, list[float]]:
    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize()

    for fn in steps.values():  # warm-up (cuDNN autotuning, allocator)
        for i in range(3):
            fn(i)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for kind, fn in steps.items():
            sync()
            start = time.perf_counter()
            for i in range(n):
                fn(i)
            sync()
            times[kind].append((time.perf_counter() - start) / n)
    return times


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog='python -m benchmarks.crd_step_overhead', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--arch', default='resnet32x4')
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--num-data', type=int, default=50_000)
    p.add_argument('--nce-k', type=int, default=16_384)
    p.add_argument('--steps', type=int, default=50, help='steps per timed block')
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--out', help='markdown file to write')
    args = p.parse_args(argv)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    torch.backends.cudnn.benchmark = True
    times = measure(build(args, device), args.steps, args.rounds, device)
    med = {k: statistics.median(v) for k, v in times.items()}
    name = torch.cuda.get_device_name(0) if device.type == 'cuda' else 'CPU'
    lines = [
        '# CRD step vs KD step', '',
        f'Device: {name}; torch {torch.__version__}; fp32; {args.arch} student and teacher, batch {args.batch}, '
        f'N = {args.num_data:,}, K = {min(args.nce_k, args.num_data - 1):,} negatives, 128-d embeddings; '
        f'{args.rounds} interleaved rounds of {args.steps} steps each; median per-step time.', '',
        f'Command: `python -m benchmarks.crd_step_overhead --arch {args.arch} --batch {args.batch} '
        f'--num-data {args.num_data} --nce-k {args.nce_k} --steps {args.steps} --rounds {args.rounds}`', '',
        '| step | ms per step (median) | all rounds, ms | vs CE | vs KD |', '|---|---|---|---|---|']
    for kind, m in med.items():
        lines.append(f"| {kind} | {1000 * m:.2f} | {', '.join(f'{1000 * t:.2f}' for t in times[kind])} | "
                     f"{m / med['ce']:.2f}x | {m / med['kd']:.2f}x |")
    text = '\n'.join(lines) + '\n'
    emit(text, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
