"""Produce a teacher cache: a teacher's outputs for exactly the views a student recipe will see, once.

    python recipes/teacher_cache.py -f yamls/fashion_mnist/kd_kl.yaml \\
        --teacher runs/fmnist-teacher-lr0.1/checkpoints/latest-rank0.pt --out caches/lr0.1 \\
        [--epochs 0-14] [--store dense|topk|sampled] [--k K] [--temperature T] [--world-size N]
        [--dask local:N | gpus:N | tcp://HOST:PORT] [key=value ...]

It replays the recipe's train loader (its own builders: dataset, skip/subset/downsample, seed, batch size, crop
and flip drawn from (seed, epoch), the rank split of ``--world-size`` ranks; for a masked LM's ``text_json``, its
blocks and masks), runs the teacher in inference mode (eval, channels-last, bf16 autocast on a GPU that supports
it, fp32 on CPU) and writes one shard per (epoch, rank) under ``--out`` (format:
``algorithms/distillation/cache_format.py``): a row per example, or for a masked LM a row per masked position
(``--store topk --k 64`` suits a vocabulary). A teacher's model is the one the recipe's ``teachers:`` list gives its
checkpoint (``{checkpoint: ..., model: {...}}``), else the student's; ``--teacher-model JSON`` overrides both::

    python recipes/teacher_cache.py -f yamls/sotu/tiny_bert_kd_4l.yaml --store topk --k 64 \\
        --teacher runs/study-bert-teachers/sotu-bert-4l-teacher/checkpoints/latest-rank0.pt --out caches/bert4l

Several ``--teacher`` make a pool whose
outputs are averaged (the ``all`` ensemble, read at the cost of one). Resumable: a finished shard is skipped, so
running the same command again completes the cache. ``--dask`` makes each missing shard a task on a Dask cluster
(``algorithms/blockwise/cluster.py``'s: local worker processes, one GPU each, or a running scheduler whose workers
share the checkout, data and ``--out``). Train from it with, in the student recipe::

    algorithms:
      knowledge_distillation:
        teachers: [{cache: caches/lr0.1}]      # optional: verify_every: 100 (recomputes the teacher every 100 steps)

The manifest records what production cost (``production``: :func:`production_record`): every session that wrote
shards, with its wall-clock, the shards and examples it wrote, where (``here`` or the ``--dask`` cluster) and its
machine (``algorithms.callbacks.machine.machine_info``), and the totals over the sessions: ``seconds`` (the producer
command's wall-clock, start to end of its shards, summed over resumed sessions: what the cache cost a user in
time, what the KD report amortises over its readers) and ``shard_seconds`` (each shard's own time, summed over the
shards wherever they ran: with ``--dask`` the workers' compute, more than ``seconds`` when they run in parallel).

A bad input is one ``error:`` line and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python recipes/teacher_cache.py` from a checkout
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from algorithms.callbacks.machine import machine_info  # noqa: E402
from algorithms.distillation import TeacherCache, TeacherPool  # noqa: E402
from algorithms.distillation.cache_format import (  # noqa: E402
    FORMAT, MANIFEST, STORES, ShardWriter, batch_inputs, bytes_per_example, bytes_per_row, encode_rows, masked_counts,
    masked_rows, shard_fields, shard_name, write_manifest)
from recipes.core.cache_replay import needed_epochs, replay_samplers, run_fingerprint, teacher_fingerprint  # noqa: E402
from recipes.core.cli import LOG_FORMAT  # noqa: E402
from recipes.core.config import load_config, validate_top_level  # noqa: E402
from recipes.core.errors import ConfigError  # noqa: E402
from recipes.core.teachers import build_teachers  # noqa: E402
from recipes.data.registry import check_data  # noqa: E402

log = logging.getLogger('recipes.teacher_cache')
DEFAULT_K = {'topk': 5, 'sampled': 12}  # FKD's top-5; Random-Sampling KD's 12 samples


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='recipes/teacher_cache.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-f', '--file', required=True, help='the student recipe (YAML)')
    parser.add_argument('--teacher', action='append', required=True, metavar='CKPT',
                        help='teacher checkpoint; repeat for a pool whose outputs are averaged')
    parser.add_argument('--teacher-model', default=None, metavar='JSON',
                        help="the teachers' model section as JSON (default: the model the recipe's teachers list "
                        "gives that checkpoint, else the recipe's model)")
    parser.add_argument('--out', required=True, help='the cache folder')
    parser.add_argument('--epochs', default=None, help="e.g. 0-14 or 0,3,5-7 (default: every epoch of the recipe)")
    parser.add_argument('--store', default='dense', help='dense | topk | sampled (default: dense)')
    parser.add_argument('--k', type=int, default=None, help='top-k entries or samples per row (5 / 12)')
    parser.add_argument('--temperature', type=float, default=None,
                        help="T of the top-k tail mass and of the samples (default: the recipe's KD T, else 4)")
    parser.add_argument('--sample-power', type=float, default=1.0,
                        help='sampled: proposal p_t^power (1: the teacher itself)')
    parser.add_argument('--world-size', type=int, default=1, help='ranks the student will train on')
    parser.add_argument('--chunk', type=int, default=1, help="loader batches per teacher forward (default 1)")
    parser.add_argument('--device', default='auto', help='auto | cpu | gpu')
    parser.add_argument('--dask', default=None, metavar='local:N|gpus:N|tcp://HOST:PORT',
                        help='produce the shards as Dask tasks (one per epoch and rank) on these workers')
    parser.add_argument('overrides', nargs='*', help='dotted.key=value pairs merged over the recipe')
    return parser.parse_args(None if argv is None else list(argv))


def parse_epochs(text: str) -> list[int]:
    """``'0-14'``, ``'3'``, ``'0,2,5-7'`` -> sorted epochs; a ConfigError for anything else."""
    epochs: set[int] = set()
    try:
        for part in text.split(','):
            lo, _, hi = part.strip().partition('-')
            a, b = int(lo), int(hi) if hi else int(lo)
            if a < 0 or b < a:
                raise ValueError
            epochs.update(range(a, b + 1))
    except ValueError:
        raise ConfigError(f"--epochs: expected epochs like 0-14 or 0,3,5-7, got {text!r}") from None
    return sorted(epochs)


@dataclass
class Job:
    """A checked production: what to write where, nothing written yet."""

    out: Path
    manifest: dict[str, Any]
    epochs: list[int]
    dataset: Any
    samplers: list[Any]
    pool: TeacherPool
    device: torch.device
    autocast: bool
    chunk: int
    power: float


def _device(name: str) -> torch.device:
    if name not in ('auto', 'cpu', 'gpu'):
        raise ConfigError(f'--device: expected auto, cpu or gpu, got {name!r}')
    if name == 'gpu' or (name == 'auto' and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError('--device gpu: no CUDA device here')
        return torch.device('cuda')
    return torch.device('cpu')


def teacher_logits(job_pool: TeacherPool, batch: Any, autocast: bool) -> torch.Tensor:
    """The pool's mean logits on one chunk, in inference mode (bf16 autocast when asked)."""
    x = batch_inputs(batch)
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        return job_pool.forward(batch).outputs.float()


