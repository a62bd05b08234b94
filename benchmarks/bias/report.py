"""The bias study's report, computed only from its small records (``records/<method>-seed<S>.json``).

    python -m benchmarks.bias.report runs/bias-study --out benchmarks/results/bias_fashion_mnist
    python -m benchmarks.bias.report benchmarks/results/bias_fashion_mnist --out benchmarks/results/bias_fashion_mnist

Every number is recomputed from the stored test predictions: per-class one-vs-rest FPR / FNR against the original
of the same seed, CEV (the seed's code's definition: the mean over classes and both coordinates) and SDE
(``algorithms/analysis/bias.py``, epsilon rule for a zero original rate), both as the mean of per-seed values and,
for CEV, once from seed-averaged rates as the seed computed it; accuracy of the down-sampled classes; PIEs over the
populations of seeds by three rules (Hooker et al.'s modal labels; every compressed seed disagrees, the seed's
code's rule; any seed disagrees); and the correlation of per-layer SVCCA distance with CEV. Means carry 95%
t-intervals over seeds and each finding a verdict by them (``benchmarks/core/intervals.py``). Writes ``report.md``,
``bias_scatter.png`` and copies the records (and ``machine.json``) into ``<out>`` so it regenerates from there.
"""

from __future__ import annotations

import json
import shutil
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from algorithms.analysis import bias_metrics, bias_scatter, count_pies, pie_disagreement, pie_modal, seed_averaged_cev
from algorithms.analysis.bias import modal_labels
from benchmarks.core.intervals import RULE, Interval, mean_interval, verdict
from benchmarks.core.markdown import frame_table, interval_cell, interval_pivot, missing, table
from benchmarks.core.records import MACHINE_FILE, copy_records
from benchmarks.core.reporting import ReportError, command, header, report_main
from recipes.data.biased_data import BIASED_CIFAR100, BIASED_FASHION_MNIST, CIFAR100_CLASSES

PROG = 'benchmarks.bias.report'
FMNIST = ('T-shirt/top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot')
NAMES = {'prune': 'Pruning alone', 'kd': 'KD', 'at_kd': 'AT+KD', 'pkt_kd': 'PKT+KD', 'sp_kd': 'SP+KD',
         'crd_kd': 'CRD+KD', 'fsp_kd': 'FSP+KD'}
SEED_CEV = {'prune': 4237, 'kd': 1537, 'at_kd': 852, 'pkt_kd': 903}  # the seed, biased CIFAR-100 at 45%
SEED_SDE = {'prune': 51.1, 'kd': 30.8, 'at_kd': 25.2, 'pkt_kd': 25.1}
STUDY = 'benchmarks/studies/bias_fashion_mnist.yaml'
DESIGN = (
    '**Design.** Biased Fashion-MNIST: the first 20,000 training images with shirt, pullover and coat cut to 10%, 20% '
    'and 50% (15,600 images; the 10,000 test images whole). The original: the chapter-II ConvNet (2 conv + 2 FC, 128 '
    'hidden units), 8 epochs. Each method starts from the original of its seed, prunes every conv layer and the '
    'hidden FC layer filter-wise by L1 norm on the AGP schedule (10% at the start, one round per epoch, 45% of the '
    'filters from the half-way point on), fine-tunes to 8 epochs, and distils from that original. Metrics compare '
    'each compressed model with the original of its own seed on the test set; CEV / SDE use the epsilon rule for a '
    'class whose original rate is 0 (eps = 1 / its count of negatives or positives). PIEs, over the populations of '
    "seeds, by three rules: *modal*, Hooker et al.'s definition (the modal label of the compressed population "
    "differs from that of the originals); *all seeds*, the seed's code's rule (every compressed seed differs from "
    "the originals' modal label: the intersection over seeds, as its `analytics.py` counted with one teacher; the "
    "count to set beside the seed's); *any seed*, the union (any compressed seed differs; the same count for the "
    "originals themselves is its noise floor). Nothing was tuned: RepDistiller's weights and the recipes' "
    'learning rates as written.')
CEV_NOTE = (
    "**CEV** here is the seed's code's definition: sklearn's `mean_squared_error` of the (classes x 2) points "
    '(dFPR, dFNR) against their mean, i.e. `1/(2n) sum_i ||dX_mu - dX_i||^2`, half the `1/n sum_i ||...||^2` its '
    "text writes (`cev(..., average='points')`). The seed computed CEV **once, from the per-class rates averaged "
    'over its seeds**; the CEV column is instead the **mean of per-seed CEVs** (each compressed seed against the '
    'original of its own seed), which an interval over seeds needs. Both are given: the "CEV of seed-averaged rates" '
    "column averages each class's FPR and FNR over the method's seeds (and over the originals of the same seeds), "
    'then computes one CEV; averaging the rates first cancels part of each seed\'s own scatter, so it is usually the '
    'smaller.')


