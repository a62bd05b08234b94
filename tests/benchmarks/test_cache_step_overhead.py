"""benchmarks/measurements/cache_step_overhead.py: its three Trainers are what they say. The cached KD one runs no
module but its student (no teacher forward) and reads the cache every step, the online one runs its teacher every
step, the plain one has no KD; the cached and online KD terms agree (the cache holds that teacher). No timings."""

from __future__ import annotations

import functools

import torch
from composer.core import Callback, Event, State
from composer.loggers import Logger

from algorithms.distillation import CachedTeacherPool, TeacherPool
from benchmarks.core.intervals import Interval
from benchmarks.measurements.cache_step_overhead import NAMES, build, imagenet, p9_verdict
from benchmarks.measurements.timing import interleave
from tests.conftest import REPO

RECIPE = str(REPO / 'yamls' / 'fashion_mnist' / 'fast_cnn.yaml')


class Losses(Callback):
    """After the loss: its keys and its KD term (None without one)."""

    def __init__(self) -> None:
        self.seen: list[tuple[set, float | None]] = []

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.AFTER_LOSS:
            keys = set(state.loss) if isinstance(state.loss, dict) else set()
            self.seen.append((keys, float(state.loss['kd']) if 'kd' in keys else None))


def test_the_three_configurations_are_what_they_say(fmnist_root, tmp_path):
    """1 warm-up + 1 round of 2 steps on 48 images in batches of 16: the second round starts mid-epoch and crosses
    into epoch 1, so the cached rows must follow Composer's step across fit() calls."""
    spies = {name: Losses() for name in NAMES}
    setups, job, production = build(RECIPE, str(fmnist_root), subset=48, total_steps=4, folder=tmp_path,
                                    overrides=['global_train_batch_size=16'],
                                    extra_callbacks={n: [s] for n, s in spies.items()})
    called: dict[str, set[int]] = {name: set() for name in NAMES}
    current: list[str | None] = [None]

    def hook(module, args, output):
        if current[0] is not None:
            called[current[0]].add(id(module))

    def run(name: str, fn):
        current[0] = name
        try:
            return fn()
        finally:
            current[0] = None

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        rounds = interleave({n: functools.partial(run, n, s.round(2)) for n, s in setups.items()}, 1, warmup=1,
                            alternate=True, measure=lambda fn: fn())
    finally:
        handle.remove()
        for s in setups.values():
            s.trainer.close()
    assert production['epochs'] == [0, 1] and production['examples'] == 96 and job.manifest['store'] == 'dense'
    assert all(len(r) == 1 and len(r[0]) == 2 for r in rounds.values())
    student = {n: {id(m) for m in s.trainer.state.model.modules()} for n, s in setups.items()}

    plain = setups['plain']
    assert plain.kd is None and all(kd is None and 'kd' not in keys for keys, kd in spies['plain'].seen)
    assert called['plain'] and called['plain'] <= student['plain']

    online = setups['online_kd'].kd
    assert type(online.pool) is TeacherPool and online.pool.forwards == 4  # one teacher forward per step
    assert id(online.pool.teachers[0]) in called['online_kd'] - student['online_kd']

    cached = setups['cached_kd'].kd
    assert isinstance(cached.pool, CachedTeacherPool) and cached.pool.reads == 4 and cached.pool.forwards == 0
    assert called['cached_kd'] and called['cached_kd'] <= student['cached_kd']  # no module but the student ran
    assert len(setups['cached_kd'].reads) == 4

    # Same seed, same first batch, same student init: the KD terms differ only by the cache's fp16 rounding.
    (_, kd_online), (_, kd_cached) = spies['online_kd'].seen[0], spies['cached_kd'].seen[0]
    assert kd_online is not None and kd_cached is not None
    assert abs(kd_cached - kd_online) <= 1e-3 * max(1.0, abs(kd_online))
    assert len(spies['online_kd'].seen) == len(spies['cached_kd'].seen) == 4


def test_the_p9_verdict_and_the_imagenet_projection():
    assert p9_verdict(Interval(1.02, 1.0, 1.04, 5)).startswith('met')
    assert p9_verdict(Interval(1.2, 1.1, 1.3, 5)).startswith('not met')
    assert p9_verdict(Interval(1.04, 0.98, 1.1, 5)).startswith('undecided')
    assert p9_verdict(Interval(1.2, None, None, 1)).startswith('not met by the point estimate')
    big = imagenet(forward_ips=1000.0, production_ips=500.0)
    assert big['views'] == 1_281_167 * 90
    assert big['dense_bytes'] == big['views'] * 2004 and round(big['dense_bytes'] / 1e9) == 231  # the method card's
    assert big['top5_bytes'] == big['views'] * 28 and round(big['top5_bytes'] / 1e9, 1) == 3.2
    assert abs(big['hours_at_forward_ips'] - big['views'] / 1000 / 3600) < 1e-9
    assert abs(big['hours_at_production_ips'] - 2 * big['hours_at_forward_ips']) < 1e-9