def row_unit(batch: Any) -> str:
    """``masked`` for a masked LM's batch (a mapping with labels of the inputs' shape), else ``examples``."""
    if isinstance(batch, dict) and isinstance(batch.get('labels'), torch.Tensor) and \
            batch['labels'].shape == batch_inputs(batch).shape and batch['labels'].dim() == 2:
        return 'masked'
    return 'examples'


def cat_batches(batches: Sequence[Any]) -> Any:
    """Several loader batches as one (tuples element by element, mappings key by key)."""
    if len(batches) == 1:
        return batches[0]
    if isinstance(batches[0], dict):
        return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}
    return tuple(torch.cat([b[i] for b in batches]) for i in range(len(batches[0])))


def check_options(args: argparse.Namespace) -> tuple[dict[str, Any], Optional[int], float]:
    """The checks that need neither the teachers nor the data: the recipe with its overrides, the storage, ``--k``,
    the temperature, ``--chunk``, ``--epochs`` and ``--teacher-model``; ``(config, k, temperature)``."""
    cfg = load_config(args.file, args.overrides)
    if args.world_size < 1:
        raise ConfigError(f'--world-size: expected an integer >= 1, got {args.world_size}')
    validate_top_level(cfg, args.world_size)
    if args.store not in STORES:
        raise ConfigError(f'--store: expected one of {", ".join(STORES)}, got {args.store!r}')
    if args.store == 'dense' and args.k is not None:
        raise ConfigError('--k: a dense cache stores every logit; --k is for --store topk or sampled')
    k = args.k if args.k is not None or args.store == 'dense' else DEFAULT_K[args.store]
    kd = (cfg.get('algorithms') or {}).get('knowledge_distillation') or {}
    temperature = args.temperature if args.temperature is not None else float(kd.get('temperature', 4.0))
    if not temperature > 0:
        raise ConfigError(f'--temperature: expected a number > 0, got {temperature}')
    if args.chunk < 1:
        raise ConfigError(f'--chunk: expected an integer >= 1, got {args.chunk}')
    if args.epochs is not None:
        parse_epochs(args.epochs)
    if args.teacher_model is not None:
        try:
            json.loads(args.teacher_model)
        except json.JSONDecodeError as e:
            raise ConfigError(f'--teacher-model: not JSON ({e})') from None
    return cfg, k, temperature


