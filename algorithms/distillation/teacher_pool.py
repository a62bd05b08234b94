"""A pool of frozen teachers and the rule that picks which of them teach at each step.

Modes (Blakeney's "Iterated Runs" ensembles; the teachers' logits are averaged, ``z_t = mean_i z_i``):

* ``all``: every teacher, every step (cost O(N) forwards per step).
* ``greedy_topk``: the ``k`` teachers with the highest ``scores``, fixed for the whole run.
* ``random_k``: ``k`` teachers drawn without replacement at each step.
* ``random_1``: one teacher drawn at each step: the ensemble's benefit at O(1) teacher cost.

Draws come from the pool's own ``torch.Generator`` (seeded by ``seed``), never from the global RNG, so adding
distillation does not shift the data order or dropout masks, and ``state_dict()`` carries the generator so that a
resumed run continues the same sequence of teachers.

Several distillation algorithms may share one pool (the recipes do when they name the same teachers): the pool
draws once per step (:meth:`TeacherPool.selection`) and runs the selected teachers once per microbatch
(:meth:`TeacherPool.forward` caches the last result), capturing every feature any of its users asked for
(:meth:`TeacherPool.request_features`).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping
from typing import Any, Optional, Sequence

import torch
from torch import nn

from ..common.feature_taps import FeatureTaps
from .model_io import ModelIO, extract_logits

__all__ = ['TeacherPool', 'POOL_MODES', 'teacher_forward']

POOL_MODES = ('all', 'greedy_topk', 'random_k', 'random_1')


def _is_composer_model(module: nn.Module) -> bool:
    try:
        from composer.models import ComposerModel
    except ImportError:  # pragma: no cover - the pool works without Composer too
        return False
    return isinstance(module, ComposerModel)


def _inputs_without_labels(batch: Mapping) -> dict:
    # A new dict: the caller's batch is never mutated.
    return {k: v for k, v in batch.items() if k != 'labels'}


def teacher_forward(teacher: nn.Module, batch: Any) -> Any:
    """Run one teacher on a training batch and return its logits (no grad handling here; see ``TeacherPool``).

    Protocol:

    * a Composer model (``ComposerClassifier``, ``HuggingFaceModel``, ...) is called on the batch as the trainer
      calls the student, ``teacher(batch)`` (a mapping batch loses its ``labels`` key in a copy, so that a Hugging
      Face teacher does not compute a loss nobody uses, unless the model sets ``forward_uses_labels = True``: a
      masked LM that predicts only the labelled positions needs them);
    * a plain ``nn.Module`` gets ``batch[0]`` for a tuple/list batch ``(inputs, targets)``, the mapping's entries
      that its ``forward`` accepts as keyword arguments (``labels`` excluded) for a mapping batch, or the batch
      itself otherwise.

    Returns the teacher's raw output: a tensor, a Hugging Face ``ModelOutput``, a mapping or a tuple (see
    :func:`~algorithms.distillation.extract_logits`).
    """
    if _is_composer_model(teacher):
        keep = getattr(teacher, 'forward_uses_labels', False) or not isinstance(batch, Mapping)
        outputs = teacher(batch if keep else _inputs_without_labels(batch))
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
    return outputs


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
        self.forwards = 0  # teacher forward passes actually run (shared by every user of the pool)
        self._step: Optional[int] = None
        self._indices: list[int] = []
        self._taps: list[FeatureTaps] = []
        self._feature_names: list[str] = []
        self._cache: Optional[tuple[Any, ModelIO]] = None

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

    def request_features(self, names: Sequence[str]) -> None:
        """Tap modules ``names`` (dotted paths) on every teacher, on top of those already tapped; a ``KeyError``
        names a module that a teacher lacks."""
        wanted = list(dict.fromkeys([*self._feature_names, *names]))
        if wanted == self._feature_names:
            return
        taps = [FeatureTaps(t, wanted, detach=True) for t in self.teachers]  # resolves every name first
        for old in self._taps:
            old.remove()
        self._taps, self._feature_names = taps, wanted
        self._cache = None

    @property
    def feature_names(self) -> list[str]:
        return list(self._feature_names)

    def selection(self, step: int) -> list[int]:
        """The teachers of optimizer step ``step``: drawn once (by :meth:`select`) and shared by every microbatch of
        the step and by every algorithm that uses this pool."""
        if self._step != step:
            self._indices, self._step = self.select(), step
        return list(self._indices)

    def forward(self, batch: Any, indices: Optional[Sequence[int]] = None, step: Optional[int] = None) -> ModelIO:
        """Run the selected teachers on ``batch`` (eval mode, no gradient) and average what they produced.

        Returns a :class:`ModelIO` whose ``outputs`` are the mean float32 logits and whose ``features``/``inputs``
        are the float32 means of the tapped modules' outputs/inputs. With ``step`` given, the result is cached: a
        second call for the same step, batch object and teachers (another algorithm sharing the pool) costs nothing.
        ``indices`` defaults to a fresh :meth:`select`. See :func:`teacher_forward` for the batch protocol.
        """
        if indices is None:
            indices = self.select()
        indices = tuple(int(i) for i in indices)
        if len(indices) == 0:
            raise ValueError('no teacher selected')
        key = (step, id(batch), indices)
        if step is not None and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        sums: dict[str, Any] = {'logits': None}
        with torch.no_grad():
            for i in indices:
                teacher = self.teachers[i]
                if teacher.training:  # something (a user, a callback) switched it back to train mode
                    teacher.eval()
                taps = self._taps[i] if self._taps else None
                if taps is not None:
                    taps.clear()
                logits = extract_logits(teacher_forward(teacher, batch)).float()
                self.forwards += 1
                _accumulate(sums, 'logits', logits)
                if taps is not None:
                    for name in self._feature_names:
                        _accumulate(sums, f'out:{name}', taps.outputs.get(name))
                        _accumulate(sums, f'in:{name}', taps.inputs.get(name))
        n = len(indices)
        mean = {k: (v / n if isinstance(v, torch.Tensor) else v) for k, v in sums.items()}
        io = ModelIO(outputs=mean.pop('logits'),
                     features={k[4:]: v for k, v in mean.items() if k.startswith('out:') and v is not None},
                     inputs={k[3:]: v for k, v in mean.items() if k.startswith('in:') and v is not None})
        if step is not None:
            self._cache = (key, io)
        return io

    def forwards_for(self, indices: Sequence[int]) -> int:
        """Teacher forward passes that serving the selection ``indices`` costs: one per selected teacher (a pool
        that reads its teachers' outputs instead, :class:`~.teacher_cache.CachedTeacherPool`, runs none)."""
        return len(indices)

    def reads_for(self, indices: Sequence[int]) -> int:
        """Cache reads that serving the selection ``indices`` costs: none here (one per selected cache in a
        :class:`~.teacher_cache.CachedTeacherPool`)."""
        return 0

    def logits(self, batch: Any, indices: Optional[Sequence[int]] = None) -> torch.Tensor:
        """The mean (float32) of the selected teachers' logits on ``batch``, in eval mode, without gradient."""
        return self.forward(batch, indices).outputs

    def prepare(self, device: Any, channels_last: bool = False) -> None:
        """Move every teacher to Composer ``device`` (``state.device``), in channels-last if the student is, eval."""
        for teacher in self.teachers:
            device.module_to_device(teacher)
            if channels_last:
                teacher.to(memory_format=torch.channels_last)
            teacher.eval()

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
        self._step, self._cache = None, None


def _accumulate(sums: dict[str, Any], key: str, value: Any) -> None:
    """Add ``value`` (a tensor, as float32) into ``sums[key]``; non-tensors (or a missing capture) are kept as None."""
    if not isinstance(value, torch.Tensor):
        sums.setdefault(key, None)
        return
    value = value.float()
    sums[key] = value if sums.get(key) is None else sums[key] + value