def name(method: str) -> str:
    return NAMES.get(method, method)


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


def classes(original: dict[str, Any]) -> tuple[list[str], dict[int, float]]:
    """The class names and the down-sampled classes ``{class: fraction kept}`` of an original's record: its
    ``downsample`` if it has one, else the seed's choice for CIFAR-100 and this project's for Fashion-MNIST."""
    n = int(original.get('num_classes') or 10)
    down = {int(c): float(f) for c, f in (original.get('downsample') or {}).items()}
    if n == 100:
        return list(CIFAR100_CLASSES), down or dict(BIASED_CIFAR100)
    return list(FMNIST) if n == 10 else [f'class {i}' for i in range(n)], down or dict(BIASED_FASHION_MNIST)


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
    """Per method and seed: the bias metrics against the original of the same seed; PIEs per method; the classes."""
    originals = data['original']
    names, downsampled = classes(next(iter(originals.values())))
    labels = _array(next(iter(originals.values()))['labels'])
    per_run: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for method, seeds in data.items():
        for seed, rec in seeds.items():
            if method != 'original' and seed in originals:
                report = bias_metrics(_array(rec['preds']), _array(originals[seed]['preds']), labels, len(names))
                per_run[method][seed] = {'report': report, 'record': rec}
    orig_pop = np.stack([_array(originals[s]['preds']) for s in sorted(originals)])
    orig_modal = np.asarray(modal_labels(orig_pop))
    pies, averaged_cev = {}, {}
    for m, seeds in per_run.items():
        pop = np.stack([_array(seeds[s]['record']['preds']) for s in sorted(seeds)])
        pies[m] = {'modal': count_pies(pie_modal(pop, orig_pop)),
                   'all': count_pies(pie_disagreement(pop, orig_modal, rule='all')),
                   'any': count_pies(pie_disagreement(pop, orig_modal, rule='any')), 'seeds': len(seeds)}
        averaged_cev[m] = seed_averaged_cev(pop, np.stack([_array(originals[s]['preds']) for s in sorted(seeds)]),
                                            labels, len(names))
    # the noise floor of the 'any seed' count: originals of other seeds against the originals' own modal label
    pies['original'] = {'modal': 0, 'all': count_pies(pie_disagreement(orig_pop, orig_modal, rule='all')),
                        'any': count_pies(pie_disagreement(orig_pop, orig_modal, rule='any')), 'seeds': len(orig_pop)}
    return {'labels': labels, 'runs': per_run, 'pies': pies, 'classes': names, 'downsampled': downsampled,
            'seed_averaged_cev': averaged_cev}


def run_frame(data: dict[str, Any], result: dict[str, Any]) -> pd.DataFrame:
    """One row per run and measure (method, seed, measure, value): test accuracy, each down-sampled class's accuracy
    (``class<c>``), CEV and SDE (against the original of the same seed), training wall-clock (``train``)."""
    labels, down, rows = result['labels'], result['downsampled'], []
    for seed, rec in data['original'].items():
        preds = _array(rec['preds'])
        rows += [('original', seed, 'accuracy', rec['accuracy'])]
        rows += [('original', seed, f'class{c}', float((preds[labels == c] == c).mean())) for c in down]
    for m, runs in result['runs'].items():
        for seed, r in runs.items():
            rep = r['report']
            rows += [(m, seed, 'accuracy', r['record']['accuracy']), (m, seed, 'cev', rep.cev),
                     (m, seed, 'sde', rep.sde), *((m, seed, f'class{c}', float(rep.accuracy[c])) for c in down)]
    rows += [(m, seed, 'train', r['train_wct_s']) for m, recs in data.items() for seed, r in recs.items()
             if r.get('train_wct_s')]
    return pd.DataFrame(rows, columns=['method', 'seed', 'measure', 'value'])


