"""The pruning study's report, built only from its small records (``analysis.json``, manifests, run records).

    python -m benchmarks.pruning.report runs/pruning-study --out benchmarks/results/pruning_fashion_mnist

Writes ``report.md`` (tables with 95% intervals over seeds, findings with verdicts by those intervals), PNG plots,
and copies the records under ``<out>/runs`` so that the committed report regenerates from them
(``python -m benchmarks.pruning.report <out>/runs --out <out>``).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from benchmarks.core.intervals import RULE, Interval, mean_interval, verdict
from benchmarks.core.markdown import frame_table, interval_cell, interval_pivot, table
from benchmarks.core.records import SMALL_FILES, copy_records
from benchmarks.core.reporting import ReportError, command, header, report_main
from benchmarks.pruning import ANALYSIS_FILE

PROG = 'benchmarks.pruning.report'
METHODS = ('magnitude', 'iterative', 'reinit', 'random')
NAMES = {'magnitude': 'Magnitude (prune + fine-tune)', 'iterative': 'Iterative magnitude',
         'reinit': 'Re-init (masks kept, from scratch)', 'random': 'Random sparse init (from scratch)'}
STUDY = 'benchmarks/studies/pruning_fashion_mnist.yaml'
READING = ('How to read the similarities: SVCCA is invariant to invertible linear maps of the kept directions, so '
           'two networks score high on a layer whose outputs span the same subspace whatever their weights. A first '
           "convolution (before its ReLU) is a linear map of small input patches (the ConvNet's conv1: 5x5 patches "
           'of one channel, 25 dimensions, for 32 channels), so it scores high for any two networks; and the logits '
           'of two accurate classifiers of the same classes agree. The middle layers carry the comparison. The seed '
           'measured on CIFAR with ResNet-34/VGG-16; this is Fashion-MNIST at CPU scale.')
Analysis = dict[str, Any]  # one seed's analysis.json, plus its 'seed' (the folder name)


def load(root: Path) -> dict[str, list[Analysis]]:
    """``{pipeline: [analysis of each seed]}`` for every ``<root>/<pipeline>/seed<k>/analysis.json``."""
    out: dict[str, list[Analysis]] = defaultdict(list)
    for path in sorted(root.glob(f'*/seed*/{ANALYSIS_FILE}')):
        out[path.parent.parent.name].append({**json.loads(path.read_text()), 'seed': path.parent.name})
    return dict(out)


def _mean_sim(stage: dict[str, Any]) -> float:
    return statistics.fmean(stage['similarity'].values())


def stage_frame(seeds: list[Analysis]) -> pd.DataFrame:
    """One row per seed and pruned stage: method, sparsity, accuracy and the mean SVCCA over the compared layers."""
    return pd.DataFrame([{'seed': a['seed'], 'method': s['method'], 'sparsity': s['sparsity'],
                          'accuracy': s['accuracy'], 'similarity': _mean_sim(s)} for a in seeds for s in a['stages']])


def sparsity_table(stages: pd.DataFrame, values: str, digits: int, scale: float) -> list[str]:
    """Method x sparsity: the mean [95% interval] over seeds of the column ``values``."""
    pivot = interval_pivot(stages, 'method', 'sparsity', values, order=METHODS).rename(index=NAMES)
    return frame_table(pivot, interval_cell(digits, scale), 'method', lambda s: f'{100 * s:.0f}%')


def findings(seeds: list[Analysis]) -> list[str]:
    """The seed's chapter II findings, each with the rule that decides it and the verdict of the intervals."""
    layers, out = seeds[0]['layers'], []

    def claim(per_seed: Callable[[Analysis], Optional[float]], text: Callable[[Interval], str]) -> None:
        values = [v for v in map(per_seed, seeds) if v is not None]
        if values:
            out.append(text(mean_interval(values)))

    def sim_drop(a: Analysis) -> Optional[float]:
        mag = sorted((s for s in a['stages'] if s['method'] == 'magnitude'), key=lambda s: s['sparsity'])
        return _mean_sim(mag[0]) - _mean_sim(mag[-1]) if len(mag) >= 2 else None

    claim(sim_drop, lambda d: f'- **Similarity falls with sparsity** (magnitude pruning; mean SVCCA over layers at '
          f'the lowest minus at the highest sparsity, > 0 claimed): {d.fmt(3)} -> **{verdict(d)}**.')
    for method in ('reinit', 'random'):
        def below_half(a: Analysis, method: str = method) -> Optional[float]:
            sims = [v for s in a['stages'] if s['method'] == method for v in s['similarity'].values()]
            return 0.5 - statistics.median(sims) if sims else None

        def median_text(d: Interval, method: str = method) -> str:
            median = Interval(0.5 - d.mean, None if d.hi is None else 0.5 - d.hi, None if d.lo is None else 0.5 - d.lo,
                              d.n)
            return (f'- **{NAMES[method]} shares < 50% median similarity with the original** (median over layers '
                    f'and sparsities): median {median.fmt(3)} -> **{verdict(d)}**.')
        claim(below_half, median_text)

    def output_first(a: Analysis) -> Optional[float]:
        """Per re-init run: the share of its final similarity a layer has at the first retraining epoch (sim at the
        first epoch / sim at the last), the last layer's minus the first layer's; mean over sparsities."""
        diffs = []
        for sparsity in sorted({e['sparsity'] for e in a['epochs'] if e['method'] == 'reinit'}):
            rows = sorted((e for e in a['epochs'] if e['method'] == 'reinit' and e['sparsity'] == sparsity),
                          key=lambda e: e['epoch'])
            first, last = rows[0]['similarity'], rows[-1]['similarity']
            share = {layer: first[layer] / last[layer] for layer in (layers[0], layers[-1]) if last[layer] > 0}
            if len(share) == 2:
                diffs.append(share[layers[-1]] - share[layers[0]])
        return statistics.fmean(diffs) if diffs else None

    claim(output_first, lambda d: f'- **Layers near the output re-converge first** (re-init from scratch: the share '
          f'of its final similarity a layer has at the first retraining epoch, sim(first epoch) / sim(last epoch), of '
          f'the last compared layer ({layers[-1]}) minus that of the first ({layers[0]}), mean over sparsities, > 0 '
          f'claimed): {d.fmt(3)} -> **{verdict(d)}**.')

    def mag_vs_random(a: Analysis) -> Optional[float]:
        acc = {(s['method'], s['sparsity']): s['accuracy'] for s in a['stages']}
        pairs = [acc[m, sp] - acc['random', sp] for (m, sp) in acc if m == 'magnitude' and ('random', sp) in acc]
        return statistics.fmean(pairs) if pairs else None

    claim(mag_vs_random, lambda d: '- **Magnitude pruning keeps accuracy better than random sparse training** '
          f'(accuracy difference, mean over sparsities, points): {d.fmt(2, 100)} -> **{verdict(d)}**.')
    return out


