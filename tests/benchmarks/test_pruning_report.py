"""The pruning study's report: intervals and verdicts against hand computations, tables and findings from
hand-made analysis records."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.pruning import report as pruning_report
from benchmarks.core.intervals import mean_interval, verdict


def test_mean_interval_against_hand_computation():
    iv = mean_interval([1.0, 2.0, 3.0])  # sd 1, t(0.975, 2) = 4.303
    assert iv.mean == 2.0 and iv.n == 3
    assert iv.lo == pytest.approx(2 - 4.303 / math.sqrt(3)) and iv.hi == pytest.approx(2 + 4.303 / math.sqrt(3))
    single = mean_interval([0.7])
    assert (single.lo, single.hi) == (None, None) and single.fmt() == '0.70 (1 run)'


@pytest.mark.parametrize('values, positive, expected', [
    ([0.2, 0.3, 0.25], True, 'holds'),
    ([0.2, 0.3, 0.25], False, 'does not hold'),
    ([-0.2, 0.3, 0.1], True, 'within noise'),
    ([0.4], True, 'within noise'),
])
def test_verdict_by_interval(values, positive, expected):
    assert verdict(mean_interval(values), positive) == expected


def analysis(seed_shift: float) -> dict:
    """Two sparsities x three methods; similarity falls with sparsity; re-init/random far from the original."""
    stages = []
    for method, base_acc, base_sim in (('magnitude', 0.90, 0.9), ('reinit', 0.88, 0.3), ('random', 0.87, 0.25)):
        for sparsity, drop in ((0.3, 0.0), (0.9, 0.2)):
            stages.append({'method': method, 'sparsity': sparsity, 'accuracy': base_acc - drop / 4 + seed_shift,
                           'layer_sparsity': {'conv1': sparsity, 'fc1': sparsity}, 'params': [100, 40],
                           'macs': [1000, 500], 'similarity': {'conv1': base_sim - drop + seed_shift,
                                                               'fc2': base_sim - drop / 2 + seed_shift}})
    epochs = [{'method': 'reinit', 'sparsity': 0.9, 'epoch': 1, 'similarity': {'conv1': 0.1, 'fc2': 0.6 + seed_shift}}]
    return {'layers': ['conv1', 'fc2'], 'images': 100, 'similarity': {'conv_mode': 'pooled', 'keep': 0.99,
            'max_datapoints': 500}, 'stages': stages, 'epochs': epochs, 'original_accuracy': 0.91 + seed_shift,
            'original': {'params': [100, 100], 'macs': [1000, 1000]},
            'latency': {'batch': 128, 'sparsity': 0.9, 'dense_ms': 5.0, 'masked_ms': 5.1}}


def test_report_tables_and_findings(tmp_path):
    root = tmp_path / 'runs'
    for k, shift in enumerate((0.0, 0.01, -0.01)):
        folder = root / 'convnet' / f'seed{k}'
        folder.mkdir(parents=True)
        (folder / 'analysis.json').write_text(json.dumps(analysis(shift)))
    out = tmp_path / 'report'
    assert pruning_report.main([str(root), '--out', str(out)]) == 0
    text = (out / 'report.md').read_text()
    # magnitude at 30%: accuracies 0.90, 0.91, 0.89 -> mean 90.00, sd 1 point, half-width 4.303/sqrt(3) = 2.48
    assert '| Magnitude (prune + fine-tune) | 90.00 [87.52, 92.48] | 85.00 [82.52, 87.48] |' in text
    assert '**Similarity falls with sparsity**' in text and '-> **holds**' in text
    assert 'Re-init (masks kept, from scratch) shares < 50% median similarity' in text
    assert 'Layers near the output re-converge first' in text
    assert (out / 'runs' / 'convnet' / 'seed0' / 'analysis.json').is_file()
    again = tmp_path / 'again'
    assert pruning_report.main([str(out / 'runs'), '--out', str(again)]) == 0  # regenerates from the copy
    assert (again / 'report.md').read_text().split('\n', 3)[3] == text.split('\n', 3)[3]
