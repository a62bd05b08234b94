"""What ties a teacher cache to a student's run: the replay of its train loader, the fingerprint of everything that
determines the views it sees, the epochs it needs, and the cached pool a recipe's ``teachers: [{cache: DIR}]``
builds.

The fingerprint is a flat JSON mapping compared field by field, in :data:`FINGERPRINT_FIELDS`' order; the first
field that differs is named in the one-line refusal. ``data_files`` identifies the data by its files' names, sizes
and the SHA-256 of their first MiB (not by their path: a cache made on another machine fits the same data).
A masked LM's tokenizer is identified by its files' content (or its hub name), with the block length, the masking
probability and the text column: they decide the blocks and the masks. Options that do not change the views
(``path``, workers, ``pin_memory``, ``indices``, ``download``) are left out.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from composer.core import Time, TimeUnit
from composer.utils import dist

from algorithms.common.time_strings import parse_time
from algorithms.distillation import CachedTeacher, CachedTeacherPool, TeacherCache, TeacherPool
from recipes.core.errors import ConfigError
from recipes.core.schema import validate
from recipes.core.teachers import TeacherRegistry, Teachers, TeacherSpec, build_teachers
from recipes.data.registry import DATASETS, build_dataloader, resolve_options

__all__ = ['FINGERPRINT_FIELDS', 'file_sha256', 'run_fingerprint', 'teacher_fingerprint', 'first_difference',
           'replay_samplers', 'needed_epochs', 'build_cached_pool', 'check_cache_fits', 'uses_cache']

#: The fields of a cache's fingerprint, in the order they are compared.
FINGERPRINT_FIELDS = ('teacher_sha256', 'teacher_model', 'dataset', 'data_files', 'split', 'skip', 'subset',
                      'downsample', 'downsample_seed', 'shuffle', 'drop_last', 'in_memory', 'augment', 'tokenizer',
                      'tokenizer_files', 'max_seq_len', 'mlm_probability', 'text_column', 'seed',
                      'global_train_batch_size', 'world_size')
# The options of an image or a masked-LM dataset that change what a student sees (None where a dataset has none).
_VIEW_OPTIONS = ('split', 'skip', 'subset', 'downsample', 'downsample_seed', 'shuffle', 'drop_last', 'in_memory',
                 'augment', 'max_seq_len', 'mlm_probability', 'text_column')


def file_sha256(path: str | Path, limit: Optional[int] = None) -> str:
    """SHA-256 of a file's content (its first ``limit`` bytes if given)."""
    digest, left = hashlib.sha256(), limit
    with open(path, 'rb') as f:
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            digest.update(chunk)
            if left is not None:
                left -= len(chunk)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def run_fingerprint(cfg: Mapping[str, Any], world_size: int) -> dict[str, Any]:
    """The data part of a fingerprint: the dataset, its files, its options that change the views, the seed, the
    global batch size and the number of ranks of the run ``cfg`` (a resolved recipe config)."""
    opts = resolve_options(cfg['train_loader'], 'train_loader')
    spec = DATASETS[opts['dataset']]
    files = {}
    for file in spec.files(Path(opts['path']), opts['split']):
        if Path(file).is_file():
            files[Path(file).name] = [Path(file).stat().st_size, file_sha256(file, limit=1 << 20)]
    out = {'dataset': opts['dataset'], 'data_files': files, **{k: opts.get(k) for k in _VIEW_OPTIONS},
           **_tokenizer_fingerprint(opts.get('tokenizer')),
           'seed': cfg['seed'], 'global_train_batch_size': cfg['global_train_batch_size'], 'world_size': world_size}
    return _jsonable(out)


def _tokenizer_fingerprint(tokenizer: Optional[str]) -> dict[str, Any]:
    """A masked LM's tokenizer by its files (name, size, SHA-256), or by its name when it is not a local path (a
    hub name); nothing for a dataset without one."""
    if tokenizer is None:
        return {}
    path = Path(tokenizer)
    files = sorted(p for p in (path.rglob('*') if path.is_dir() else [path]) if p.is_file())
    if not files:
        return {'tokenizer': str(tokenizer)}
    names = [str(p.relative_to(path)) if path.is_dir() else p.name for p in files]
    return {'tokenizer_files': {n: [p.stat().st_size, file_sha256(p)] for n, p in zip(names, files)}}


