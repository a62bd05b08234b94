"""The pruning study's report, built only from its small records (``analysis.json``, manifests, run records).

    python -m benchmarks.pruning_report runs/pruning-study --out benchmarks/results/pruning_fashion_mnist

Writes ``report.md`` (tables with 95% intervals over seeds, findings with verdicts by those intervals), PNG plots,
and copies the records under ``<out>/runs`` so that the committed report regenerates from them:
``python -m benchmarks.pruning_report benchmarks/results/pruning_fashion_mnist/runs --out benchmarks/results/pruning_fashion_mnist``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

from benchmarks.intervals import RULE, Interval, mean_interval, verdict
from benchmarks.pruning_study import ANALYSIS_FILE
from benchmarks.records import SMALL_FILES

METHODS = ('magnitude', 'iterative', 'reinit', 'random')
NAMES = {'magnitude': 'Magnitude (prune + fine-tune)', 'iterative': 'Iterative magnitude',
         'reinit': 'Re-init (masks kept, from scratch)', 'random': 'Random sparse init (from scratch)'}


def load(root: Path) -> dict[str, list[dict[str, Any]]]:
    """``{pipeline: [analysis of each seed]}`` for every ``<root>/<pipeline>/seed<k>/analysis.json``."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(root.glob(f'*/seed*/{ANALYSIS_FILE}')):
        data = json.loads(path.read_text())
        data['seed'] = path.parent.name
        out[path.parent.parent.name].append(data)
    return dict(out)


def copy_records(root: Path, dest: Path) -> None:
    if dest.exists() and root.resolve() == dest.resolve():
        return
    for name in (*SMALL_FILES, ANALYSIS_FILE):
        for path in root.rglob(name):
            if 'checkpoints' in path.parts:
                continue
            target = dest / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _cells(seeds: list[dict[str, Any]], value) -> dict[tuple[str, float], Interval]:
    """``{(method, sparsity): interval over seeds of value(stage)}``."""
    acc: dict[tuple[str, float], list[float]] = defaultdict(list)
    for analysis in seeds:
        for stage in analysis['stages']:
            v = value(stage)
            if v is not None:
                acc[(stage['method'], stage['sparsity'])].append(v)
    return {k: mean_interval(v) for k, v in acc.items()}


def _mean_sim(stage: dict[str, Any]) -> float:
    return statistics.fmean(stage['similarity'].values())


def _median_sim(stage: dict[str, Any]) -> float:
    return statistics.median(stage['similarity'].values())


def table(cells: dict[tuple[str, float], Interval], scale: float, digits: int, head: str) -> list[str]:
    sparsities = sorted({s for _, s in cells if s is not None})
    lines = [f'| {head} | ' + ' | '.join(f'{100 * s:.0f}%' for s in sparsities) + ' |',
             '|---|' + '---|' * len(sparsities)]
    for method in METHODS:
        if not any(m == method for m, _ in cells):
            continue
        row = [cells[(method, s)].fmt(digits, scale) if (method, s) in cells else '' for s in sparsities]
        lines.append(f'| {NAMES[method]} | ' + ' | '.join(row) + ' |')
    return lines


def _per_seed(seeds: list[dict[str, Any]], fn) -> Optional[Interval]:
    values = [v for v in (fn(a) for a in seeds) if v is not None]
    return mean_interval(values) if values else None


