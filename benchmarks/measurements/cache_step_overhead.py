"""A KD step reading a teacher cache vs a plain step vs an online KD step, side by side in one process (issue 24, P9).

    .venv/bin/python -m benchmarks.measurements.cache_step_overhead [--rounds 6] [--steps 20] [--subset 2048]
        [--data data] [--out benchmarks/results] [--teacher-flip-tta] [KEY=VALUE ...]
    # writes benchmarks/results/cache_step_overhead.{md,json}; needs `make data`

Three Composer Trainers built from the project's own recipe, the default job (``--recipe``, default
``yamls/fashion_mnist/fast_cnn.yaml``), through ``load_config`` + ``prepare``/``launch``, on the first ``--subset``
training images, with no evaluation and no checkpoints, their run folders in a temporary folder:

1. ``plain``: the recipe as is;
2. ``online KD``: the recipe plus KD-KL (T 4, weight 1) with one same-size teacher, a ``fast_cnn`` saved at
   initialisation in Composer's checkpoint format (a teacher's quality does not change its cost);
3. ``cached KD``: the same KD reading a dense fp16 cache of that teacher (``teachers: [{cache: DIR}]``), produced
   first, for every epoch the measurement reads, with the producer's API (``recipes/teacher_cache.py``: ``plan``,
   ``produce``); its seconds and images/s are reported.

The teacher is the recipe's model with ``flip_tta`` off: in eval mode the recipe's ``flip_tta: true`` would run it
twice (an image and its mirror), doubling the online teacher's cost; ``--teacher-flip-tta`` keeps it on.

Each configuration trains ``--steps`` more steps per round, one warm-up round then ``--rounds`` counted ones,
interleaved, in reverse order every other round; a step is BATCH_START to BATCH_END (``StepTimer`` of
``kd_step_overhead.py``). The teacher's forward alone (the producer's own: inference mode, channels-last, one batch
of the recipe's) is timed in the same rounds. Ratios to the plain step are per round (median step of the round over
the plain one's), summarised on the log scale with 95% intervals over rounds (``benchmarks.core.intervals``).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from algorithms.distillation import KnowledgeDistillation
from algorithms.distillation.teacher_cache import bytes_per_example
from benchmarks.core.intervals import RATIO_RULE, Interval, ratio_interval
from benchmarks.core.machine import machine_info
from benchmarks.core.markdown import table
from benchmarks.measurements.kd_step_overhead import StepTimer
from benchmarks.measurements.timing import REPO, header, interleave, markdown, medians, script, typed_command, write
from recipes import teacher_cache
from recipes.core.builders import launch, prepare
from recipes.core.config import load_config
from recipes.core.errors import ConfigError
from recipes.models.registry import build_model

NAMES = ('plain', 'online_kd', 'cached_kd')
GOAL = 1.05  # P9: a KD step reading the cache costs <= 1.05x a plain step
KD = {'kd_loss': 'kl', 'temperature': 4.0, 'kd_loss_weight': 1.0}
IMAGENET_IMAGES, IMAGENET_EPOCHS, IMAGENET_CLASSES, TOP_K = 1_281_167, 90, 1000, 5


@dataclass
class Setup:
    """One timed configuration: its Trainer, its step timer and its KD algorithm (None for the plain one)."""

    trainer: Any
    timer: StepTimer
    kd: Optional[KnowledgeDistillation]
    reads: Optional[list[float]] = None  # the cached pool's read times (cached KD only)

    def round(self, steps: int) -> Callable[[], list[float]]:
        """One round: ``steps`` more steps of the Trainer; returns their step times."""
        def run() -> list[float]:
            n = len(self.timer.times)
            self.trainer.fit(duration=f'{steps}ba')
            return self.timer.times[n:]
        return run


def time_reads(pool: Any) -> list[float]:
    """Time every call of ``pool.forward`` (the cached pool's read and digest check, inside the step) into the list
    returned; the wrapper adds a clock read on either side, nothing else."""
    times, forward = [], pool.forward

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = forward(*args, **kwargs)
        times.append(time.perf_counter() - start)
        return out
    pool.forward = timed
    return times


def recipe_overrides(data: str, subset: int, total_steps: int, folder: Path, overrides: Sequence[str]) -> list[str]:
    """The recipe's overrides: the data and its subset, no evaluation or checkpoints, then the user's, then the run
    folder and a duration of every step the measurement takes (the epochs the cache must cover)."""
    return [f'train_loader.path={data}', f'train_loader.subset={subset}', 'eval_loader=null', 'save_folder=null',
            'progress_bar=false', *overrides, f'max_duration={total_steps}ba', f'run_dir={folder}']


def save_teacher(model_cfg: Mapping[str, Any], path: Path, seed: int = 1) -> None:
    """A teacher built from ``model_cfg`` and saved at initialisation as Composer saves a checkpoint."""
    torch.manual_seed(seed)
    torch.save({'state': {'model': build_model(**model_cfg).state_dict()}}, path)


def produce_cache(recipe: str, overrides: Sequence[str], checkpoint: Path, teacher_model: Mapping[str, Any],
                  out: Path) -> tuple[teacher_cache.Job, dict[str, Any]]:
    """A dense fp16 cache of the teacher for every epoch of the run ``recipe`` + ``overrides``, made with the
    producer's API; returns its job and the production's counts, seconds, images/s and bytes."""
    args = teacher_cache.parse_args(['-f', recipe, '--teacher', str(checkpoint), '--teacher-model',
                                     json.dumps(dict(teacher_model)), '--out', str(out), *overrides])
    job = teacher_cache.plan(args)
    made = teacher_cache.produce(job)
    m = job.manifest
    return job, {**made, 'images_per_s': made['examples'] / made['seconds'], 'epochs': m['epochs'],
                 'bytes_per_example': m['bytes_per_example'], 'rows_per_epoch': m['rows_per_rank'] * m['world_size'],
                 'bytes_on_disk': sum(p.stat().st_size for p in out.glob('epoch*.bin')), 'compute': m['compute']}


def build(recipe: str, data: str, subset: int, total_steps: int, folder: Path, overrides: Sequence[str] = (),
          teacher_flip_tta: bool = False, extra_callbacks: Optional[Mapping[str, list]] = None,
          ) -> tuple[dict[str, Setup], teacher_cache.Job, dict[str, Any]]:
    """The teacher checkpoint, its cache (production timed) and the three Trainers, in ``folder``."""
    base = recipe_overrides(data, subset, total_steps, folder / 'unused', overrides)
    model = dict(load_config(recipe, base)['model'])
    teacher_model = {**model, 'flip_tta': teacher_flip_tta} if 'flip_tta' in model or teacher_flip_tta else model
    checkpoint = folder / 'teacher.pt'
    save_teacher(teacher_model, checkpoint)
    job, production = produce_cache(recipe, base, checkpoint, teacher_model, folder / 'cache')
    teachers = {'online_kd': [{'checkpoint': str(checkpoint), 'model': teacher_model}],
                'cached_kd': [{'cache': str(folder / 'cache')}]}
    setups = {}
    for name in NAMES:
        cfg = load_config(recipe, recipe_overrides(data, subset, total_steps, folder / name, overrides))
        if name in teachers:
            cfg['algorithms'] = {**(cfg['algorithms'] or {}),
                                 'knowledge_distillation': {'teachers': teachers[name], **KD}}
        timer = StepTimer()
        trainer = launch(prepare(cfg, extra_callbacks=[timer, *(extra_callbacks or {}).get(name, [])]))
        kd = [a for a in trainer.state.algorithms if isinstance(a, KnowledgeDistillation)]
        setups[name] = Setup(trainer, timer, kd[0] if kd else None,
                             time_reads(kd[0].pool) if name == 'cached_kd' else None)
    return setups, job, production


def forward_round(job: teacher_cache.Job, steps: int) -> Callable[[], list[float]]:
    """One round of ``steps`` teacher forwards alone, as the producer runs them, on one batch of the recipe's."""
    job.samplers[0].set_epoch(0)
    x, y = job.dataset[next(iter(job.samplers[0]))]

    def one() -> float:
        start = time.perf_counter()
        teacher_cache.teacher_logits(job.pool, x, y, job.autocast)
        if x.device.type == 'cuda':
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return lambda: [one() for _ in range(steps)]


def p9_verdict(iv: Interval) -> str:
    """Whether cached/plain <= :data:`GOAL`, by the ratio's 95% interval over rounds."""
    if iv.lo is None or iv.hi is None:
        return f"{'met' if iv.mean <= GOAL else 'not met'} by the point estimate only (one round: no interval)"
    if iv.hi <= GOAL:
        return 'met (the whole interval is at or below 1.05)'
    if iv.lo > GOAL:
        return 'not met (the whole interval is above 1.05)'
    return f'undecided: the interval straddles {GOAL} (more rounds would decide it)'


def imagenet(forward_ips: float, production_ips: float) -> dict[str, float]:
    """ImageNet at 90 epochs: bytes of a dense fp16 and a top-5 cache, and production time at the given images/s."""
    views = IMAGENET_IMAGES * IMAGENET_EPOCHS
    return {'images': IMAGENET_IMAGES, 'epochs': IMAGENET_EPOCHS, 'views': views,
            'dense_bytes': views * bytes_per_example('dense', IMAGENET_CLASSES),
            'top5_bytes': views * bytes_per_example('topk', IMAGENET_CLASSES, TOP_K),
            'hours_at_forward_ips': views / forward_ips / 3600,
            'hours_at_production_ips': views / production_ips / 3600}


def summarise(rounds: Mapping[str, Sequence[Sequence[float]]], batch: int, production: Mapping[str, Any]
              ) -> dict[str, Any]:
    """Medians, per-round ratios to the plain step with their intervals, the P9 verdict, storage and the projection
    from the step times of every round of every configuration (and ``forward``: the teacher forward alone)."""
    pooled = {name: [t for r in rs for t in r] for name, rs in rounds.items()}
    med = medians(pooled)
    per_round = {name: [statistics.median(r) for r in rs] for name, rs in rounds.items()}
    ratio_rounds = {f'{name}_over_plain': [a / b for a, b in zip(per_round[name], per_round['plain'])]
                    for name in ('cached_kd', 'online_kd')}
    ratio_rounds['forward_over_plain'] = [a / b for a, b in zip(per_round['forward'], per_round['plain'])]
    intervals = {key: ratio_interval(v) for key, v in ratio_rounds.items()}
    forward_ips = batch / med['forward']
    return {
        'median_step_s': med, 'step_s_quartiles': {n: statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
                                                   for n, v in pooled.items()},
        'ratio_per_round': ratio_rounds,
        'ratios': {key: {'geometric_mean': iv.mean, 'lo': iv.lo, 'hi': iv.hi, 'rounds': iv.n}
                   for key, iv in intervals.items()},
        'lower_bound_online': 1 + med['forward'] / med['plain'],
        'p9_goal': GOAL, 'p9': p9_verdict(intervals['cached_kd_over_plain']),
        'teacher_forward_images_per_s': forward_ips, 'production': dict(production),
        'imagenet_90_epochs': imagenet(forward_ips, production['images_per_s']),
    }


def measure(args: Any, folder: Path) -> dict[str, Any]:
    """Build everything in ``folder``, run the interleaved rounds, summarise."""
    total = (args.warmup + args.rounds) * args.steps
    setups, job, production = build(args.recipe, args.data, args.subset, total, folder, args.overrides,
                                    args.teacher_flip_tta)
    try:
        fns = {**{name: s.round(args.steps) for name, s in setups.items()}, 'forward': forward_round(job, args.steps)}
        rounds = interleave(fns, args.rounds, warmup=args.warmup, alternate=True, measure=lambda fn: fn())
        counts = {name: {'teacher_forwards': s.kd.pool.forwards if s.kd else 0,
                         'cache_reads': getattr(s.kd.pool, 'reads', 0) if s.kd else 0} for name, s in setups.items()}
    finally:
        for s in setups.values():
            s.trainer.close()
    batch = job.samplers[0].batch_size
    reads = setups['cached_kd'].reads[-args.rounds * args.steps:]  # the counted rounds' reads
    return {**summarise(rounds, batch, production), 'counts': counts, 'batch': batch,
            'cache_read_s': statistics.median(reads),
            'teacher_model': job.manifest['teachers'][0]['model']}


def main(argv: Optional[list[str]] = None) -> int:
    p = script('cache_step_overhead', __doc__)
    p.add_argument('--recipe', default='yamls/fashion_mnist/fast_cnn.yaml')
    p.add_argument('--data', default='data', help='the folder holding FashionMNIST/ (make data)')
    p.add_argument('--subset', type=int, default=2048, help='training images (the cache covers them every epoch)')
    p.add_argument('--steps', type=int, default=20, help='steps per configuration per round')
    p.add_argument('--rounds', type=int, default=6, help='counted interleaved rounds (after the warm-up)')
    p.add_argument('--warmup', type=int, default=1, help='warm-up rounds (not counted)')
    p.add_argument('--teacher-flip-tta', action='store_true', help="keep the recipe's flip_tta on the teacher "
                   '(two forwards per batch online)')
    p.add_argument('--out', default=str(REPO / 'benchmarks' / 'results'))
    p.add_argument('overrides', nargs='*', help='recipe overrides, KEY=VALUE')
    args = p.parse_args(argv)
    if min(args.steps, args.rounds, args.subset) < 1 or args.warmup < 0:
        p.error('--steps, --rounds and --subset must be >= 1, --warmup >= 0')
    try:
        with tempfile.TemporaryDirectory(prefix='cache-step-overhead-') as tmp:
            result = measure(args, Path(tmp))
    except ConfigError as e:  # a recipe, override or data problem: one line, nothing written
        sys.stderr.write(f'error: {e}\n')
        return 2
    result = {'machine': machine_info(), 'command': typed_command('cache_step_overhead', argv),
              'settings': vars(args), **result}
    write(args.out, 'cache_step_overhead', result, report(result))
    return 0


def _ratio(r: Mapping[str, Any]) -> str:
    iv = Interval(r['geometric_mean'], r['lo'], r['hi'], r['rounds'])
    return iv.fmt(3)


def _gb(n: float) -> str:
    return f'{n / 1e9:,.1f} GB'


def report(r: Mapping[str, Any]) -> str:
    s, med, q, prod, big = r['settings'], r['median_step_s'], r['ratios'], r['production'], r['imagenet_90_epochs']
    names = {'plain': 'plain (the recipe as is)', 'online_kd': 'online KD (one same-size teacher)',
             'cached_kd': 'cached KD (dense fp16 cache of that teacher)',
             'forward': 'teacher forward alone (inference mode, one batch)'}
    ratio_of = {'plain': '1', 'online_kd': _ratio(q['online_kd_over_plain']),
                'cached_kd': _ratio(q['cached_kd_over_plain']), 'forward': _ratio(q['forward_over_plain'])}
    rows = [[names[n], f'{1e3 * med[n]:.2f}', '-'.join(f'{1e3 * x:.2f}' for x in r['step_s_quartiles'][n][::2]),
             f"{med[n] / med['plain']:.3f}", ratio_of[n]] for n in (*NAMES, 'forward')]
    epochs = prod['epochs']
    per_epoch = prod['bytes_per_example'] * prod['rows_per_epoch']
    return markdown([
        *header('A KD step reading a teacher cache vs a plain step vs an online KD step', r['command'], r['machine'],
                threads=True),
        f"Recipe `{s['recipe']}` ({' '.join(s['overrides']) or 'no overrides'}) on the first {s['subset']:,} training "
        f"images, batch {r['batch']}, no evaluation or checkpoints; teacher: `{json.dumps(r['teacher_model'])}` "
        f"saved at initialisation; KD-KL, T {KD['temperature']:g}, weight {KD['kd_loss_weight']:g}. "
        f"{s['warmup']} warm-up round(s), then {s['rounds']} counted rounds x {s['steps']} steps per configuration, "
        'interleaved, the order reversed every other round; a step is BATCH_START to BATCH_END.', '',
        *table(['configuration', 'median step (ms)', 'interquartile range (ms)', 'pooled median / plain',
                '/ plain per round, geometric mean [95% CI]'], rows), '',
        f"- **P9** (a cached KD step <= {GOAL}x a plain step): cached / plain = "
        f"**{_ratio(q['cached_kd_over_plain'])}x**: {r['p9']}.",
        f"- Online KD costs {_ratio(q['online_kd_over_plain'])}x a plain step; its floor `1 + t_forward / t_step` "
        f"is {r['lower_bound_online']:.3f}x. Counts: online {r['counts']['online_kd']['teacher_forwards']} teacher "
        f"forwards; cached {r['counts']['cached_kd']['teacher_forwards']} teacher forwards and "
        f"{r['counts']['cached_kd']['cache_reads']} cache reads.",
        f"- Of the cached step's {1e3 * (med['cached_kd'] - med['plain']):.2f} ms over a plain one, the cache read "
        f"(the pool's `forward`: rows from the memory map, their input digests checked) takes a median "
        f"{1e3 * r['cache_read_s']:.2f} ms; the rest is KD's loss, its backward and its bookkeeping.",
        f"- The cache: epochs {epochs[0]}-{epochs[-1]} ({len(epochs)}), {prod['examples']:,} views produced in "
        f"{prod['seconds']:.2f} s (**{prod['images_per_s']:,.0f} images/s**, {prod['compute']}; timed once, before the "
        "rounds, so the machine's load then falls on it alone); "
        f"**{prod['bytes_per_example']} bytes per example per epoch** (dense fp16, 10 classes, digest included), "
        f"{per_epoch:,} bytes an epoch, {prod['bytes_on_disk']:,} bytes on disk. The teacher forward alone runs at "
        f"{r['teacher_forward_images_per_s']:,.0f} images/s.",
        f"- ImageNet at {big['epochs']} epochs ({big['images']:,} images, {big['views']:,} views): a dense fp16 "
        f"cache (1,000 classes, {bytes_per_example('dense', IMAGENET_CLASSES):,} bytes a view) takes "
        f"{_gb(big['dense_bytes'])}, top-{TOP_K} ({bytes_per_example('topk', IMAGENET_CLASSES, TOP_K)} bytes a view) "
        f"{_gb(big['top5_bytes'])}. Producing it at the teacher forward's measured images/s would take "
        f"{big['hours_at_forward_ips']:,.1f} h ({big['hours_at_production_ips']:,.1f} h at the production's "
        'measured images/s, writes included). Assumption: these rates are this machine\'s CPU running this small '
        'model on 28x28 images; an ImageNet teacher (e.g. ResNet-50 at 224 px) is slower by the ratio of its '
        'forward cost, and the hours scale with it.', '',
        f'Intervals: {RATIO_RULE}; here over rounds (per-round ratio of median step times), not seeds.'])


if __name__ == '__main__':
    sys.exit(main())