def _layer_means(rows: list[dict[str, Any]], layers: list[str]) -> dict[str, float]:
    return {layer: statistics.fmean(r['similarity'][layer] for r in rows) for layer in layers}


def plots(name: str, seeds: list[Analysis], stages: pd.DataFrame, out: Path) -> list[str]:
    """PNG plots: accuracy vs sparsity (with intervals) and per-layer similarity heat-maps; returns markdown lines."""
    from algorithms.analysis.plots import pyplot, similarity_heatmap
    try:
        plt = pyplot('the pruning report')
    except ImportError:
        return ['(matplotlib is not installed: no plots)']
    layers = seeds[0]['layers']
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, row in interval_pivot(stages, 'method', 'sparsity', 'accuracy', order=METHODS).iterrows():
        pts = [(s, iv) for s, iv in row.items() if iv is not None]
        err = [[100 * (iv.mean - iv.lo) if iv.lo is not None else 0 for _, iv in pts],
               [100 * (iv.hi - iv.mean) if iv.hi is not None else 0 for _, iv in pts]]
        ax.errorbar([100 * s for s, _ in pts], [100 * iv.mean for _, iv in pts], yerr=err, marker='o', capsize=3,
                    label=NAMES[method])
    ax.axhline(100 * mean_interval([a['original_accuracy'] for a in seeds]).mean, color='grey', ls='--',
               label='original (dense)')
    ax.set(xlabel='sparsity (%)', ylabel='test accuracy (%)', title=f'{name}: accuracy vs sparsity (95% intervals '
           'over seeds)')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f'{name}_accuracy.png', dpi=110)
    plt.close(fig)
    lines = [f'![accuracy vs sparsity]({name}_accuracy.png)']
    all_stages = [s for a in seeds for s in a['stages']]
    columns = {f'{method[:3]} {100 * sparsity:.0f}%': _layer_means(
        [s for s in all_stages if s['method'] == method and s['sparsity'] == sparsity], layers)
        for method in METHODS for sparsity in sorted({s['sparsity'] for s in all_stages if s['method'] == method})}
    similarity_heatmap(columns, out / f'{name}_similarity.png', title=f'{name}: SVCCA to the original (mean of seeds)',
                       xlabel='method, sparsity')
    lines.append(f'![per-layer similarity]({name}_similarity.png)')
    for method in ('reinit', 'magnitude'):
        epochs = [e for a in seeds for e in a['epochs'] if e['method'] == method]
        if not epochs:
            continue
        top = max(e['sparsity'] for e in epochs)
        epochs = [e for e in epochs if e['sparsity'] == top]
        cols = {f'ep {k}': _layer_means([e for e in epochs if e['epoch'] == k], layers)
                for k in sorted({e['epoch'] for e in epochs})}
        png = f'{name}_{method}_epochs.png'
        similarity_heatmap(cols, out / png, title=f'{name}: {method} at {100 * top:.0f}%, SVCCA over retraining',
                           xlabel='retraining epoch')
        lines.append(f'![{method} similarity over epochs]({png})')
    return lines


