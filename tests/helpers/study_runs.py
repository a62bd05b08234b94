"""A stand-in for the study engine's runner: records which runs it was asked to train (with their overrides) and
leaves the files a finished run leaves, so the engine's order, skipping and failures are tested without training."""

from __future__ import annotations

import json
from pathlib import Path


def finish(folder: Path, finished: bool = True) -> None:
    """A run folder whose ``summary.json`` says ``finished`` (the run-folder protocol's answer)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'summary.json').write_text(json.dumps({'finished': finished, 'train_wct_s': 1.0}))


class FakeRunner:
    """Records which runs were trained, with what overrides; writes a finished summary; can fail on a name."""

    def __init__(self, study, fail: tuple[str, ...] = ()) -> None:
        self.study, self.fail, self.calls = study, fail, []

    def __call__(self, run, overrides: list[str]) -> None:
        self.calls.append((run.name, overrides))
        if run.name in self.fail:
            raise RuntimeError('simulated failure')
        folder = Path(self.study.run_dir(run.name))
        if run.kind == 'train':
            finish(folder)
        else:
            (folder).mkdir(parents=True, exist_ok=True)
            (folder / 'manifest.json').write_text('{}')
            for i in range(len(run.teachers)):
                finish(folder / 'g1' / f'm{i}')