def load_command(path: str | Path, argv: Sequence[str]) -> dict[str, Any]:
    """The recipe a command line ``-f path *argv`` produces a cache for, after :func:`check_options` (how a study
    checks its teacher_cache runs before the first trains; the teachers may not be trained yet)."""
    try:
        args = parse_args(['-f', str(path), *argv])
    except SystemExit:  # argparse has said what is wrong on stderr
        raise ConfigError(f'{path}: not a valid recipes/teacher_cache.py command line: {" ".join(argv)}') from None
    return check_options(args)[0]


def recipe_teacher_model(cfg: dict[str, Any], checkpoint: str) -> Optional[dict[str, Any]]:
    """The model section the recipe gives the teacher ``checkpoint`` (an entry ``{checkpoint: ..., model: ...}`` of
    any algorithm's ``teachers``, the same file), or None."""
    wanted = Path(checkpoint).resolve()
    for algorithm in (cfg.get('algorithms') or {}).values():
        for entry in (algorithm.get('teachers') or []) if isinstance(algorithm, dict) else []:
            if isinstance(entry, dict) and entry.get('model') and entry.get('checkpoint') and \
                    Path(entry['checkpoint']).resolve() == wanted:
                return dict(entry['model'])
    return None


def plan(args: argparse.Namespace) -> Job:
    """Every check, no write: the config, the teachers, the storage, the epochs and an existing ``--out``."""
    cfg, k, temperature = check_options(args)
    check_data(cfg['train_loader'], 'train_loader')
    given = None if args.teacher_model is None else json.loads(args.teacher_model)
    models = [given or recipe_teacher_model(cfg, c) or cfg['model'] for c in args.teacher]
    built = build_teachers([{'checkpoint': c, 'model': m} for c, m in zip(args.teacher, models)], cfg['model'],
                           key='--teacher')
    device = _device(args.device)
    dataset, samplers = replay_samplers(cfg, args.world_size, device)
    bpe = len(samplers[0])
    epochs = parse_epochs(args.epochs) if args.epochs is not None else \
        list(needed_epochs(cfg['max_duration'], 0, '1dur', bpe, cfg['global_train_batch_size']))
    pool = TeacherPool(built.models, mode='all')
    samplers[0].set_epoch(epochs[0])
    batch = dataset[next(iter(samplers[0]))]
    inputs = batch_inputs(batch)
    for teacher in pool.teachers:
        teacher.to(device)
        if inputs.dim() == 4:
            teacher.to(memory_format=torch.channels_last)
    autocast = device.type == 'cuda' and torch.cuda.is_bf16_supported()
    unit = row_unit(batch)
    try:
        logits = teacher_logits(pool, batch, autocast)
        if unit == 'masked':
            logits = masked_rows(logits, batch)
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(f'--teacher: the teacher does not take the recipe\'s inputs {tuple(inputs.shape)}: '
                          f'{str(e).splitlines()[0] if str(e) else type(e).__name__}') from None
    if logits.dim() != 2 or (unit == 'masked' and len(logits) != int(masked_counts(batch).sum())):
        raise ConfigError(f'--teacher: a cache stores one row of logits per example (per masked position of a masked '
                          f'LM); the teacher gives {tuple(logits.shape)} for inputs {tuple(inputs.shape)}')
    num_classes = logits.shape[1]
    try:
        fields = shard_fields(args.store, num_classes, k, unit)
    except ValueError as e:
        raise ConfigError(f'--k: {e}') from None
    fingerprint = {**teacher_fingerprint(built.checkpoints, models),
                   **run_fingerprint(cfg, args.world_size)}
    manifest = {
        'format': FORMAT, 'store': args.store, 'k': k, 'temperature': temperature, 'sample_power': args.sample_power,
        'num_classes': num_classes, 'fields': [list(f) for f in fields], 'batch_size': samplers[0].batch_size,
        'rows_per_rank': len(samplers[0]._indices(None)), 'world_size': args.world_size, 'epochs': epochs,
        'compute': 'bf16' if autocast else 'fp32', 'fingerprint': fingerprint,
        'rows': unit, 'bytes_per_row': bytes_per_row(args.store, num_classes, k, unit),
        'bytes_per_example': bytes_per_example(args.store, num_classes, k, unit,
                                               float(masked_counts(batch).float().mean()) if unit == 'masked' else 1),
        'teachers': [{'checkpoint': str(Path(c).resolve()), 'model': m} for c, m in zip(built.checkpoints, models)],
        'recipe': str(Path(args.file).resolve()), 'overrides': list(args.overrides),
    }
    out = Path(args.out)
    if (out / MANIFEST).is_file():
        try:
            old = TeacherCache(out).manifest
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f'--out: {e}') from None
        for name in ('fingerprint', 'store', 'k', 'temperature', 'sample_power', 'rows', 'fields', 'batch_size',
                     'rows_per_rank', 'world_size', 'compute'):
            if json.loads(json.dumps(old.get(name))) != json.loads(json.dumps(manifest[name])):
                raise ConfigError(f'--out: {out} holds a cache of another run or storage ({name} differs); give '
                                  'another --out')
        manifest['epochs'] = sorted(set(old['epochs']) | set(epochs))
        if isinstance(old.get('production'), dict):  # the earlier sessions' (a cache made before: none)
            manifest['production'] = old['production']
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f'--out: {out} exists and is not a teacher cache; give an empty or new folder')
    return Job(out, manifest, epochs, dataset, samplers, pool, device, autocast, args.chunk, args.sample_power)


