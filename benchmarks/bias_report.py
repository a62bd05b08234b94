"""The bias study's report, computed only from its small records (``records/<method>-seed<S>.json``).

    python -m benchmarks.bias_report runs/bias-study --out benchmarks/results/bias_fashion_mnist
    python -m benchmarks.bias_report benchmarks/results/bias_fashion_mnist --out benchmarks/results/bias_fashion_mnist

Every number is recomputed from the stored test predictions: per-class one-vs-rest FPR / FNR against the original
of the same seed, CEV and SDE (``algorithms/analysis/bias.py``, epsilon rule for a zero original rate), accuracy of
the down-sampled classes, PIEs over the populations of seeds (Hooker et al.'s modal-label definition, and the
"any student disagrees" variant), and the correlation of per-layer SVCCA distance with CEV. Means carry 95%
t-intervals over seeds and each finding a verdict by them (``benchmarks/intervals.py``). Writes ``report.md``,
``bias_scatter.png`` and copies the records (and ``machine.json``) into ``<out>`` so it regenerates from there.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from algorithms.analysis import bias_metrics, bias_scatter, count_pies, pie_disagreement, pie_modal
from benchmarks.intervals import RULE, Interval, mean_interval, verdict
from benchmarks.markdown import table

FMNIST = ('T-shirt/top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot')
CLASSES = list(FMNIST)  # set from the records (the number of classes) in main()
DOWNSAMPLED = {6: 0.1, 2: 0.2, 4: 0.5}  # the records' `downsample` when they have one (biased_fashion_mnist here)
NAMES = {'prune': 'Pruning alone', 'kd': 'KD', 'at_kd': 'AT+KD', 'pkt_kd': 'PKT+KD', 'sp_kd': 'SP+KD',
         'crd_kd': 'CRD+KD', 'fsp_kd': 'FSP+KD'}
SEED_CEV = {'prune': 4237, 'kd': 1537, 'at_kd': 852, 'pkt_kd': 903}  # the seed, biased CIFAR-100 at 45%
SEED_SDE = {'prune': 51.1, 'kd': 30.8, 'at_kd': 25.2, 'pkt_kd': 25.1}


def ordered(methods: Any) -> list[str]:
    """The compressed methods present, in ``NAMES`` order, then any others by name."""
    return [m for m in NAMES if m in methods] + sorted(m for m in methods if m not in NAMES and m != 'original')


def load(root: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """``{method: {seed: record}}`` from ``<root>/records/*.json``."""
    out: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for path in sorted((root / 'records').glob('*.json')):
        rec = json.loads(path.read_text())
        out[rec['method']][int(rec['seed'])] = rec
    return dict(out)


def copy_records(root: Path, out: Path) -> None:
    if root.resolve() == out.resolve():
        return
    (out / 'records').mkdir(parents=True, exist_ok=True)
    for path in (root / 'records').glob('*.json'):
        shutil.copyfile(path, out / 'records' / path.name)
    if (root / 'machine.json').is_file():
        shutil.copyfile(root / 'machine.json', out / 'machine.json')


def _array(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64) - ord('0')


def pearson(x: list[float], y: list[float]) -> tuple[float, Optional[tuple[float, float]]]:
    """Pearson's r and its 95% interval by Fisher's z (``None`` below 4 points)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float('nan'), None  # undefined without spread
    r = float(np.corrcoef(a, b)[0, 1])
    if len(a) < 4 or not math.isfinite(r) or abs(r) >= 1:
        return r, None
    z, half = math.atanh(r), 1.96 / math.sqrt(len(a) - 3)
    return r, (math.tanh(z - half), math.tanh(z + half))


def analyse(data: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Per method and seed: the bias metrics against the original of the same seed; PIEs per method."""
    originals = data['original']
    labels = _array(next(iter(originals.values()))['labels'])
    per_run: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for method, seeds in data.items():
        if method == 'original':
            continue
        for seed, rec in seeds.items():
            if seed not in originals:
                continue
            report = bias_metrics(_array(rec['preds']), _array(originals[seed]['preds']), labels, len(CLASSES))
            per_run[method][seed] = {'report': report, 'record': rec}
    shared = sorted(set.intersection(*(set(s) for s in per_run.values()))) if per_run else []
    orig_pop = np.stack([_array(originals[s]['preds']) for s in sorted(originals)])
    pies = {}
    for method, seeds in per_run.items():
        pop = np.stack([_array(seeds[s]['record']['preds']) for s in sorted(seeds)])
        pies[method] = {'modal': count_pies(pie_modal(pop, orig_pop)),
                        'any': count_pies(pie_disagreement(pop, np.asarray(_modal(orig_pop)), rule='any')),
                        'seeds': len(seeds)}
    # the noise floor of the 'any seed' count: originals of other seeds against the originals' own modal label
    pies['original'] = {'modal': 0, 'any': count_pies(pie_disagreement(orig_pop, np.asarray(_modal(orig_pop)),
                                                                       rule='any')), 'seeds': len(orig_pop)}
    return {'labels': labels, 'runs': per_run, 'pies': pies, 'shared_seeds': shared}


def _modal(pop: np.ndarray) -> np.ndarray:
    from algorithms.analysis.bias import modal_labels

    return modal_labels(pop)


def _interval(values: list[float]) -> Interval:
    return mean_interval(values)


def _paired(a: dict[int, float], b: dict[int, float]) -> Optional[Interval]:
    """The interval of ``a - b`` over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    return mean_interval([a[s] - b[s] for s in seeds]) if seeds else None


def main_table(data: dict[str, Any], result: dict[str, Any]) -> list[str]:
    methods = ['original'] + ordered(result['runs'])
    head = ['method', 'seeds', 'test accuracy %'] + [f'{CLASSES[c]} ({int(f * 100)}%) acc. %' for c, f in
                                                     DOWNSAMPLED.items()] + ['CEV', 'SDE', 'PIEs (modal)',
                                                                             'PIEs (any seed)', 'seed CEV / SDE']
    rows = []
    for m in methods:
        if m == 'original':
            recs = list(data['original'].values())
            labels = result['labels']
            per_class = {c: [float((_array(r['preds'])[labels == c] == c).mean()) for r in recs] for c in DOWNSAMPLED}
            rows.append(['original (dense)', str(len(recs)), _interval([r['accuracy'] for r in recs]).fmt(2, 100)] +
                        [_interval(per_class[c]).fmt(1, 100) for c in DOWNSAMPLED] +
                        ['-', '-', '0 (by definition)', f"{result['pies']['original']['any']} (noise floor)", '-'])
            continue
        runs = result['runs'][m]
        reps = [r['report'] for r in runs.values()]
        cells = [NAMES.get(m, m), str(len(runs)), _interval([r['record']['accuracy'] for r in runs.values()]).fmt(2, 100)]
        cells += [_interval([float(rep.accuracy[c]) for rep in reps]).fmt(1, 100) for c in DOWNSAMPLED]
        cells += [_interval([rep.cev for rep in reps]).fmt(0), _interval([rep.sde for rep in reps]).fmt(1)]
        pies = result['pies'][m]
        cells += [str(pies['modal']), str(pies['any'])]
        cells += [f"{SEED_CEV[m]} / {SEED_SDE[m]}" if m in SEED_CEV else '-']
        rows.append(cells)
    return table(head, rows)


def findings(result: dict[str, Any]) -> list[str]:
    runs = result['runs']
    if 'prune' not in runs:
        return []
    cev = {m: {s: r['report'].cev for s, r in seeds.items()} for m, seeds in runs.items()}
    sde = {m: {s: r['report'].sde for s, r in seeds.items()} for m, seeds in runs.items()}
    acc = {m: {s: r['record']['accuracy'] for s, r in seeds.items()} for m, seeds in runs.items()}
    lines = ['| claim (the seed\'s chapter III) | difference, mean [95% interval] over paired seeds | verdict |',
             '|---|---|---|']
    for m in [m for m in ordered(runs) if m != 'prune']:
        for what, values, digits in (('CEV', cev, 0), ('SDE', sde, 1)):
            d = _paired(values['prune'], values[m])
            if d is not None:
                lines.append(f'| {NAMES.get(m, m)} has a lower {what} than pruning alone | {d.fmt(digits)} (prune - '
                             f'{NAMES.get(m, m)}) | {verdict(d)} |')
        d = _paired(acc[m], acc['prune'])
        if d is not None:
            lines.append(f'| {NAMES.get(m, m)} is more accurate than pruning alone | {d.fmt(2, 100)} points | {verdict(d)} |')
    for a, b in (('at_kd', 'kd'), ('pkt_kd', 'kd')):
        if a in runs and b in runs:
            d = _paired(cev[b], cev[a])
            lines.append(f'| {NAMES[a]} has a lower CEV than {NAMES[b]} alone | {d.fmt(0)} | {verdict(d)} |')
    return lines


def in_words(result: dict[str, Any]) -> list[str]:
    """The findings said plainly: directions of the means, and what the intervals decide."""
    runs = result['runs']
    if 'prune' not in runs:
        return []
    mean_cev = {m: float(np.mean([r['report'].cev for r in seeds.values()])) for m, seeds in runs.items()}
    others = [m for m in ordered(runs) if m != 'prune']
    lower = [m for m in others if mean_cev[m] < mean_cev['prune']]
    claims = findings(result)[2:]
    verdicts = [line for line in claims if line.endswith('| holds |')]
    text = (f"Pruning alone: mean CEV {mean_cev['prune']:.0f}. " +
            (f"Every distillation method's mean is lower ({', '.join(f'{NAMES.get(m, m)} {mean_cev[m]:.0f}' for m in others)})"
             if len(lower) == len(others) else
             f"Lower for {', '.join(NAMES.get(m, m) for m in lower) or 'none'}") +
            f", the seed's direction; by the paired 95% intervals, {len(verdicts)} of {len(claims)} claims "
            f"{'holds' if len(verdicts) == 1 else 'hold'}"
            + (': ' + '; '.join(v.split('|')[1].strip() for v in verdicts) if verdicts else '') +
            ', the rest are within noise at this number of seeds.')
    return [text]


def svcca_correlation(result: dict[str, Any]) -> list[str]:
    points = [(r['record'].get('svcca') or {}, r['report'].cev) for seeds in result['runs'].values()
              for r in seeds.values()]
    layers = list(points[0][0]) if points and points[0][0] else []
    lines = ['| layer | SVCCA distance to the original, mean over runs | Pearson r (distance, CEV) [95% CI] | runs |',
             '|---|---|---|---|']
    for layer in layers:
        xs = [1.0 - p[layer] for p, _ in points if layer in p]
        ys = [c for p, c in points if layer in p]
        r, ci = pearson(xs, ys)
        ci_text = f'[{ci[0]:.2f}, {ci[1]:.2f}]' if ci else '(too few runs)'
        cell = f'{r:.2f} {ci_text}' if math.isfinite(r) else 'undefined (no spread)'
        lines.append(f'| {layer} | {np.mean(xs):.4f} | {cell} | {len(xs)} |')
    return lines


def export_table(data: dict[str, Any]) -> list[str]:
    rows = []
    for m in ordered(data):
        for seed, rec in sorted(data[m].items()):
            e = rec.get('export')
            if not e:
                continue
            rows.append([f'{NAMES.get(m, m)} (seed {seed})', f"{e['params']['masked']:,} -> {e['params']['exported']:,}",
                         f"{e['macs']['masked']:,} -> {e['macs']['exported']:,} ({100 * (1 - e['macs']['ratio']):.1f}% fewer)",
                         f"{1000 * e['latency_s']['masked']:.2f} -> {1000 * e['latency_s']['exported']:.2f} "
                         f"({e['latency_s']['speedup']:.2f}x)", f"{e.get('max_abs_output_difference', float('nan')):.1e}"])
    if not rows:
        return []
    speedups = sorted(float(r[3].rsplit('(', 1)[1].rstrip('x)')) for r in rows)
    note = ['', f'Latency: masked and exported models timed interleaved in one process (best of 3 medians). Every row is '
            f'the same architecture at the same sparsity, so the spread of speed-ups ({speedups[0]:.2f}x to '
            f'{speedups[-1]:.2f}x) is the load on the machine when each was recorded; the median is '
            f'{speedups[len(speedups) // 2]:.2f}x.']
    return table(['model', 'parameters', 'MACs per image', 'CPU latency per batch of 128, ms (speed-up)',
                  'largest output difference, masked vs exported'], rows) + note


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog='python -m benchmarks.bias_report', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('root', help='the study runs_root, or a folder with a committed copy of its records/')
    p.add_argument('--out', required=True)
    args = p.parse_args(argv)
    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    copy_records(root, out)
    data = load(out)
    if 'original' not in data or len(data) < 2:
        sys.stderr.write(f'error: no original and compressed records under {root}/records\n')
        return 2
    first = next(iter(data['original'].values()))
    if first.get('downsample'):
        DOWNSAMPLED.clear()
        DOWNSAMPLED.update({int(c): float(f) for c, f in first['downsample'].items()})
    num_classes = int(first.get('num_classes') or 10)
    if num_classes == 100:  # CIFAR-100: its names; the seed's 15 classes when the data were not down-sampled
        from recipes.biased_data import BIASED_CIFAR100, CIFAR100_CLASSES
        CLASSES[:] = list(CIFAR100_CLASSES)
        if not first.get('downsample'):
            DOWNSAMPLED.clear()
            DOWNSAMPLED.update(BIASED_CIFAR100)
    else:
        CLASSES[:] = list(FMNIST) if num_classes == 10 else [f'class {i}' for i in range(num_classes)]
    result = analyse(data)
    machine = json.loads((out / 'machine.json').read_text()).get('sessions', []) if (out / 'machine.json').is_file() else []
    changes = {NAMES.get(m, m): (np.concatenate([r['report'].d_fpr for r in seeds.values()]),
                                 np.concatenate([r['report'].d_fnr for r in seeds.values()]))
               for m, seeds in result['runs'].items()}
    bias_scatter(changes, out / 'bias_scatter.png', title='Per-class change of FPR and FNR vs the original '
                 '(all classes, all seeds)')
    order = ['original'] + ordered(data)
    train = {m: _interval([r['train_wct_s'] for r in data[m].values() if r.get('train_wct_s')]) for m in order}
    lines = [
        '# Distillation against the bias of pruning: the CPU-scale study', '',
        f'Regenerate from the committed records: `python -m benchmarks.bias_report {out} --out {out}`; rerun the '
        'study: `python -m benchmarks.bias_study benchmarks/studies/bias_fashion_mnist.yaml` then '
        f'`python -m benchmarks.bias_report runs/bias-study --out {out}`.', '',
        'Machine: ' + '; '.join(f"{m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, {m.get('date')}"
                                for m in machine[-1:]) + '.', '',
        '**Design.** Biased Fashion-MNIST: the first 20,000 training images with shirt, pullover and coat cut to 10%, '
        '20% and 50% (15,600 images; the 10,000 test images whole). The original: the chapter-II ConvNet (2 conv + '
        '2 FC, 128 hidden units), 8 epochs. Each method starts from the original of its seed, prunes every conv '
        'layer and the hidden FC layer filter-wise by L1 norm on the AGP schedule (10% at the start, one round per '
        'epoch, 45% of the filters from the half-way point on), fine-tunes to 8 epochs, and distils from that '
        'original. Metrics compare each compressed model with the original of its own seed on the test set; '
        'CEV / SDE use the epsilon rule for a class whose original rate is 0 (eps = 1 / its count of negatives or '
        'positives). PIEs: over the populations of seeds, Hooker et al.\'s definition (modal label of the '
        'compressed population differs from that of the originals) and the looser variant (any compressed seed '
        'differs from the originals\' modal label; the same count for the originals themselves is its noise '
        'floor). Nothing was tuned: RepDistiller\'s weights and the recipes\' '
        'learning rates as written.', '',
        f'Intervals and verdicts: {RULE}. Differences are paired by seed (same original).', '',
        '## Results', ''] + main_table(data, result) + [
        '', 'The seed\'s numbers (last column) are for ResNet32x4 on biased CIFAR-100, 100 classes, at 45%; the '
        'scale of CEV depends on the number of classes and on how rare errors are, so compare directions, not '
        'values.', '', '## Findings', ''] + in_words(result) + [''] + findings(result) + [
        '', '## Does similarity to the original go with less bias?', '',
        'Per layer, the SVCCA distance (1 - mean canonical correlation, first 1,000 test images) of each compressed '
        'run to its original, against that run\'s CEV, over every method and seed:', ''] + svcca_correlation(result) + [
        '', '## The exported models', '',
        'The masked model physically slimmed (`algorithms/pruning/export.py`): pruned filters, their batch-norm '
        'channels and the next layers\' input channels removed.', ''] + export_table(data) + [
        '', '## Training time', '',
        'Wall-clock of each run\'s training as recorded; not a speed claim (the runs shared the machine with other '
        'work at times: compare the methods\' costs on a quiet machine before relying on them).', '',
        '| method | training wall-clock, s (mean [95% CI]) |', '|---|---|'] + [
        f'| {NAMES.get(m, m)} | {i.fmt(0)} |' for m, i in train.items()] + [
        '', '![per-class FPR/FNR changes](bias_scatter.png)', '']
    (out / 'report.md').write_text('\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