def section(name: str, seeds: list[Analysis], out: Path) -> list[str]:
    """One pipeline's chapter: accuracy and similarity tables, measured sparsity and cost, findings, plots."""
    first, stages = seeds[0], stage_frame(seeds)
    orig, sim = mean_interval([a['original_accuracy'] for a in seeds]), first['similarity']
    lines = [f'## {name} ({len(seeds)} seed{"s" if len(seeds) > 1 else ""}: {", ".join(a["seed"] for a in seeds)})',
             '', f'Original (dense) test accuracy: {orig.fmt(2, 100)}%. Parameters '
             f'{first["original"]["params"][0]:,}, MACs per image {first["original"]["macs"][0]:,}.', '',
             '### Test accuracy (%) vs sparsity', '', *sparsity_table(stages, 'accuracy', 2, 100), '',
             '### Mean per-layer SVCCA similarity to the original', '',
             f'Layers: {", ".join(first["layers"])}; {first["images"]} test images, conv layers as {sim["conv_mode"]} '
             f'(keep {sim["keep"]} of the variance, at most {sim["max_datapoints"]} datapoints per layer).', '',
             *sparsity_table(stages, 'similarity', 3, 1), '',
             f"### Measured sparsity and cost (magnitude models, seed {first['seed']})", '']
    magnitude = sorted((s for s in first['stages'] if s['method'] == 'magnitude'), key=lambda s: s['sparsity'])
    lines += table(['sparsity', 'min / max layer sparsity', 'parameters dense / non-zero', 'MACs dense / effective'], [
        [f"{100 * s['sparsity']:.0f}%", f"{100 * min(s['layer_sparsity'].values()):.2f}% / "
         f"{100 * max(s['layer_sparsity'].values()):.2f}%", f"{s['params'][0]:,} / {s['params'][1]:,}",
         f"{s['macs'][0]:,} / {s['macs'][1]:,}"] for s in magnitude])
    lat = first.get('latency')
    if lat:
        lines += ['', f"Forward pass of a batch of {lat['batch']} on this CPU, timed side by side: dense original "
                  f"{lat['dense_ms']:.1f} ms, {100 * lat['sparsity']:.0f}%-sparse masked model {lat['masked_ms']:.1f} "
                  'ms. Unstructured masks leave the dense kernels as they are: the zeros cost the same time unless '
                  'the model is exported to a sparse format (not done here).']
    return lines + ['', '### Findings', '', *findings(seeds), '', *plots(name, seeds, stages, out), '']


def build(root: Path, out: Path) -> list[str]:
    """The report of the records under ``root`` (checked first); copies them under ``<out>/runs``."""
    data = load(root)
    if not data:
        raise ReportError(f'no */seed*/{ANALYSIS_FILE} under {root}')
    copy_records(root, out / 'runs', (*SMALL_FILES, ANALYSIS_FILE))
    lines = header('Pruning is not compression: the CPU-scale study', command(PROG, out / 'runs', out),
                   f'`python -m benchmarks.study {STUDY}` then `{command(PROG, "runs/pruning-study", out)}`',
                   root)
    lines += [f'Intervals and verdicts: {RULE}.', '', READING, '']
    for name, seeds in data.items():
        lines += section(name, seeds, out)
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    return report_main(PROG, __doc__, build, argv)


if __name__ == '__main__':
    sys.exit(main())
