"""The default-job measurement: finished seeds are read back (not retrained), the table's mean and interval are the
hand-computed ones, and the goal verdicts follow them."""
from __future__ import annotations

import json
import math

from benchmarks import default_job


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