def main_table(runs: pd.DataFrame, result: dict[str, Any]) -> list[str]:
    """Per method: seeds, accuracy, the down-sampled classes' accuracy, CEV (mean of per-seed CEVs, and of the
    seed-averaged rates), SDE, PIEs by the three rules, the seed's CEV / SDE."""
    down, pies = result['downsampled'], result['pies']
    cells = {'accuracy': (2, 100), **{f'class{c}': (1, 100) for c in down}, 'cev': (0, 1), 'sde': (1, 1)}
    pivot = interval_pivot(runs[runs.measure != 'train'], 'method', 'measure', 'value',
                           order=['original', *ordered(result['runs'])]).reindex(columns=list(cells))
    rows = []
    for m, ivs in pivot.iterrows():
        shown = ['-' if missing(iv) else iv.fmt(*cells[k]) for k, iv in ivs.items()]
        if m == 'original':
            rows.append(['original (dense)', pies[m]['seeds'], *shown[:-1], '-', shown[-1], '0 (by definition)',
                         pies[m]['all'], f"{pies[m]['any']} (noise floor)", '-'])
        else:
            rows.append([name(m), len(result['runs'][m]), *shown[:-1], f"{result['seed_averaged_cev'][m]:.0f}",
                         shown[-1], pies[m]['modal'], pies[m]['all'], pies[m]['any'],
                         f'{SEED_CEV[m]} / {SEED_SDE[m]}' if m in SEED_CEV else '-'])
    return table(['method', 'seeds', 'test accuracy %', *(f"{result['classes'][c]} ({int(f * 100)}%) acc. %"
                                                         for c, f in down.items()),
                  'CEV (mean of per-seed)', 'CEV of seed-averaged rates (the seed\'s way)', 'SDE',
                  'PIEs, modal (Hooker et al.)', "PIEs, all seeds (the seed's code)", 'PIEs, any seed',
                  'seed CEV / SDE'], rows)


def _paired(a: dict[int, float], b: dict[int, float]) -> Optional[Interval]:
    """The interval of ``a - b`` over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    return mean_interval([a[s] - b[s] for s in seeds]) if seeds else None


def claims(result: dict[str, Any]) -> list[list[str]]:
    """The seed's chapter III claims: ``[claim, difference over paired seeds, verdict]`` rows."""
    runs = result['runs']
    if 'prune' not in runs:
        return []
    cev = {m: {s: r['report'].cev for s, r in seeds.items()} for m, seeds in runs.items()}
    sde = {m: {s: r['report'].sde for s, r in seeds.items()} for m, seeds in runs.items()}
    acc = {m: {s: r['record']['accuracy'] for s, r in seeds.items()} for m, seeds in runs.items()}
    rows = []
    for m in ordered(runs)[1:]:
        for what, values, digits in (('CEV', cev, 0), ('SDE', sde, 1)):
            d = _paired(values['prune'], values[m])
            if d is not None:
                rows.append([f'{name(m)} has a lower {what} than pruning alone', f'{d.fmt(digits)} (prune - {name(m)})',
                             verdict(d)])
        d = _paired(acc[m], acc['prune'])
        if d is not None:
            rows.append([f'{name(m)} is more accurate than pruning alone', f'{d.fmt(2, 100)} points', verdict(d)])
    for a, b in (('at_kd', 'kd'), ('pkt_kd', 'kd')):
        if a in runs and b in runs:
            d = _paired(cev[b], cev[a])
            rows.append([f'{NAMES[a]} has a lower CEV than {NAMES[b]} alone', d.fmt(0), verdict(d)])
    return rows


def findings(result: dict[str, Any]) -> list[str]:
    rows = claims(result)
    head = ["claim (the seed's chapter III)", 'difference, mean [95% interval] over paired seeds', 'verdict']
    return table(head, rows) if rows else []


def in_words(result: dict[str, Any]) -> list[str]:
    """The findings said plainly: directions of the means, and what the intervals decide."""
    runs = result['runs']
    if 'prune' not in runs:
        return []
    mean_cev = {m: float(np.mean([r['report'].cev for r in seeds.values()])) for m, seeds in runs.items()}
    others = ordered(runs)[1:]
    lower = [m for m in others if mean_cev[m] < mean_cev['prune']]
    rows = claims(result)
    held = [claim for claim, _, v in rows if v == 'holds']
    text = (f"Pruning alone: mean CEV {mean_cev['prune']:.0f}. " +
            (f"Every distillation method's mean is lower ({', '.join(f'{name(m)} {mean_cev[m]:.0f}' for m in others)})"
             if len(lower) == len(others) else f"Lower for {', '.join(name(m) for m in lower) or 'none'}") +
            f", the seed's direction; by the paired 95% intervals, {len(held)} of {len(rows)} claims "
            f"{'holds' if len(held) == 1 else 'hold'}" + (': ' + '; '.join(held) if held else '') +
            ', the rest are within noise at this number of seeds.')
    return [text]


def svcca_correlation(result: dict[str, Any]) -> list[str]:
    """Per layer: the mean SVCCA distance to the original and its Pearson correlation with CEV over every run."""
    points = [(r['record'].get('svcca') or {}, r['report'].cev) for seeds in result['runs'].values()
              for r in seeds.values()]
    rows = []
    for layer in (list(points[0][0]) if points and points[0][0] else []):
        xs, ys = [1.0 - p[layer] for p, _ in points if layer in p], [c for p, c in points if layer in p]
        r, ci = pearson(xs, ys)
        ci_text = f'[{ci[0]:.2f}, {ci[1]:.2f}]' if ci else '(too few runs)'
        rows.append([layer, f'{np.mean(xs):.4f}', f'{r:.2f} {ci_text}' if math.isfinite(r) else 'undefined (no spread)',
                     len(xs)])
    return table(['layer', 'SVCCA distance to the original, mean over runs', 'Pearson r (distance, CEV) [95% CI]',
                  'runs'], rows)


