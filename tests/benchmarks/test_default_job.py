"""The default-job measurement: finished seeds are read back (not retrained), the table's mean and interval are the
hand-computed ones, and the goal verdicts follow them."""
from __future__ import annotations

import json
import math

from benchmarks.measurements import default_job


def test_reads_finished_seeds_and_states_the_goal(tmp_path):
    for seed, (acc, secs) in {17: (0.921, 170.0), 1: (0.925, 175.0), 2: (0.923, 180.0)}.items():
        folder = tmp_path / f'seed{seed}'
        folder.mkdir()
        (folder / 'summary.json').write_text(json.dumps({
            'finished': True, 'final_metrics': {default_job.ACC: acc}, 'train_wct_s': secs, 'total_wct_s': secs + 9}))
    out = tmp_path / 'result.md'
    assert default_job.main(['--runs-root', str(tmp_path), '--out', str(out)]) == 0
    text = out.read_text()
    half = 4.303 * 0.2 / math.sqrt(3)  # accuracy in points: sd 0.2 over 92.1, 92.5, 92.3
    assert f'| mean [95% CI] | 92.30 [{92.3 - half:.2f}, {92.3 + half:.2f}] | 175.0 [' in text
    assert '| 17 | 92.10 | 170.0 | 179.0 |' in text
    assert 'test accuracy: met (mean); training in <= 180 s: met (mean)' in text


def test_validation_choice_runs_candidates_interleaved_on_the_carved_split(tmp_path, monkeypatch):
    acc = {('', 0): 0.919, ('optimizer.lr=0.2', 0): 0.923, ('', 1): 0.918, ('optimizer.lr=0.2', 1): 0.921}
    calls = []

    def fake(recipe, seed, folder, overrides):
        candidate = next((o for o in overrides if o.startswith('optimizer.')), '')
        calls.append((seed, candidate, overrides[:3], folder.parent.name))
        return {'final_metrics': {default_job.ACC: acc[(candidate, seed)]}, 'train_wct_s': 150.0}

    monkeypatch.setattr(default_job, 'run_seed', fake)
    out = tmp_path / 'choice.md'
    assert default_job.main(['--validation', '--candidates', '', 'optimizer.lr=0.2', '--seeds', '0', '1',
                             '--runs-root', str(tmp_path), '--out', str(out)]) == 0
    assert [(s, c) for s, c, _, _ in calls] == [(0, ''), (0, 'optimizer.lr=0.2'), (1, ''), (1, 'optimizer.lr=0.2')]
    assert all(v == default_job.VALIDATION for _, _, v, _ in calls)  # never the test split
    assert [f for _, _, _, f in calls[:2]] == ['recipe', 'optimizer.lr-0.2']
    text = out.read_text()
    half = 12.706 * math.sqrt(0.5) / math.sqrt(2)  # differences 0.4 and 0.3 points: sd sqrt(0.005), n = 2
    assert f'| `optimizer.lr=0.2` | 92.30 | 92.10 | 92.20 [' in text
    assert f'0.35 [{0.35 - half * 0.1:.2f}, {0.35 + half * 0.1:.2f}] (within noise)' in text
