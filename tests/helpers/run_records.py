"""Synthetic run folders as ``recipes/train.py`` leaves them, for the report tests (hand-computed answers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import yaml

ACC = 'eval/MulticlassAccuracy'
ORIGINAL_ROOT = 'runs/study-syn'  # what the configs say: the records are read from elsewhere (tmp_path)


def ckpt(name: str) -> str:
    return f'{ORIGINAL_ROOT}/{name}/checkpoints/latest-rank0.pt'


def write_run(root: Path, key: str, curve: list[tuple[float, float]], *, duration: str = '2ep', lr: float = 0.1,
              teachers: Optional[list[Any]] = None, kd: Optional[dict[str, Any]] = None,
              train_s: Optional[float] = None, finished: bool = True) -> None:
    """A run folder as recipes/train.py leaves it (config.yaml, record.jsonl, summary.json)."""
    folder = root / key
    folder.mkdir(parents=True)
    config: dict[str, Any] = {'run_name': key, 'run_dir': f'{ORIGINAL_ROOT}/{key}', 'max_duration': duration,
                              'optimizer': {'name': 'decoupled_sgdw', 'lr': lr}, 'algorithms': {}}
    if teachers is not None:
        config['algorithms']['knowledge_distillation'] = {'teachers': teachers, 'kd_loss': 'kl', **(kd or {})}
    (folder / 'config.yaml').write_text(yaml.safe_dump(config))
    lines = [{'step': i + 1, 'epoch': i + 1, 'samples': 0, 'tokens': 0, 'train_wct_s': t, 'total_wct_s': t + 1,
              'eval_wct_s': 1.0, 'cpu_s': 2 * t, 'metrics': {ACC: acc, 'eval/CrossEntropy': 1 - acc}}
             for i, (t, acc) in enumerate(curve)]
    (folder / 'record.jsonl').write_text(''.join(json.dumps(x) + '\n' for x in lines))
    if finished:
        summary = {**lines[-1], 'train_wct_s': train_s if train_s is not None else curve[-1][0], 'finished': True,
                   'final_metrics': lines[-1]['metrics'], 'n_evals': len(lines)}
        (folder / 'summary.json').write_text(json.dumps(summary))