def export_table(data: dict[str, Any]) -> list[str]:
    """The exported (physically slimmed) models' parameters, MACs, latency and output difference, per record."""
    rows, speedups = [], []
    for m in ordered(data):
        for seed, rec in sorted(data[m].items()):
            e = rec.get('export')
            if e:
                speedups.append(round(e['latency_s']['speedup'], 2))
                p, macs, lat = e['params'], e['macs'], e['latency_s']
                rows.append([f'{name(m)} (seed {seed})', f"{p['masked']:,} -> {p['exported']:,}",
                             f"{macs['masked']:,} -> {macs['exported']:,} ({100 * (1 - macs['ratio']):.1f}% fewer)",
                             f"{1000 * lat['masked']:.2f} -> {1000 * lat['exported']:.2f} ({lat['speedup']:.2f}x)",
                             f"{e.get('max_abs_output_difference', float('nan')):.1e}"])
    if not rows:
        return []
    speedups.sort()
    return table(['model', 'parameters', 'MACs per image', 'CPU latency per batch of 128, ms (speed-up)',
                  'largest output difference, masked vs exported'], rows) + [
        '', 'Latency: masked and exported models timed interleaved in one process (best of 3 medians). Every row is '
        f'the same architecture at the same sparsity, so the spread of speed-ups ({speedups[0]:.2f}x to '
        f'{speedups[-1]:.2f}x) is the load on the machine when each was recorded; the median is '
        f'{speedups[len(speedups) // 2]:.2f}x.']


def build(root: Path, out: Path) -> list[str]:
    """The report of the records under ``root`` (checked first; copied into ``out``, with ``machine.json``, replacing
    any records an earlier report left there)."""
    data = load(root)
    if 'original' not in data or len(data) < 2:
        raise ReportError(f'no original and compressed records under {root}/records')
    if root.resolve() != out.resolve():
        shutil.rmtree(out / 'records', ignore_errors=True)
    copy_records(root, out, ('records/*.json', MACHINE_FILE))
    result = analyse(data)
    runs = run_frame(data, result)
    changes = {name(m): (np.concatenate([r['report'].d_fpr for r in seeds.values()]),
                         np.concatenate([r['report'].d_fnr for r in seeds.values()]))
               for m, seeds in result['runs'].items()}
    bias_scatter(changes, out / 'bias_scatter.png', title='Per-class change of FPR and FNR vs the original '
                 '(all classes, all seeds)')
    train = interval_pivot(runs[runs.measure == 'train'], 'method', 'measure', 'value',
                           order=['original', *ordered(data)]).rename(index=name)
    return header('Distillation against the bias of pruning: the CPU-scale study', command(PROG, out, out),
                  f'`python -m benchmarks.study {STUDY}` then `{command(PROG, "runs/bias-study", out)}`', out) + [
        DESIGN, '', f'Intervals and verdicts: {RULE}. Differences are paired by seed (same original).', '',
        '## Results', '', *main_table(runs, result), '',
        "The seed's numbers (last column) are for ResNet32x4 on biased CIFAR-100, 100 classes, at 45%; the scale of "
        'CEV depends on the number of classes and on how rare errors are, so compare directions, not values.', '',
        CEV_NOTE, '',
        '## Findings', '', *in_words(result), '', *findings(result), '',
        '## Does similarity to the original go with less bias?', '',
        'Per layer, the SVCCA distance (1 - mean canonical correlation, first 1,000 test images) of each compressed '
        "run to its original, against that run's CEV, over every method and seed:", '', *svcca_correlation(result), '',
        '## The exported models', '',
        'The masked model physically slimmed (`algorithms/pruning/export.py`): pruned filters, their batch-norm '
        "channels and the next layers' input channels removed.", '', *export_table(data), '',
        '## Training time', '',
        "Wall-clock of each run's training as recorded; not a speed claim (the runs shared the machine with other "
        "work at times: compare the methods' costs on a quiet machine before relying on them).", '',
        *frame_table(train, interval_cell(0), 'method', lambda _: 'training wall-clock, s (mean [95% CI])'), '',
        '![per-class FPR/FNR changes](bias_scatter.png)', '']


def main(argv: Optional[list[str]] = None) -> int:
    return report_main(PROG, __doc__, build, argv,
                       'the study runs_root, or a folder with a committed copy of its records/')


if __name__ == '__main__':
    sys.exit(main())