def findings(seeds: list[dict[str, Any]]) -> list[str]:
    """The seed's chapter II findings, each with the rule that decides it and the verdict of the intervals."""
    layers = seeds[0]['layers']
    out = []

    def sim_drop(a: dict[str, Any]) -> Optional[float]:
        mag = sorted((s for s in a['stages'] if s['method'] == 'magnitude'), key=lambda s: s['sparsity'])
        return _mean_sim(mag[0]) - _mean_sim(mag[-1]) if len(mag) >= 2 else None

    d = _per_seed(seeds, sim_drop)
    if d is not None:
        out.append(f'- **Similarity falls with sparsity** (magnitude pruning; mean SVCCA over layers at the lowest '
                   f'minus at the highest sparsity, > 0 claimed): {d.fmt(3)} -> **{verdict(d)}**.')
    for method in ('reinit', 'random'):
        def median_below_half(a: dict[str, Any], method=method) -> Optional[float]:
            sims = [v for s in a['stages'] if s['method'] == method for v in s['similarity'].values()]
            return 0.5 - statistics.median(sims) if sims else None
        d = _per_seed(seeds, median_below_half)
        if d is not None:
            median = Interval(0.5 - d.mean, None if d.hi is None else 0.5 - d.hi, None if d.lo is None else 0.5 - d.lo,
                              d.n)
            out.append(f'- **{NAMES[method]} shares < 50% median similarity with the original** (median over '
                       f'layers and sparsities): median {median.fmt(3)} -> **{verdict(d)}**.')

    def output_first(a: dict[str, Any]) -> Optional[float]:
        """Per re-init run: how much of its final similarity each layer has at the first retraining epoch
        (sim at the first epoch / sim at the last); the last layer's share minus the first layer's."""
        diffs = []
        for sparsity in sorted({e['sparsity'] for e in a['epochs'] if e['method'] == 'reinit'}):
            rows = sorted((e for e in a['epochs'] if e['method'] == 'reinit' and e['sparsity'] == sparsity),
                          key=lambda e: e['epoch'])
            first, last = rows[0]['similarity'], rows[-1]['similarity']
            share = {layer: first[layer] / last[layer] for layer in (layers[0], layers[-1]) if last[layer] > 0}
            if len(share) == 2:
                diffs.append(share[layers[-1]] - share[layers[0]])
        return statistics.fmean(diffs) if diffs else None

    d = _per_seed(seeds, output_first)
    if d is not None:
        out.append(f'- **Layers near the output re-converge first** (re-init from scratch: the share of its final '
                   f'similarity a layer has at the first retraining epoch, sim(first epoch) / sim(last epoch), of the '
                   f'last compared layer ({layers[-1]}) minus that of the first ({layers[0]}), mean over sparsities, '
                   f'> 0 claimed): {d.fmt(3)} -> **{verdict(d)}**.')

    def mag_vs_random(a: dict[str, Any]) -> Optional[float]:
        acc = {(s['method'], s['sparsity']): s['accuracy'] for s in a['stages']}
        pairs = [acc[('magnitude', sp)] - acc[('random', sp)] for (m, sp) in acc if m == 'magnitude'
                 and ('random', sp) in acc]
        return statistics.fmean(pairs) if pairs else None

    d = _per_seed(seeds, mag_vs_random)
    if d is not None:
        out.append(f'- **Magnitude pruning keeps accuracy better than random sparse training** (accuracy difference, '
                   f'mean over sparsities, points): {d.fmt(2, 100)} -> **{verdict(d)}**.')
    return out