def produce_shard(job: Job, epoch: int, rank: int, progress: Any = None) -> int:
    """Write shard (epoch, rank) of ``job``; returns the number of examples. Deterministic: the sampled kind's draws
    come from a generator seeded by (seed, epoch, rank), so any worker writes the same bytes."""
    sampler = job.samplers[rank]
    sampler.set_epoch(epoch)
    keys, row = list(sampler), 0
    masked = job.manifest.get('rows') == 'masked'
    counts = np.concatenate([masked_counts(job.dataset[key]).cpu().numpy() for key in keys]) if masked else None
    writer = ShardWriter(job.out, job.manifest, epoch, rank, counts=counts)
    seed = int(np.random.SeedSequence([job.manifest['fingerprint']['seed'], epoch, rank]).generate_state(1)[0])
    generator = torch.Generator().manual_seed(seed)
    for i in range(0, len(keys), job.chunk):
        batches = [job.dataset[key] for key in keys[i:i + job.chunk]]
        batch = cat_batches(batches)
        logits = teacher_logits(job.pool, batch, job.autocast)
        if masked:
            logits = masked_rows(logits, batch)
        writer.write(row, encode_rows(logits, batch, job.manifest['store'], job.manifest['k'],
                                      job.manifest['temperature'], generator=generator, power=job.power))
        row += len(batch_inputs(batch))
        if progress is not None:
            progress.update(len(batches))
    writer.commit()
    return row


def timed_shard(job: Job, epoch: int, rank: int, progress: Any = None) -> tuple[int, float]:
    """:func:`produce_shard`, and the seconds it took: ``(examples, seconds)``."""
    started = time.perf_counter()
    examples = produce_shard(job, epoch, rank, progress)
    return examples, time.perf_counter() - started


def shard_task(argv: list[str], epoch: int, rank: int) -> tuple[int, float]:
    """One shard in a Dask worker: the command's own checks (against the manifest the client wrote), then the
    shard; ``(examples, seconds of the shard)``. Module-level, so that workers import it."""
    return timed_shard(plan(parse_args(argv)), epoch, rank)


def production_record(old: Any, seconds: float, shard_seconds: float, shards: int, examples: int,
                      where: str) -> dict[str, Any]:
    """The manifest's ``production`` with this session added (``old``: the earlier sessions' record, or None):
    ``{'seconds', 'shard_seconds', 'shards', 'examples', 'sessions': [...]}``, totals summed over the sessions (see
    the module docstring for what each clock counts)."""
    sessions = list(old.get('sessions') or []) if isinstance(old, dict) else []
    sessions.append({'seconds': seconds, 'shard_seconds': shard_seconds, 'shards': shards, 'examples': examples,
                     'where': where, 'machine': machine_info()})
    return {'clock': 'wall-clock of the producer command, summed over its sessions (shard_seconds: summed over the '
                     'shards, wherever they ran)',
            **{key: sum(s[key] for s in sessions) for key in ('seconds', 'shard_seconds', 'shards', 'examples')},
            'sessions': sessions}


