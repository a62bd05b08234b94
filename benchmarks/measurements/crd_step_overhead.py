"""What a CRD step costs next to a plain KD step: the seed's chapter-III setting (resnet32x4 student and teacher,
CIFAR-100 shapes, batch 64, CRD over N = 50,000 samples with 16,384 negatives), timed side by side in one process.

    python -m benchmarks.measurements.crd_step_overhead --out benchmarks/results/crd_step_overhead_h100.md     # on a GPU

Four training steps of the student (forward, backward, SGD step) on the same device-resident batches: ``ce`` (the task
loss alone), ``kd`` (+ the teacher's forward and KL KD, T=4), ``crd_kd`` (+ CRD: both embeddings, negatives drawn on
a CPU generator and moved to the device, the two bank lookups ``[B, K+1, 128]``, the NCE loss, the banks' momentum
update) and ``crd_kd_device_sampler`` (negatives drawn on the device, as the CRD term now does: this benchmark showed
the CPU draw costing up to half the step). The arithmetic is the library's own, loaded by path so that the script runs
without Composer (the terms' Composer-side cost is not in it). Rounds of ``--steps`` steps of each interleave after a
warm-up round; the report gives the median per-step time over rounds and the ratios.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from benchmarks.core.markdown import table
from benchmarks.measurements.timing import command, device_name, emit, interleave, load, markdown, medians, ratios, script

KINDS = ('ce', 'kd', 'crd_kd', 'crd_kd_device_sampler')


def build(args: argparse.Namespace, device: torch.device) -> Callable[[str], None]:
    """``block(kind)``: ``--steps`` training steps of that kind, then a wait for the device; all kinds share one
    student, teacher and pool of batches."""
    resnets = load('recipes/models/architectures/cifar_resnet.py')
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
    cpu_sampler, device_sampler = torch.Generator().manual_seed(1), torch.Generator(device=device).manual_seed(1)
    k = min(args.nce_k, args.num_data - 1)

    def block(kind: str) -> None:
        for i in range(args.steps):
            x, y, idx = pool[i % len(pool)]
            logits = student(x)
            loss = F.cross_entropy(logits, y)
            if kind != 'ce':
                with torch.no_grad():
                    t_logits = teacher(x)
                loss = loss + kd_losses.kl_divergence_loss(logits, t_logits, temperature=4.0)
            if kind.startswith('crd_kd'):
                v_s, v_t = embed_s(feats['s']), embed_t(feats['t'].detach())
                if kind == 'crd_kd':  # negatives drawn on the CPU, as the term did, then moved
                    neg = torch.randint(0, args.num_data, (idx.shape[0], k), generator=cpu_sampler)
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
        if device.type == 'cuda':
            torch.cuda.synchronize()

    return block


def main(argv: Optional[list[str]] = None) -> int:
    p = script('crd_step_overhead', __doc__)
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
    block = build(args, device)
    blocks = interleave({kind: functools.partial(block, kind) for kind in KINDS}, args.rounds)
    times = {kind: [t / args.steps for t in ts] for kind, ts in blocks.items()}
    med = medians(times)
    vs_ce, vs_kd = ratios(med, 'ce'), ratios(med, 'kd')
    rows = [[kind, f'{1000 * m:.2f}', ', '.join(f'{1000 * t:.2f}' for t in times[kind]), f'{vs_ce[kind]:.2f}x',
             f'{vs_kd[kind]:.2f}x'] for kind, m in med.items()]
    lines = [
        '# CRD step vs KD step', '',
        f'Device: {device_name()}; torch {torch.__version__}; fp32; {args.arch} student and teacher, batch '
        f'{args.batch}, N = {args.num_data:,}, K = {min(args.nce_k, args.num_data - 1):,} negatives, 128-d '
        f'embeddings; {args.rounds} interleaved rounds of {args.steps} steps each; median per-step time.', '',
        f"Command: `{command('crd_step_overhead', args, 'arch', 'batch', 'num_data', 'nce_k', 'steps', 'rounds')}`",
        '', *table(['step', 'ms per step (median)', 'all rounds, ms', 'vs CE', 'vs KD'], rows)]
    emit(markdown(lines), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
