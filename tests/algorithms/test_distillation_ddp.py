"""Trainable heads under DDP (2 ranks on CPU, gloo, through Composer's launcher): DDP ignores them, their gradients
are averaged by the term, training survives steps outside the window where the heads get no gradient, and every
rank ends with the same heads and the same model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / 'helpers' / 'ddp_heads_script.py'


def test_heads_stay_equal_across_two_ranks():
    composer = Path(sys.executable).with_name('composer')
    proc = subprocess.run([str(composer), '-n', '2', str(SCRIPT)], capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert 'heads equal across ranks: True model equal: True' in out, out[-3000:]
