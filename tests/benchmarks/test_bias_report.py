"""The bias study's report from hand-made records: CEV / SDE / PIEs / accuracy against hand computations, verdicts
by paired intervals, the correlation of SVCCA distance with CEV, and regeneration from the copied records."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks.bias import report as bias_report

LABELS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] * 2  # 20 test images, two per class


def digits(values) -> str:
    return ''.join(str(int(v)) for v in values)


def write(root, method: str, seed: int, preds, svcca=None, export=None) -> None:
    rec = {'method': method, 'seed': seed, 'preds': digits(preds), 'labels': digits(LABELS),
           'accuracy': float(np.mean(np.array(preds) == np.array(LABELS))), 'train_wct_s': 10.0 + seed}
    if svcca is not None:
        rec['svcca'] = svcca
    if export is not None:
        rec['export'] = export
    (root / 'records').mkdir(parents=True, exist_ok=True)
    (root / 'records' / f'{method}-seed{seed}.json').write_text(json.dumps(rec))


def study(tmp_path):
    """Originals are perfect; 'prune' sends both images of class 6 (shirt) to class 0 on every seed, 'kd' one of
    them on seed 0 only."""
    perfect = list(LABELS)
    prune = list(LABELS)
    prune[6] = prune[16] = 0
    kd0 = list(LABELS)
    kd0[6] = 0
    for seed in (0, 1):
        write(tmp_path, 'original', seed, perfect)
        write(tmp_path, 'prune', seed, prune, svcca={'conv1': 0.90 - 0.01 * seed, 'fc1': 0.8})
        write(tmp_path, 'kd', seed, kd0 if seed == 0 else perfect, svcca={'conv1': 0.99 - 0.01 * seed, 'fc1': 0.8})
    return tmp_path


def expected_prune_cev() -> tuple[float, float]:
    """By hand, epsilon rule (a zero original rate -> eps = 1 / count of negatives or positives of the class).

    Original: every FPR and FNR is 0. Pruned: class 6 FNR = 2/2 = 1 (eps 1/2 -> dFNR = 100 * 1 / 0.5 = 200);
    class 0 FPR = 2/18 (eps 1/18 -> dFPR = 100 * (2/18) / (1/18) = 200); every other change 0.
    Points (dFPR, dFNR): class 0 (200, 0), class 6 (0, 200), 8 classes (0, 0); mean (20, 20).
    CEV, the seed's definition (mean over the 10 classes x 2 coordinates):
    (1/20) * [(180^2 + 20^2) + (20^2 + 180^2) + 8 * (20^2 + 20^2)] = (65600 + 6400) / 20 = 3600.
    SDE = (1/10) * (200 + 200) / sqrt(2) = 40 / sqrt(2).
    """
    return 3600.0, 40 / math.sqrt(2)


def test_report_numbers_match_hand_computation(tmp_path):
    root = study(tmp_path / 'study')
    out = tmp_path / 'out'
    assert bias_report.main([str(root), '--out', str(out)]) == 0
    result = bias_report.analyse(bias_report.load(out))
    cev, sde = expected_prune_cev()
    for seed in (0, 1):
        report = result['runs']['prune'][seed]['report']
        assert report.cev == pytest.approx(cev) and report.sde == pytest.approx(sde)
        assert report.accuracy[6] == 0.0 and report.accuracy_orig[6] == 1.0
    # KD seed 0: class 6 FNR 1/2 -> dFNR 100; class 0 FPR 1/18 -> dFPR 100: points (100, 0), (0, 100), mean (10, 10)
    # CEV = (1/20)[(90^2 + 10^2) * 2 + 8 * 200] = (16400 + 1600) / 20 = 900; seed 1 (perfect): 0
    assert result['runs']['kd'][0]['report'].cev == pytest.approx(900.0)
    assert result['runs']['kd'][1]['report'].cev == pytest.approx(0.0)
    # CEV of seed-averaged rates (the seed's way). Prune: both seeds alike, so the per-seed value, 3600. KD: class 6
    # FNR (1/2 + 0) / 2 = 1/4 -> dFNR 100 (1/4) / (1/2) = 50; class 0 FPR (1/18 + 0) / 2 -> dFPR 50: points (50, 0),
    # (0, 50), 8 x (0, 0), mean (5, 5): (1/20)[(45^2 + 5^2) * 2 + 8 * 50] = 4500 / 20 = 225, half the mean of the
    # per-seed CEVs ((900 + 0) / 2 = 450)
    assert result['seed_averaged_cev']['prune'] == pytest.approx(3600.0)
    assert result['seed_averaged_cev']['kd'] == pytest.approx(225.0)
    # PIEs: the pruned population's modal label for images 6 and 16 is 0, not 6: two PIEs; KD: seed 0 alone moves
    # image 6, a 1-1 tie broken to the smaller label (0): one modal PIE; 'any seed differs' also counts one, 'every
    # seed differs' (the seed's code's rule) none
    assert result['pies']['prune'] == {'modal': 2, 'all': 2, 'any': 2, 'seeds': 2}
    assert result['pies']['kd'] == {'modal': 1, 'all': 0, 'any': 1, 'seeds': 2}
    assert result['pies']['original'] == {'modal': 0, 'all': 0, 'any': 0, 'seeds': 2}  # identical originals
    text = (out / 'report.md').read_text()
    assert '| Pruning alone | 2 | 90.00 [90.00, 90.00]' in text  # accuracy 18/20 on both seeds
    assert '| 3600 [3600, 3600] | 3600 | 28.3 [28.3, 28.3] | 2 | 2 | 2 | 4237 / 51.1 |' in text
    kd_row = next(line for line in text.splitlines() if line.startswith('| KD | 2 |'))
    assert '| 450 [-5268, 6168] | 225 | 7.1 [-82.8, 96.9] | 1 | 0 | 1 | 1537 / 30.8 |' in kd_row
    head = next(line for line in text.splitlines() if line.startswith('| method |'))
    assert ("| CEV (mean of per-seed) | CEV of seed-averaged rates (the seed's way) | SDE | PIEs, modal (Hooker et "
            "al.) | PIEs, all seeds (the seed's code) | PIEs, any seed |") in head
    assert 'once, from the per-class rates averaged over its seeds' in ' '.join(text.split())
    assert (out / 'bias_scatter.png').stat().st_size > 1000
    # regenerates from the copy of the records it made
    again = tmp_path / 'again'
    assert bias_report.main([str(out), '--out', str(again)]) == 0
    assert (again / 'report.md').read_text().split('## Results')[1] == text.split('## Results')[1]


def test_verdicts_are_paired_by_seed(tmp_path):
    root = study(tmp_path / 'study')
    result = bias_report.analyse(bias_report.load(root))
    lines = bias_report.findings(result)
    cev_line = next(line for line in lines if line.startswith('| KD has a lower CEV'))
    # prune - KD per seed: 3600 - 900 = 2700, 3600 - 0 = 3600; mean 3150, t(0.975, 1) = 12.706, sd = 636.40
    half = 12.706 * np.std([2700, 3600], ddof=1) / math.sqrt(2)
    assert f'3150 [{3150 - half:.0f}, {3150 + half:.0f}]' in cev_line
    assert cev_line.endswith('| within noise |')  # two seeds this far apart: the interval straddles zero
    words = bias_report.in_words(result)[0]
    assert words.startswith('Pruning alone: mean CEV 3600. Every distillation method\'s mean is lower (KD 450)')
    assert '0 of 3 claims hold' in words


def test_svcca_distance_correlates_with_cev(tmp_path):
    root = study(tmp_path / 'study')
    result = bias_report.analyse(bias_report.load(root))
    rows = bias_report.svcca_correlation(result)
    conv1 = next(r for r in rows if r.startswith('| conv1 |'))
    # distances (1 - similarity): prune 0.10, 0.11 with CEV 3600, 3600; KD 0.01, 0.02 with CEV 900, 0
    xs, ys = [0.10, 0.11, 0.01, 0.02], [3600, 3600, 900, 0]
    r = float(np.corrcoef(xs, ys)[0, 1])
    assert f'| {r:.2f} [' in conv1 and r > 0.9
    assert bias_report.pearson([1, 2, 3], [1, 2, 3])[1] is None  # too few points for an interval


def test_missing_original_is_an_error(tmp_path, capsys):
    write(tmp_path, 'prune', 0, LABELS)
    assert bias_report.main([str(tmp_path), '--out', str(tmp_path / 'out')]) == 2
    assert 'no original' in capsys.readouterr().err