def plots(name: str, seeds: list[dict[str, Any]], out: Path) -> list[str]:
    """PNG plots: accuracy vs sparsity (with intervals) and per-layer similarity heat-maps; returns markdown lines."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return ['(matplotlib is not installed: no plots)']
    from algorithms.analysis.plots import similarity_heatmap

    lines = []
    acc = _cells(seeds, lambda s: s['accuracy'])
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in METHODS:
        pts = sorted((s, iv) for (m, s), iv in acc.items() if m == method and s is not None)
        if not pts:
            continue
        xs = [100 * s for s, _ in pts]
        ys = [100 * iv.mean for _, iv in pts]
        err = [[100 * (iv.mean - iv.lo) if iv.lo is not None else 0 for _, iv in pts],
               [100 * (iv.hi - iv.mean) if iv.hi is not None else 0 for _, iv in pts]]
        ax.errorbar(xs, ys, yerr=err, marker='o', capsize=3, label=NAMES[method])
    orig = mean_interval([a['original_accuracy'] for a in seeds])
    ax.axhline(100 * orig.mean, color='grey', ls='--', label='original (dense)')
    ax.set_xlabel('sparsity (%)')
    ax.set_ylabel('test accuracy (%)')
    ax.set_title(f'{name}: accuracy vs sparsity (95% intervals over seeds)')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f'{name}_accuracy.png', dpi=110)
    plt.close(fig)
    lines.append(f'![accuracy vs sparsity]({name}_accuracy.png)')

    columns: dict[str, dict[str, float]] = {}
    for method in METHODS:
        for sparsity in sorted({s['sparsity'] for a in seeds for s in a['stages'] if s['method'] == method}):
            rows = [s['similarity'] for a in seeds for s in a['stages']
                    if s['method'] == method and s['sparsity'] == sparsity]
            columns[f'{method[:3]} {100 * sparsity:.0f}%'] = {
                layer: statistics.fmean(r[layer] for r in rows) for layer in seeds[0]['layers']}
    similarity_heatmap(columns, out / f'{name}_similarity.png', title=f'{name}: SVCCA to the original (mean of seeds)',
                       xlabel='method, sparsity')
    lines.append(f'![per-layer similarity]({name}_similarity.png)')
    for method in ('reinit', 'magnitude'):
        epochs = [e for a in seeds for e in a['epochs'] if e['method'] == method]
        if not epochs:
            continue
        sparsity = max(e['sparsity'] for e in epochs)
        cols: dict[str, dict[str, float]] = {}
        for epoch in sorted({e['epoch'] for e in epochs if e['sparsity'] == sparsity}):
            rows = [e['similarity'] for e in epochs if e['sparsity'] == sparsity and e['epoch'] == epoch]
            cols[f'ep {epoch}'] = {layer: statistics.fmean(r[layer] for r in rows) for layer in seeds[0]['layers']}
        png = f'{name}_{method}_epochs.png'
        similarity_heatmap(cols, out / png, title=f'{name}: {method} at {100 * sparsity:.0f}%, SVCCA over retraining',
                           xlabel='retraining epoch')
        lines.append(f'![{method} similarity over epochs]({png})')
    return lines


def section(name: str, seeds: list[dict[str, Any]], out: Path) -> list[str]:
    first = seeds[0]
    orig = mean_interval([a['original_accuracy'] for a in seeds])
    lines = [f'## {name} ({len(seeds)} seed{"s" if len(seeds) > 1 else ""}: '
             f'{", ".join(a["seed"] for a in seeds)})', '',
             f'Original (dense) test accuracy: {orig.fmt(2, 100)}%. Parameters {first["original"]["params"][0]:,}, '
             f'MACs per image {first["original"]["macs"][0]:,}.', '',
             '### Test accuracy (%) vs sparsity', '']
    lines += table(_cells(seeds, lambda s: s['accuracy']), 100, 2, 'method')
    lines += ['', '### Mean per-layer SVCCA similarity to the original', '',
              f'Layers: {", ".join(first["layers"])}; {first["images"]} test images, conv layers as '
              f'{first["similarity"]["conv_mode"]} (keep {first["similarity"]["keep"]} of the variance, at most '
              f'{first["similarity"]["max_datapoints"]} datapoints per layer).', '']
    lines += table(_cells(seeds, _mean_sim), 1, 3, 'method')
    lines += ['', '### Measured sparsity and cost (magnitude models, seed ' + first['seed'] + ')', '',
              '| sparsity | min / max layer sparsity | parameters dense / non-zero | MACs dense / effective |',
              '|---|---|---|---|']
    for s in sorted((s for s in first['stages'] if s['method'] == 'magnitude'), key=lambda s: s['sparsity']):
        ls = list(s['layer_sparsity'].values())
        lines.append(f"| {100 * s['sparsity']:.0f}% | {100 * min(ls):.2f}% / {100 * max(ls):.2f}% | "
                     f"{s['params'][0]:,} / {s['params'][1]:,} | {s['macs'][0]:,} / {s['macs'][1]:,} |")
    lat = first.get('latency')
    if lat:
        lines += ['', f"Forward pass of a batch of {lat['batch']} on this CPU, timed side by side: dense original "
                  f"{lat['dense_ms']:.1f} ms, {100 * lat['sparsity']:.0f}%-sparse masked model {lat['masked_ms']:.1f} "
                  'ms. Unstructured masks leave the dense kernels as they are: the zeros cost the same time unless '
                  'the model is exported to a sparse format (not done here).']
    lines += ['', '### Findings', '', *findings(seeds), '', *plots(name, seeds, out), '']
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog='python -m benchmarks.pruning_report', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('root', help='the study runs_root (or a committed copy of its records)')
    p.add_argument('--out', required=True)
    args = p.parse_args(argv)
    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    copy_records(root, out / 'runs')
    data = load(root)
    if not data:
        sys.stderr.write(f'error: no {ANALYSIS_FILE} under {root}\n')
        return 2
    machine = json.loads((root / 'machine.json').read_text()) if (root / 'machine.json').is_file() else {}
    sessions = machine.get('sessions', [])
    lines = ['# Pruning is not compression: the CPU-scale study', '',
             f'Regenerate: `python -m benchmarks.pruning_report {out}/runs --out {out}` (from the committed records); '
             f'rerun: `python -m benchmarks.pruning_study benchmarks/studies/pruning_fashion_mnist.yaml` then '
             f'`python -m benchmarks.pruning_report runs/pruning-study --out {out}`.', '',
             'Machine(s): ' + '; '.join(f"{m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, "
                                        f"{m.get('date')}" for m in sessions[-1:]) + '.', '',
             f'Intervals and verdicts: {RULE}.', '',
             'How to read the similarities: SVCCA is invariant to invertible linear maps of the kept directions, so '
             'two networks score high on a layer whose outputs span the same subspace whatever their weights. A '
             "first convolution (before its ReLU) is a linear map of small input patches (the ConvNet's conv1: 5x5 "
             'patches of one channel, 25 dimensions, for 32 channels), so it scores high for any two networks; and '
             'the logits of two accurate classifiers of the same classes agree. The middle layers carry the '
             "comparison. The seed measured on CIFAR with ResNet-34/VGG-16; this is Fashion-MNIST at CPU scale.", '']
    for name, seeds in data.items():
        lines += section(name, seeds, out)
    (out / 'report.md').write_text('\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
