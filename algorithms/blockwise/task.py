"""One parallel blockwise-distillation task: build the teacher prefix up to a layer, train the layer's
replacement block on it, score the spliced teacher every few epochs, keep the best weights, and write them.

A :class:`BlockTask` is a plain picklable description (it travels to a Dask worker); the teacher's architecture and
the data come as picklable callables (module-level functions or ``functools.partial``), so this module knows
nothing of recipes or datasets. :func:`run_block_task` writes ``<out_dir>/<layer>.pt`` (the block's weights and a
summary, ``weights_only``-loadable) atomically at the end; a task whose file exists returns its stored summary at
once (if it was trained with the same block, seed, checkpoint and settings; otherwise it is trained again), so a
rerun after an interruption trains only the blocks that had not finished.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..distillation.teachers import load_teacher_weights
from .assembly import spliced
from .blocks import build_block
from .cluster import worker_address
from .layers import ReplaceableLayer, module_macs
from .local_training import LocalTrainingSettings, fit_block
from .phases import usage, usage_delta
from .prefix import TeacherPrefix, materialised_parameters

__all__ = ['BlockTask', 'run_block_task', 'load_block', 'accuracy', 'block_path']

log = logging.getLogger(__name__)

#: ``data() -> (train batches, validation batches)``: iterables of ``(x, y, ...)``, the first re-iterable per epoch.
DataFactory = Callable[[], tuple[Iterable[Any], Iterable[Any]]]


@dataclass
class BlockTask:
    """Everything one task needs.

    Attributes:
        layer: the layer to replace.
        block: the replacement block's name (:data:`~algorithms.blockwise.blocks.BLOCKS`).
        settings: local training settings.
        build_teacher: no-argument callable returning the teacher's architecture (untrained).
        checkpoint: the trained teacher's weights.
        input_shape: ``(C, H, W)`` of one example.
        data: the data factory.
        out_dir: where the result file goes.
        reference: the teacher's validation accuracy (percent), the acceptance threshold's reference.
        seed: the task's seed is ``seed + layer.index`` (weights of the block and data order).
        device: ``None`` = CUDA if available, else CPU.
    """

    layer: ReplaceableLayer
    block: str
    settings: LocalTrainingSettings
    build_teacher: Callable[[], nn.Module]
    checkpoint: str
    input_shape: tuple[int, ...]
    data: DataFactory
    out_dir: str
    reference: Optional[float] = None
    seed: int = 0
    device: Optional[str] = None

    @property
    def key(self) -> str:
        return self.layer.conv


def block_path(out_dir: str | os.PathLike, layer: str) -> Path:
    return Path(out_dir) / f'{layer}.pt'


def accuracy(model: nn.Module, batches: Iterable[Any], device: torch.device) -> float:
    """Top-1 accuracy in percent of ``model`` (eval mode, no gradients) over ``batches`` of ``(x, y, ...)``."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in batches:
            x, y = batch[0].to(device), batch[1].to(device)
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.numel()
    if total == 0:
        raise ValueError('accuracy: no examples')
    return 100.0 * correct / total


def load_block(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, summary)`` of a finished task's file (``weights_only=True``)."""
    obj = torch.load(path, map_location='cpu', weights_only=True)
    return obj['state_dict'], obj['summary']


def _device(name: Optional[str]) -> torch.device:
    return torch.device(name or ('cuda' if torch.cuda.is_available() else 'cpu'))


def run_block_task(task: BlockTask) -> dict[str, Any]:
    """Run ``task`` (or return the stored summary of a finished one); returns its summary."""
    path = block_path(task.out_dir, task.key)
    config = {'block': task.block, 'seed': task.seed, 'checkpoint': str(task.checkpoint),
              'settings': dataclasses.asdict(task.settings)}
    if path.is_file():
        stored = load_block(path)[1]
        if stored.get('config') == config:
            return {**stored, 'status': 'finished earlier'}
        log.warning('%s: the stored block was trained with other settings (%s); training it again', task.key,
                    stored.get('config'))
    started, before = time.time(), usage()
    torch.manual_seed(task.seed + task.layer.index)
    device = _device(task.device)
    prefix = TeacherPrefix(task.build_teacher, task.layer, task.checkpoint, task.input_shape, device)
    conv = prefix.teacher.get_submodule(task.layer.conv)
    block = build_block(task.block, conv)
    train, val = task.data()

    def pairs(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return prefix(batch[0].to(device, non_blocking=True))

    def evaluate(candidate: nn.Module) -> float:
        teacher = load_teacher_weights(task.build_teacher(), task.checkpoint).to(device)  # only while scoring
        with spliced(teacher, task.layer, candidate):
            return accuracy(teacher, val, device)

    setup_s = time.perf_counter() - before['wall_s']
    result = fit_block(task.key, block, lambda: train, pairs, task.settings, evaluate, task.reference)
    summary = {
        **result.summary(), 'block': task.block, 'worker': worker_address(), 'pid': os.getpid(),
        'device': str(device), 'started': started, 'prefix_params': materialised_parameters(prefix),
        'layer_macs': task.layer.macs, 'layer_params': task.layer.params,
        'block_macs': module_macs(block, task.layer.in_shape), 'block_params': sum(p.numel() for p in block.parameters()),
        'status': 'trained', 'config': config, 'setup_s': round(setup_s, 4), 'usage': usage_delta(before, usage()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    torch.save({'state_dict': {k: v.cpu() for k, v in result.state_dict.items()}, 'summary': summary}, tmp)
    os.replace(tmp, path)  # atomic: a killed task leaves no half-written result
    log.info('%s: %s (best %.2f%% at epoch %d, teacher %s) in %.1f s', task.key,
             'accepted' if result.accepted else 'rejected', result.best_accuracy or float('nan'), result.best_epoch,
             f'{task.reference:.2f}%' if task.reference is not None else '?', result.seconds)
    return summary