def teacher_fingerprint(checkpoints: Sequence[str], models: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The teacher part: the content hash of every checkpoint and the model config it was built with."""
    return _jsonable({'teacher_sha256': [file_sha256(c) for c in checkpoints], 'teacher_model': list(models)})


def first_difference(cached: Mapping[str, Any], run: Mapping[str, Any]) -> Optional[tuple[str, Any, Any]]:
    """The first field of :data:`FINGERPRINT_FIELDS` that ``run`` states and ``cached`` holds differently:
    ``(field, cached value, run value)``, or None when they agree."""
    cached, run = _jsonable(cached), _jsonable(run)
    for name in FINGERPRINT_FIELDS:
        if name in run and cached.get(name) != run[name]:
            return name, cached.get(name), run[name]
    return None


def replay_samplers(cfg: Mapping[str, Any], world_size: int = 1, device: torch.device | str = 'cpu',
                    key: str = 'train_loader') -> tuple[Any, list[Any]]:
    """The student's train data as its own builder makes it (``build_dataloader``: same examples, normalisation,
    crop and flip; for ``text_json`` the same blocks and masks), and one sampler per rank of a ``world_size``-rank
    run: ``(dataset, [EpochBatches])``. Set the epoch on a sampler and index the dataset with its keys to get the
    batches that rank will see."""
    from recipes.data.tensor_data import BatchLoader, EpochBatches
    from recipes.data.text.text_data import TokenBatches

    global_batch = cfg['global_train_batch_size']
    if global_batch % world_size:
        raise ConfigError(f'global_train_batch_size: {global_batch} does not split over {world_size} ranks')
    loader = build_dataloader(cfg[key], global_batch // world_size, key, seed=cfg['seed'], device=device)
    if not isinstance(loader, BatchLoader):
        raise ConfigError(f'{key}: a teacher cache replays in-memory loaders only (Fashion-MNIST, CIFAR with '
                          f'in_memory: true; text_json for a masked LM), whose order, crops, flips and masks come '
                          f'from (seed, epoch); {cfg[key]["dataset"]!r} here is not one')
    base = loader.sampler
    if isinstance(base, TokenBatches):
        samplers = [TokenBatches(loader.dataset, base.batch_size, shuffle=base.shuffle, drop_last=base.drop_last,
                                 seed=base.seed, world=world_size, rank=r) for r in range(world_size)]
    else:
        samplers = [EpochBatches(loader.dataset, base.batch_size, shuffle=base.shuffle, augment=base.augment,
                                 drop_last=base.drop_last, seed=base.seed, world=world_size, rank=r, flip=base.flip)
                    for r in range(world_size)]
    return loader.dataset, samplers


def _in_batches(time: Time, key: str, max_batches: Optional[float], batches_per_epoch: int,
                global_batch: int) -> float:
    if time.unit == TimeUnit.DURATION:
        assert max_batches is not None
        return float(time.value) * max_batches
    if time.unit == TimeUnit.EPOCH:
        return float(time.value) * batches_per_epoch
    if time.unit == TimeUnit.BATCH:
        return float(time.value)
    if time.unit == TimeUnit.SAMPLE:
        return float(time.value) / global_batch
    raise ConfigError(f'{key}: a teacher cache is read by epoch and batch; {time} cannot be converted')


def needed_epochs(max_duration: Any, start: Any, end: Any, batches_per_epoch: int, global_batch: int) -> range:
    """The epochs a distillation window ``[start, end)`` of a run of ``max_duration`` reads."""
    max_batches = _in_batches(parse_time(max_duration, 'max_duration'), 'max_duration', None, batches_per_epoch,
                              global_batch)
    first = _in_batches(parse_time(start, 'start'), 'start', max_batches, batches_per_epoch, global_batch)
    last = min(_in_batches(parse_time(end, 'end'), 'end', max_batches, batches_per_epoch, global_batch), max_batches)
    return range(int(first // batches_per_epoch), math.ceil(last / batches_per_epoch))


def uses_cache(specs: Any) -> bool:
    """Whether a YAML's teacher list names a cache."""
    return isinstance(specs, (list, tuple)) and any(isinstance(s, Mapping) and s.get('cache') is not None
                                                    for s in specs)


def _live_teachers(key: str, cache: TeacherCache, registry: TeacherRegistry) -> TeacherPool:
    """The teachers that made ``cache`` (from its manifest), loaded and checked against its fingerprint."""
    recorded = cache.manifest.get('teachers') or []
    if not recorded:
        raise ConfigError(f'{key}.verify_every: {cache.folder} records no teacher checkpoint to verify against')
    specs = [{'checkpoint': t['checkpoint'], 'model': t['model']} for t in recorded]
    built = build_teachers(specs, registry.default_model, key=f'{key}.cache (its teachers)')
    fp = cache.manifest['fingerprint']
    diff = first_difference(fp, teacher_fingerprint(built.checkpoints, [t['model'] for t in recorded]))
    if diff is not None:
        raise ConfigError(f'{key}.verify_every: the teacher checkpoints recorded by {cache.folder} changed since it '
                          f'was made ({diff[0]} differs)')
    return TeacherPool(built.models, mode='all')