def parse_dask(text: str) -> dict[str, Any]:
    """``local:N`` (N worker processes here), ``gpus:N`` (one GPU each) or ``tcp://HOST:PORT`` (a running
    scheduler): the arguments of :func:`algorithms.blockwise.cluster.open_client`."""
    kind, _, value = text.partition(':')
    if kind in ('local', 'gpus') and value.isdigit() and int(value) >= 1:
        return {'workers': int(value), 'gpus': kind == 'gpus'}
    if kind == 'tcp' and value.startswith('//'):
        return {'address': text}
    raise ConfigError(f'--dask: expected local:N, gpus:N or tcp://HOST:PORT, got {text!r}')


def produce(job: Job, argv: Optional[Sequence[str]] = None, dask: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Write the manifest, then every missing shard (here, or one Dask task per shard with ``dask``: ``argv`` is
    the command line each task checks and plans again); returns counts and timings."""
    from tqdm import tqdm

    write_manifest(job.out, job.manifest)
    cache = TeacherCache(job.out)
    todo = [(e, r) for e in job.epochs for r in range(len(job.samplers)) if not cache.has_shard(e, r)]
    skipped = len(job.epochs) * len(job.samplers) - len(todo)
    if skipped:
        log.info('%d shard(s) finished earlier, skipped', skipped)
    per_example = job.manifest['bytes_per_example']
    rows = job.manifest['rows_per_rank']
    log.info('storage %s (k=%s, T=%s, rows: %s, %d bytes a row): %.0f bytes per example per epoch%s, %s bytes per '
             'epoch (%d rank(s))', job.manifest['store'], job.manifest['k'], job.manifest['temperature'],
             job.manifest['rows'], job.manifest['bytes_per_row'], per_example,
             ' (estimated from the first batch\'s masks)' if job.manifest['rows'] == 'masked' else '',
             f'{int(per_example * rows * len(job.samplers)):,}', len(job.samplers))
    bar = tqdm(total=len(todo) * len(job.samplers[0]), unit='batch', desc='teacher cache', disable=None)
    started, examples, shard_seconds = time.perf_counter(), 0, 0.0
    if dask is None:
        for epoch, rank in todo:
            n, seconds = timed_shard(job, epoch, rank, bar)
            examples, shard_seconds = examples + n, shard_seconds + seconds
    elif todo:
        from distributed import as_completed

        from algorithms.blockwise.cluster import open_client

        with open_client(**dask, env={'PYTHONPATH': str(REPO)}) as client:
            futures = [client.submit(shard_task, list(argv or []), e, r, pure=False) for e, r in todo]
            for future in as_completed(futures):
                n, seconds = future.result()
                examples, shard_seconds = examples + n, shard_seconds + seconds
                bar.update(len(job.samplers[0]))
    bar.close()
    elapsed = time.perf_counter() - started
    if todo:  # the manifest says what production cost, session by session
        where = 'here' if dask is None else 'dask ' + (dask['address'] if 'address' in dask else
                                                      f"{'gpus' if dask['gpus'] else 'local'}:{dask['workers']}")
        job.manifest['production'] = production_record(job.manifest.get('production'), elapsed, shard_seconds,
                                                        len(todo), examples, where)
        if job.manifest['rows'] == 'masked':  # measured over the shards written: the masks vary by epoch
            sizes = [(job.out / shard_name(e, r)).stat().st_size for e in job.epochs for r in range(len(job.samplers))]
            job.manifest['bytes_per_example'] = round(sum(sizes) / (len(sizes) * rows), 1)
        write_manifest(job.out, job.manifest)
    log.info('wrote %d shard(s) in %.1f s (%.0f examples/s) to %s', len(todo), elapsed,
             examples / elapsed if elapsed > 0 else 0.0, job.out)
    return {'written': len(todo), 'skipped': skipped, 'seconds': elapsed, 'examples': examples}


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        dask = parse_dask(args.dask) if args.dask is not None else None
        job = plan(args)
    except ConfigError as e:
        sys.stderr.write(f'error: {e}\n')
        return 2
    logging.getLogger().setLevel(logging.INFO)
    produce(job, argv, dask)
    return 0


if __name__ == '__main__':
    sys.exit(main())
