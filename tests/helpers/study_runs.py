"""A stand-in for the study engine's runner: records which runs it was asked to train (with their overrides) and
leaves the files a finished run leaves (a teacher cache's: its manifest and shards), so the engine's order, skipping
and failures are tested without training; and the common overrides of the study tests that really train (2 batches
a run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def tiny_overrides(data: Path) -> dict[str, Any]:
    """A study's common overrides that make every training run 2 batches on the tiny Fashion-MNIST at ``data``."""
    return {'train_loader.path': str(data), 'eval_loader.path': str(data), 'train_loader.num_workers': 0,
            'eval_loader.num_workers': 0, 'global_train_batch_size': 16, 'global_eval_batch_size': 32,
            'max_duration': '2ba', 'eval_interval': '1ba', 'progress_bar': False, 'callbacks': {}}


def finish(folder: Path, finished: bool = True) -> None:
    """A run folder whose ``summary.json`` says ``finished`` (the run-folder protocol's answer)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'summary.json').write_text(json.dumps({'finished': finished, 'train_wct_s': 1.0}))


def finish_cache(folder: Path, epochs: tuple[int, ...] = (0, 1), ranks: int = 1) -> None:
    """A teacher cache folder as ``recipes/teacher_cache.py`` leaves it: a manifest planning ``epochs`` x ``ranks``
    shards, and every one of them (zeros of the right size: 2 rows of a dense 10-class cache)."""
    from algorithms.distillation.teacher_cache import (FORMAT, bytes_per_example, shard_fields, shard_name,
                                                       write_manifest)

    manifest = {'format': FORMAT, 'store': 'dense', 'k': None, 'temperature': 4.0, 'num_classes': 10,
                'fields': [list(f) for f in shard_fields('dense', 10)], 'batch_size': 2, 'rows_per_rank': 2,
                'world_size': ranks, 'epochs': list(epochs), 'fingerprint': {}}
    write_manifest(folder, manifest)
    for epoch in epochs:
        for rank in range(ranks):
            (folder / shard_name(epoch, rank)).write_bytes(bytes(2 * bytes_per_example('dense', 10)))


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
        elif run.kind == 'teacher_cache':
            finish_cache(folder)
        else:
            (folder).mkdir(parents=True, exist_ok=True)
            (folder / 'manifest.json').write_text('{}')
            for i in range(len(run.teachers)):
                finish(folder / 'g1' / f'm{i}')