def build_cached_pool(key: str, registry: TeacherRegistry, teachers: list, pool_mode: str = 'all',
                      k: Optional[int] = None, seed: int = 0) -> tuple[Teachers, CachedTeacherPool]:
    """The pool of ``teachers: [{cache: DIR, checkpoint?, verify_every?, wait_s?, score?}, ...]``: every cache
    opened and its fingerprint compared with the run's before anything trains (one ConfigError naming the first
    field that differs)."""
    cfg = registry.run_config
    if cfg is None:
        raise ConfigError(f'{key}: a teacher cache is checked against the run; build the run with '
                          'recipes.core.builders.prepare')
    run_fp = run_fingerprint(cfg, dist.get_world_size())
    members, paths, scores, verify = [], [], [], set()
    for i, raw in enumerate(teachers):
        item = f'{key}[{i}]'
        spec = validate({'checkpoint': raw} if isinstance(raw, str) else raw, TeacherSpec, item)
        if spec['cache'] is None:
            raise ConfigError(f'{item}: give every teacher of a pool as a cache or none (a pool reads caches or '
                              'runs teachers, not both)')
        try:
            cache = TeacherCache(spec['cache'], wait_s=spec['wait_s'])
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f'{item}.cache: {e}') from None
        fp = cache.manifest.get('fingerprint', {})
        wanted = dict(run_fp)
        if spec['checkpoint'] is not None:
            if not Path(spec['checkpoint']).is_file():
                raise ConfigError(f'{item}.checkpoint: teacher checkpoint not found: {spec["checkpoint"]}')
            wanted['teacher_sha256'] = [file_sha256(spec['checkpoint'])]
        diff = first_difference(fp, wanted)
        if diff is not None:
            raise ConfigError(f'{item}.cache: {spec["cache"]} was made for another run: {diff[0]} is {diff[1]!r} in '
                              f'the cache, {diff[2]!r} in this run')
        live = _live_teachers(item, cache, registry) if spec['verify_every'] is not None else None
        verify.add(spec['verify_every'])
        members.append(CachedTeacher(cache, live))
        paths.extend(t['checkpoint'] for t in cache.manifest.get('teachers') or [])
        scores.append(spec['score'])
    if len(verify) > 1:
        raise ConfigError(f'{key}: give every cache the same verify_every (got {sorted(verify, key=str)})')
    if all(s is None for s in scores):
        scores = None
    elif any(s is None for s in scores):
        raise ConfigError(f'{key}: give a score to every teacher or to none')
    try:
        pool = CachedTeacherPool(members, mode=pool_mode, k=k, scores=scores, seed=seed, rank=dist.get_global_rank(),
                                 verify_every=verify.pop())
    except ValueError as e:
        raise ConfigError(f'{key}: {e}') from None
    registry.checkpoints.extend(p for p in paths if p not in registry.checkpoints)
    return Teachers(models=list(pool.teachers), checkpoints=paths, scores=scores), pool


def check_cache_fits(key: str, registry: TeacherRegistry, pool: CachedTeacherPool, kd_loss: Any, temperature: float,
                     start: Any, end: Any) -> None:
    """A ConfigError unless every cache of ``pool`` covers the epochs KD's window reads, and stores what the loss
    needs (MSE: dense logits; KL on sparse targets: the same temperature)."""
    cfg = registry.run_config
    assert cfg is not None
    needed = needed_epochs(cfg['max_duration'], start, end, pool.batches_per_epoch, cfg['global_train_batch_size'])
    for i, cache in enumerate(pool.caches):
        item = f'{key}.teachers[{i}].cache'
        if cache.store != 'dense' and kd_loss == 'mse':
            raise ConfigError(f'{item}: kd_loss mse needs every logit; {cache.folder} stores {cache.store} targets '
                              '(use a dense cache, or kd_loss: kl)')
        if cache.store != 'dense' and abs(cache.temperature - float(temperature)) > 1e-12:
            raise ConfigError(f'{item}: {cache.folder} stores {cache.store} targets made at temperature '
                              f'{cache.temperature}, not {temperature}')
        present = set(cache.epochs(dist.get_global_rank()))
        if cache.wait_s:  # read beside its producer: the epochs it plans count
            present |= set(cache.manifest.get('epochs') or [])
        missing = [e for e in needed if e not in present]
        if missing:
            raise ConfigError(f'{item}: the run reads epochs {needed.start}-{needed.stop - 1} but {cache.folder} '
                              f'lacks epoch {missing[0]} (it holds {sorted(present)}): the run is longer than the '
                              'cache; produce the missing epochs with recipes/teacher_cache.py --epochs')
