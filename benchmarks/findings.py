"""Whether each of the seed's section-1 findings holds in a set of run records: plain rules over the numbers.

Every verdict is one of ``holds``, ``does not hold``, ``mixed`` or ``not measured`` (the runs it needs are missing),
followed by the numbers it was decided on. Single runs are compared as they are: no rule knows run-to-run noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from benchmarks.analysis import Analysis, RunResult
from benchmarks.records import duration_key
from benchmarks.tables import baseline_at, teacher_cost_table

HOLDS, FAILS, MIXED, UNMEASURED = 'holds', 'does not hold', 'mixed', 'not measured'


@dataclass
class Finding:
    """A seed claim, the verdict in these records, and the sentence with the numbers behind it."""

    key: str
    claim: str
    verdict: str
    text: str

    def markdown(self) -> str:
        return f'- **{self.claim}** -- *{self.verdict}*. {self.text}'


def _pct(v: Optional[float]) -> str:
    return '-' if v is None else f'{100 * v:.2f}%'


def _s(v: Optional[float]) -> str:
    return '-' if v is None else f'{v:.0f} s'


def _x(v: Optional[float]) -> str:
    return 'not reached' if v is None else f'{v:.2f}x'


def _single_kd(a: Analysis) -> list[RunResult]:
    return [r for r in a.tagged('kd') if r.pool_mode == 'single' and r.final_acc is not None]


def kd_speeds_up(a: Analysis) -> Finding:
    claim = 'Distillation reaches the baseline accuracy in less wall-clock (seed: 1.96x, ResNet-50)'
    runs = _single_kd(a)
    if a.target is None or not runs:
        return Finding('kd_speedup', claim, UNMEASURED, 'Needs the baseline and runs tagged kd.')
    reached = [r for r in runs if r.speedup is not None]
    head = (f'Target {_pct(a.target)} (final accuracy of {a.study.baseline}, reached in {_s(a.baseline_s)}). '
            f'{len(reached)} of {len(runs)} KD runs reached it')
    if not reached:
        best = max(runs, key=lambda r: r.best_acc or 0.0)
        return Finding('kd_speedup', claim, FAILS, f'{head}; the best, {best.name}, got to {_pct(best.best_acc)}.')
    best = max(reached, key=lambda r: r.speedup or 0.0)
    verdict = HOLDS if (best.speedup or 0.0) > 1.0 else FAILS
    return Finding('kd_speedup', claim, verdict,
                   f'{head}; the fastest, {best.name}, in {_s(best.time_to_target)}: {_x(best.speedup)} '
                   f'(teachers not counted; {_x(best.speedup_with_teachers)} with them).')


def mse_short_kl_long(a: Analysis) -> Finding:
    claim = 'MSE distillation is better for short runs, KL for long ones'
    cells = {(r.series, r.duration): r for r in _single_kd(a)}
    common = sorted({d for s, d in cells if s == 'KD-KL' and ('KD-MSE', d) in cells}, key=duration_key)
    if not common:
        return Finding('mse_vs_kl', claim, UNMEASURED, 'Needs KD-KL and KD-MSE runs of the same duration.')
    parts = []
    for d in common:
        kl, mse = cells[('KD-KL', d)].final_acc, cells[('KD-MSE', d)].final_acc
        parts.append(f'{d}: KL {_pct(kl)} vs MSE {_pct(mse)}')
    text = '; '.join(parts) + '.'
    if len(common) < 2:
        return Finding('mse_vs_kl', claim, UNMEASURED, text + ' Needs at least two durations.')
    short, long = common[0], common[-1]
    mse_short = cells[('KD-MSE', short)].final_acc > cells[('KD-KL', short)].final_acc  # type: ignore[operator]
    kl_long = cells[('KD-KL', long)].final_acc > cells[('KD-MSE', long)].final_acc  # type: ignore[operator]
    verdict = HOLDS if mse_short and kl_long else FAILS if not (mse_short or kl_long) else MIXED
    text += (f' Shortest ({short}): {"MSE" if mse_short else "not MSE"} ahead; longest ({long}): '
             f'{"KL" if kl_long else "not KL"} ahead.')
    return Finding('mse_vs_kl', claim, verdict, text)


def early_stop(a: Analysis) -> Finding:
    claim = ('For image classification, distilling the whole run beats stopping early '
             '(seed: ResNet-50; BERT preferred 20-50%)')
    runs = [r for r in a.tagged('early_stop') if r.final_acc is not None]
    parts, verdicts = [], []
    for partial in (r for r in runs if 0.0 < r.kd_fraction < 1.0):
        full = next((r for r in runs if r.kd_fraction >= 1.0 and r.duration == partial.duration), None)
        if full is None:
            continue
        better = full.final_acc >= partial.final_acc  # type: ignore[operator]
        verdicts.append(better)
        parts.append(f'{partial.duration}: {100 * partial.kd_fraction:.0f}% distilled {_pct(partial.final_acc)} '
                     f'(time-to-target {_x(partial.speedup)}) vs 100% {_pct(full.final_acc)} ({_x(full.speedup)})')
    if not verdicts:
        return Finding('early_stop', claim, UNMEASURED, 'Needs early_stop runs with a fraction and the 100% run.')
    verdict = HOLDS if all(verdicts) else FAILS if not any(verdicts) else MIXED
    return Finding('early_stop', claim, verdict, '; '.join(parts) + '.')


def poor_teacher(a: Analysis) -> Finding:
    claim = 'A poor model can be a good teacher: teacher accuracy does not predict teaching quality'
    pairs: list[tuple[RunResult, RunResult, float, float]] = []  # teacher, student, their final accuracies
    for r in a.tagged('teacher_choice'):
        teacher = a.results.get(r.teachers[0]) if len(r.teachers) == 1 else None
        if teacher and teacher.final_acc is not None and r.final_acc is not None:
            pairs.append((teacher, r, teacher.final_acc, r.final_acc))
    if len(pairs) < 2:
        return Finding('poor_teacher', claim, UNMEASURED, 'Needs teacher_choice runs from at least two teachers.')
    worst_t, worst_s, worst_t_acc, worst_s_acc = min(pairs, key=lambda p: p[2])
    best_t = max(pairs, key=lambda p: p[2])[0]
    top_s = max(pairs, key=lambda p: p[3])[1]
    base = baseline_at(a, worst_s.duration)
    if base is None or base.final_acc is None:
        return Finding('poor_teacher', claim, UNMEASURED, f'Needs a baseline run of {worst_s.duration}.')
    source = 'the best teacher' if top_s.teachers == [best_t.name] else f'{", ".join(top_s.teachers)}, not the best'
    text = (f'The poorest teacher, {worst_t.name} ({_pct(worst_t_acc)}), taught {worst_s.name} to '
            f'{_pct(worst_s_acc)} vs {_pct(base.final_acc)} for {base.name}, the baseline of the same duration; '
            f'the best student ({top_s.name}, {_pct(top_s.final_acc)}) learnt from {source}.')
    return Finding('poor_teacher', claim, HOLDS if worst_s_acc > base.final_acc else FAILS, text)


def teacher_time_counted(a: Analysis) -> Finding:
    claim = "Counting the teachers' own training, teacher + student can still beat training the baseline longer"
    rows = [row for row in teacher_cost_table(a).rows if isinstance(row[7], float)]
    runs = [r for r in a.results.values() if r.teachers and r.speedup_with_teachers is not None]
    if not rows and not runs:
        return Finding('teacher_time', claim, UNMEASURED,
                       'Needs distilled runs whose teachers have records, and baseline runs.')
    parts = []
    verdict = FAILS
    if rows:
        best = max(rows, key=lambda row: row[7])
        parts.append(f'best: {best[0]} ({_pct(best[1])}) took {_s(best[4])} with its teachers vs {_s(best[5])} for '
                     f'{best[6]} to the same accuracy ({best[7]:.2f}x)')
        verdict = HOLDS if best[7] > 1.0 else FAILS
    else:
        parts.append('no baseline run reaches the distilled runs\' accuracy, so "training the baseline longer" '
                     'is not measured')
        verdict = UNMEASURED
    if runs:
        top = max(runs, key=lambda r: r.speedup_with_teachers or 0.0)
        parts.append(f'time-to-target with teacher time: best {top.name} {_x(top.speedup_with_teachers)}')
    return Finding('teacher_time', claim, verdict, '; '.join(parts) + '.')


def random_one_pool(a: Analysis) -> Finding:
    claim = 'A pool sampling one teacher per step (random_1) keeps the ensemble\'s benefit at one teacher\'s cost'
    by_mode = {r.pool_mode: r for r in a.tagged('pool') if r.final_acc is not None}
    r1, single, every = by_mode.get('random_1'), by_mode.get('single'), by_mode.get('all')
    if r1 is None or single is None:
        return Finding('random_1', claim, UNMEASURED, 'Needs pool runs tagged pool: random_1 and a single teacher.')
    text = (f'random_1 {_pct(r1.final_acc)} in {_s(r1.train_s)} (time-to-target {_x(r1.speedup)}) vs single '
            f'teacher {_pct(single.final_acc)} in {_s(single.train_s)} ({_x(single.speedup)})')
    ok = r1.final_acc > single.final_acc  # type: ignore[operator]
    if every is not None:
        text += f' vs all {_pct(every.final_acc)} in {_s(every.train_s)} ({_x(every.speedup)})'
        ok = ok and r1.train_s is not None and every.train_s is not None and r1.train_s < every.train_s
    return Finding('random_1', claim, HOLDS if ok else FAILS,
                   text + '. Rule: holds if random_1 beats the single teacher on accuracy and (when measured) '
                   'trains faster than averaging all.')


def matryoshka(a: Analysis) -> Finding:
    claim = 'Matryoshka: a generation distilled from the pool beats the pool it learnt from'
    parts, verdicts = [], []
    for entry, generations in a.matryoshka.items():
        accs: list[list[float]] = [
            [acc for acc in (a.results[n].final_acc for n in names if n in a.results) if acc is not None]
            for names in generations]
        for g in range(1, len(accs)):
            now, before = accs[g], accs[g - 1]
            if now and before:
                verdicts.append(max(now) > max(before))
                parts.append(f'{entry} generation {g} vs {g - 1}: best {_pct(max(now))} vs {_pct(max(before))}, '
                             f'mean {_pct(sum(now) / len(now))} vs {_pct(sum(before) / len(before))}')
    if not verdicts:
        return Finding('matryoshka', claim, UNMEASURED, 'Needs a Matryoshka entry with a trained generation.')
    verdict = HOLDS if all(verdicts) else FAILS if not any(verdicts) else MIXED
    return Finding('matryoshka', claim, verdict, '; '.join(parts) + ' (rule: best member of a generation vs best '
                   'of the one before).')


def all_findings(a: Analysis) -> list[Finding]:
    return [kd_speeds_up(a), mse_short_kl_long(a), early_stop(a), poor_teacher(a), teacher_time_counted(a),
            random_one_pool(a), matryoshka(a)]
