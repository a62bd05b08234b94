"""A pool of frozen teachers and the rule that picks which of them teach at each step.

Modes (Blakeney's "Iterated Runs" ensembles; the teachers' logits are averaged, ``z_t = mean_i z_i``):

* ``all``: every teacher, every step (cost O(N) forwards per step).
* ``greedy_topk``: the ``k`` teachers with the highest ``scores``, fixed for the whole run.
* ``random_k``: ``k`` teachers drawn without replacement at each step.
* ``random_1``: one teacher drawn at each step: the ensemble's benefit at O(1) teacher cost.

Draws come from the pool's own ``torch.Generator`` (seeded by ``seed``), never from the global RNG, so adding
distillation does not shift the data order or dropout masks, and ``state_dict()`` carries the generator so that a
resumed run continues the same sequence of teachers.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

__all__ = ['TeacherPool', 'POOL_MODES', 'teacher_forward', 'extract_logits']

POOL_MODES = ('all', 'greedy_topk', 'random_k', 'random_1')


def extract_logits(outputs: Any) -> torch.Tensor:
    """The logits in a model's output: a tensor, an object with ``.logits`` (HF ``ModelOutput``), a mapping with a
    ``'logits'`` key, or a tuple/list whose first element is the logits."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = getattr(outputs, 'logits', None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(outputs, Mapping) and isinstance(outputs.get('logits'), torch.Tensor):
        return outputs['logits']
    if isinstance(outputs, (tuple, list)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise TypeError(f'cannot find logits in a model output of type {type(outputs).__name__}: expected a tensor, '
                    'an object with .logits, a mapping with "logits", or a tuple whose first element is the logits')


def _is_composer_model(module: nn.Module) -> bool:
    try:
        from composer.models import ComposerModel
    except ImportError:  # pragma: no cover - the pool works without Composer too
        return False
    return isinstance(module, ComposerModel)


def _inputs_without_labels(batch: Mapping) -> dict:
    # A new dict: the caller's batch is never mutated.
    return {k: v for k, v in batch.items() if k != 'labels'}


def teacher_forward(teacher: nn.Module, batch: Any) -> torch.Tensor:
    """Run one teacher on a training batch and return its logits (no grad handling here; see ``TeacherPool``).

    Protocol:

    * a Composer model (``ComposerClassifier``, ``HuggingFaceModel``, ...) is called on the batch as the trainer
      calls the student, ``teacher(batch)`` (a mapping batch loses its ``labels`` key in a copy, so that a Hugging
      Face teacher does not compute a loss nobody uses);
    * a plain ``nn.Module`` gets ``batch[0]`` for a tuple/list batch ``(inputs, targets)``, the mapping's entries
      that its ``forward`` accepts as keyword arguments (``labels`` excluded) for a mapping batch, or the batch
      itself otherwise.

    The output may be a tensor, a Hugging Face ``ModelOutput``, a mapping or a tuple (see :func:`extract_logits`).
    """
    if _is_composer_model(teacher):
        outputs = teacher(_inputs_without_labels(batch) if isinstance(batch, Mapping) else batch)
    elif isinstance(batch, Mapping):
        inputs = _inputs_without_labels(batch)
        params = inspect.signature(teacher.forward).parameters.values()
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
            names = {p.name for p in params}
            inputs = {k: v for k, v in inputs.items() if k in names}
        outputs = teacher(**inputs)
    elif isinstance(batch, (tuple, list)):
        outputs = teacher(batch[0])
    else:
        outputs = teacher(batch)
    return extract_logits(outputs)


class TeacherPool:
    """Frozen teachers and a seeded rule that selects which of them teach at each step.

    Args:
        teachers: the teacher models (``nn.Module``; Composer models included). They are put in eval mode and
            frozen (``requires_grad_(False)``); the pool is not an ``nn.Module``, so owning it never registers the
            teachers as submodules of anything.
        mode: ``'all'``, ``'greedy_topk'``, ``'random_k'`` or ``'random_1'``.
        k: the number of teachers per step for ``greedy_topk`` and ``random_k`` (``1 <= k <= len(teachers)``).
        scores: one number per teacher, higher is better (e.g. validation accuracy); required by ``greedy_topk``.
        seed: seed of the pool's own generator (used by the random modes).

    Example:
        >>> import torch
        >>> pool = TeacherPool([torch.nn.Linear(4, 3) for _ in range(4)], mode='random_1', seed=0)
        >>> indices = pool.select()
        >>> pool.logits(torch.randn(2, 4), indices).shape
        torch.Size([2, 3])
    """

    def __init__(self,
                 teachers: Sequence[nn.Module],
                 mode: str = 'all',
                 k: Optional[int] = None,
                 scores: Optional[Sequence[float]] = None,
                 seed: int = 0):
        if isinstance(teachers, nn.Module):
            teachers = [teachers]
        teachers = list(teachers)
        if not teachers:
            raise ValueError('TeacherPool needs at least one teacher')
        for i, teacher in enumerate(teachers):
            if not isinstance(teacher, nn.Module):
                raise TypeError(f'teacher {i} is a {type(teacher).__name__}, not a torch.nn.Module')
        if mode not in POOL_MODES:
            raise ValueError(f'unknown pool mode {mode!r}; expected one of {", ".join(POOL_MODES)}')
        n = len(teachers)
        if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
            raise ValueError(f'k must be an integer, got {k!r}')
        if mode in ('greedy_topk', 'random_k'):
            if k is None:
                raise ValueError(f"mode {mode!r} needs k, the number of teachers per step")
            if not 1 <= k <= n:
                raise ValueError(f'k must be between 1 and the number of teachers ({n}), got {k}')
        elif mode == 'all' and k not in (None, n):
            raise ValueError(f"mode 'all' uses all {n} teachers; got k={k} (use mode='random_k' or 'greedy_topk')")
        elif mode == 'random_1' and k not in (None, 1):
            raise ValueError(f"mode 'random_1' uses one teacher per step; got k={k} (use mode='random_k')")
        if scores is not None:
            scores = [float(s) for s in scores]
            if len(scores) != n:
                raise ValueError(f'scores has {len(scores)} entries for {n} teachers; give one score per teacher')
            if not all(math.isfinite(s) for s in scores):
                raise ValueError(f'scores must be finite numbers, got {scores}')
        elif mode == 'greedy_topk':
            raise ValueError("mode 'greedy_topk' needs scores, one per teacher (higher is better)")

        self.teachers = teachers
        self.mode = mode
        self.k = {'all': n, 'random_1': 1}.get(mode, k)
        self.scores = scores
        self.seed = int(seed)
        self.generator = torch.Generator(device='cpu')
        self.generator.manual_seed(self.seed)
        for teacher in self.teachers:
            teacher.eval()
            teacher.requires_grad_(False)
        if mode == 'greedy_topk':
            assert scores is not None
            # Highest score first; ties go to the lower index (a stable sort).
            ranked = sorted(range(n), key=lambda i: -scores[i])
            self._fixed = sorted(ranked[:self.k])
        elif mode == 'all':
            self._fixed = list(range(n))
        else:
            self._fixed = None

    def __len__(self) -> int:
        return len(self.teachers)

    def __repr__(self) -> str:
        return f'TeacherPool(num_teachers={len(self)}, mode={self.mode!r}, k={self.k}, seed={self.seed})'

    def select(self) -> list[int]:
        """The (sorted) indices of the teachers for one step; the random modes advance the generator."""
        if self._fixed is not None:
            return list(self._fixed)
        if self.mode == 'random_1':
            return [int(torch.randint(len(self), (1,), generator=self.generator))]
        perm = torch.randperm(len(self), generator=self.generator)
        return sorted(int(i) for i in perm[:self.k])

    def to(self, device: Union[str, torch.device]) -> 'TeacherPool':
        """Move every teacher to ``device``."""
        for teacher in self.teachers:
            teacher.to(device)
        return self

    def logits(self, batch: Any, indices: Optional[Sequence[int]] = None) -> torch.Tensor:
        """The mean (float32) of the selected teachers' logits on ``batch``, in eval mode, without gradient.

        ``indices`` defaults to a fresh :meth:`select`. See :func:`teacher_forward` for the batch protocol.
        """
        if indices is None:
            indices = self.select()
        if len(indices) == 0:
            raise ValueError('no teacher selected')
        total = None
        with torch.no_grad():
            for i in indices:
                teacher = self.teachers[i]
                if teacher.training:  # something (a user, a callback) switched it back to train mode
                    teacher.eval()
                logits = teacher_forward(teacher, batch).float()
                total = logits if total is None else total + logits
        assert total is not None
        return total / len(indices)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to resume the same sequence of teachers (the teachers' weights are not in it)."""
        return {
            'mode': self.mode,
            'k': self.k,
            'num_teachers': len(self),
            'seed': self.seed,
            'generator': self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator (and so the sequence of draws) saved by :meth:`state_dict`."""
        if state.get('num_teachers') != len(self) or state.get('mode') != self.mode or state.get('k') != self.k:
            warnings.warn(f"restoring the sampler of a pool saved with mode={state.get('mode')!r}, "
                          f"k={state.get('k')}, {state.get('num_teachers')} teachers into {self!r}: "
                          'the sequence of teachers will not match the saved run')
        self.generator.set_state(state['generator'])
