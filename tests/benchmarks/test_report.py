"""Studies repeated with seeds: replicas and their interleaved order, per-seed pairing, intervals and verdicts against
hand computations on synthetic records, and the long-regime report written and regenerated from its copies."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.study import engine as driver
from benchmarks.core.intervals import mean_interval, ratio_interval
from benchmarks.kd.report import build, findings, speed_cell
from benchmarks.core.repeats import load_repeats, threshold_verdict
from benchmarks.study.spec import StudyError, load_study
from tests.helpers.run_records import ORIGINAL_ROOT, write_run
from tests.helpers.study_runs import FakeRunner

T2 = 4.303  # t(0.975, 2)

STUDY = f"""
name: rep
runs_root: {ORIGINAL_ROOT}
baseline: teacher-lr0.1
seeds: [0, 1, 2]
runs:
  - {{name: teacher-lr0.1, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, tags: [teacher, baseline]}}
  - {{name: teacher-lr0.4, recipe: yamls/fashion_mnist/teacher_lr0.4.yaml, tags: [teacher]}}
  - {{name: baseline-2of4, recipe: yamls/fashion_mnist/teacher_lr0.1.yaml, tags: [baseline]}}
  - {{name: kd-mse-2of4, recipe: yamls/fashion_mnist/kd_mse.yaml, teachers: [teacher-lr0.1], tags: [kd]}}
  - {{name: kd-kl-2of4, recipe: yamls/fashion_mnist/kd_kl.yaml, teachers: [teacher-lr0.1], tags: [kd]}}
  - {{name: kd-mse-2of4-from-lr0.4, recipe: yamls/fashion_mnist/kd_mse.yaml, teachers: [teacher-lr0.4],
      tags: [teacher_choice]}}
"""


@pytest.fixture
def repeated(tmp_path: Path) -> tuple[Path, Path]:
    """Three seeds. Baseline: 0.90 at 50 s in every seed. kd-mse-2of4 crosses 0.90 at 20, 25, 20 s (speedups 2.5,
    2.0, 2.5) and ends at 0.95; baseline-2of4 ends at 0.88, 0.87, 0.89; kd-kl-2of4 never reaches 0.90; the lr 0.4
    teacher (0.80) teaches a student that ends 0.01 below kd-mse-2of4 in every seed."""
    root = tmp_path / 'records'
    for s, (cross_end, base_end) in enumerate([(30, .88), (40, .87), (30, .89)]):
        seed = f'seed{s}'
        write_run(root, f'{seed}/teacher-lr0.1', [(25, .85), (50, .90)], duration='930ba')
        write_run(root, f'{seed}/teacher-lr0.4', [(25, .75), (50, .80)], duration='930ba', lr=0.4)
        write_run(root, f'{seed}/baseline-2of4', [(25, base_end)], duration='465ba')
        teacher = f'{ORIGINAL_ROOT}/{seed}/teacher-lr0.1/checkpoints/latest-rank0.pt'
        # 0.85 at 10 s -> 0.95 at cross_end: 0.90 reached half-way, at 20 s (30) or 25 s (40)
        write_run(root, f'{seed}/kd-mse-2of4', [(10, .85), (cross_end, .95)], duration='465ba', teachers=[teacher],
                  kd={'kd_loss': 'mse'})
        write_run(root, f'{seed}/kd-kl-2of4', [(10, .85), (20, .89)], duration='465ba', teachers=[teacher])
        poor = f'{ORIGINAL_ROOT}/{seed}/teacher-lr0.4/checkpoints/latest-rank0.pt'
        write_run(root, f'{seed}/kd-mse-2of4-from-lr0.4', [(10, .85), (cross_end, .94)], duration='465ba',
                  teachers=[poor], kd={'kd_loss': 'mse'})
    path = tmp_path / 'rep.yaml'
    path.write_text(STUDY)
    return root, path


def test_replicas_interleave_seeds_with_their_own_teachers(tmp_path, repeated):
    _, path = repeated
    study = load_study(path, runs_root=str(tmp_path / 'runs'))
    replicas = study.replicas()
    assert [r.runs_root for r in replicas] == [str(tmp_path / 'runs' / f'seed{s}') for s in (0, 1, 2)]
    assert [r.overrides['seed'] for r in replicas] == [0, 1, 2] and replicas[1].name == 'rep-s1'
    order = []
    for replica in replicas:  # what main() does: every run of seed 0, then of seed 1, ...
        runner = FakeRunner(replica)
        driver.run_study(replica, runner=runner)
        order += [(replica.seed, name, dict(o.split('=', 1) for o in args)) for name, args in runner.calls]
    assert [(s, n) for s, n, _ in order[:6]] == [(0, 'teacher-lr0.1'), (0, 'teacher-lr0.4'), (0, 'baseline-2of4'),
                                                 (0, 'kd-mse-2of4'), (0, 'kd-kl-2of4'), (0, 'kd-mse-2of4-from-lr0.4')]
    assert [s for s, _, _ in order] == [0] * 6 + [1] * 6 + [2] * 6
    student = next(o for s, n, o in order if s == 2 and n == 'kd-mse-2of4')
    assert student['seed'] == '2' and 'seed2/teacher-lr0.1/checkpoints' in student[
        'algorithms.knowledge_distillation.teachers']


@pytest.mark.parametrize('seeds, message', [('[0, 0]', r'seeds: expected a list of distinct ints, got \[0, 0\]'),
                                            ('[0, "a"]', r"seeds\[1\]: expected int, got str 'a'"),
                                            ('3', 'seeds: expected list, got int 3')])
def test_bad_seeds_are_refused(tmp_path, seeds, message):
    path = tmp_path / 'bad.yaml'
    path.write_text(STUDY.replace('seeds: [0, 1, 2]', f'seeds: {seeds}'))
    with pytest.raises(StudyError, match=message):
        load_study(path)


def test_intervals_and_verdicts_by_hand(repeated):
    root, path = repeated
    r = load_repeats(load_study(path), str(root))
    assert r.seeds == [0, 1, 2] and r.targets().mean == pytest.approx(0.90)
    mse = r.stats('kd-mse-2of4')
    assert mse.time_to_target == pytest.approx([20.0, 25.0, 20.0]) and mse.speedup == pytest.approx([2.5, 2.0, 2.5])
    sp = mse.interval('speedup')  # a ratio: on the log scale, logs ln 2.5, ln 2, ln 2.5
    logs = [math.log(2.5), math.log(2.0), math.log(2.5)]
    m = sum(logs) / 3
    half = T2 * math.sqrt(sum((v - m) ** 2 for v in logs) / 2) / math.sqrt(3)
    assert sp.mean == pytest.approx((2.5 * 2.0 * 2.5) ** (1 / 3))  # the geometric mean, 2.32
    assert (sp.lo, sp.hi) == (pytest.approx(math.exp(m - half)), pytest.approx(math.exp(m + half)))
    assert threshold_verdict(mse, 'speedup', 2.0) == ('within noise', sp)  # [1.69, 3.20] straddles 2
    assert threshold_verdict(mse, 'speedup', 1.0)[0] == 'holds'
    kl = r.stats('kd-kl-2of4')
    assert kl.reached == 0 and threshold_verdict(kl, 'speedup', 1.0) == ('does not hold', None)
    assert speed_cell(kl) == 'reached in 0 of 3 seeds'
    diff = r.paired(['kd-mse-2of4'], ['baseline-2of4'])  # 0.07, 0.08, 0.06
    assert diff.mean == pytest.approx(0.07) and diff.hi - diff.mean == pytest.approx(T2 * 0.01 / math.sqrt(3))
    poor = r.paired(['kd-mse-2of4-from-lr0.4'], ['kd-mse-2of4'])
    assert poor.mean == pytest.approx(-0.01) and poor.hi - poor.lo == pytest.approx(0, abs=1e-9)


def test_findings_follow_the_intervals(repeated):
    root, path = repeated
    found = {f.claim: f for f in findings(load_repeats(load_study(path), str(root)))}
    goal = next(f for c, f in found.items() if c.startswith('A distilled student reaches'))
    assert goal.verdict == 'within noise' and '`kd-mse-2of4` 2.32 [1.69, 3.20]x' in goal.evidence
    assert found['KD-MSE at 2/4 of the duration beats the baseline trained as long'].verdict == 'holds'
    assert found['KD-KL at 2/4 of the duration beats the baseline trained as long'].verdict == 'within noise'
    teacher = found['A less accurate teacher teaches as well (its student is not worse)']
    assert teacher.verdict == 'does not hold'  # 0.01 lower in every seed: the interval lies below zero


def test_report_is_written_and_regenerates_from_its_copies(repeated, tmp_path):
    root, path = repeated
    out = tmp_path / 'out'
    first = build(str(root), str(path), str(out))
    text = (out / 'report.md').read_text()
    assert '3 seeds' in text and 'within noise' in text and 'reached in 0 of 3' in text
    assert (out / 'speedup_vs_duration.png').stat().st_size > 0
    assert (out / 'runs' / 'seed2' / 'kd-mse-2of4' / 'record.jsonl').is_file()
    again = build(str(out / 'runs'), str(path), str(tmp_path / 'out2'))
    assert again['findings'] == first['findings']
    assert json.loads((out / 'summary.json').read_text())['seeds'] == [0, 1, 2]


def test_mean_interval_reference() -> None:
    iv = mean_interval([1.0, 2.0, 3.0])  # sd 1, se 1/sqrt(3)
    assert (iv.lo, iv.hi) == pytest.approx((2 - T2 / math.sqrt(3), 2 + T2 / math.sqrt(3)))


def test_interval_fmt_never_writes_minus_zero() -> None:
    from benchmarks.core.intervals import Interval
    assert Interval(60.2, -0.4, 120.3, 3).fmt(0) == '60 [0, 120]'  # -0.4 rounds to 0, not '-0'
    assert Interval(-3.0, -5.0, -1.0, 2).fmt(1) == '-3.0 [-5.0, -1.0]'


def test_ratio_interval_is_exp_of_the_t_interval_of_logs_and_never_negative() -> None:
    # By hand: ratios 2 and 8, logs ln 2 and 3 ln 2; mean 2 ln 2 (geometric mean 4); sd sqrt(2) ln 2, se ln 2;
    # t(0.975, 1) = 12.706: interval 4 * 2^(-+12.706).
    iv = ratio_interval([2.0, 8.0])
    assert iv.mean == pytest.approx(4.0) and iv.n == 2
    assert (iv.lo, iv.hi) == (pytest.approx(4 * 2 ** -12.706), pytest.approx(4 * 2 ** 12.706))
    # Against exp of mean_interval of the logs, on the kind of spread: the linear interval goes negative
    # (no ratio can), the log-scale one does not, and it is symmetric in log: 1/x gives 1/hi, 1/lo.
    for values in ([0.6, 2.0, 4.33], [1.1, 1.3, 1.2, 5.0], [0.2, 9.0], [2.5, 2.0, 2.5]):
        logs = mean_interval([math.log(v) for v in values])
        iv = ratio_interval(values)
        assert (iv.mean, iv.lo, iv.hi) == (pytest.approx(math.exp(logs.mean)), pytest.approx(math.exp(logs.lo)),
                                           pytest.approx(math.exp(logs.hi)))
        assert 0 < iv.lo <= iv.mean <= iv.hi
        inverse = ratio_interval([1 / v for v in values])
        assert (inverse.lo, inverse.hi) == (pytest.approx(1 / iv.hi), pytest.approx(1 / iv.lo))
    assert mean_interval([0.6, 2.0, 4.33]).lo < 0 < ratio_interval([0.6, 2.0, 4.33]).lo
    one = ratio_interval([3.0])
    assert (one.mean, one.lo, one.hi) == (pytest.approx(3.0), None, None)
    with pytest.raises(ValueError, match='positive'):
        ratio_interval([1.0, 0.0])


def test_commands_point_the_regeneration_at_the_committed_copies():
    from benchmarks.core.reporting import command
    cmd = command('benchmarks.x.report', 'runs/a b', 'res/x', [('--teachers', None)])
    regen = command('benchmarks.x.report', Path('res/x') / 'runs', Path('res/x/'), [('--teachers', None)])
    assert cmd == "python -m benchmarks.x.report 'runs/a b' --out res/x"
    assert regen == 'python -m benchmarks.x.report res/x/runs --out res/x'  # no teachers given: none
    assert command('m', 'r', 'o', [('--study', 's.yaml'), ('--teachers', 'o/teachers')]) == \
        'python -m m r --study s.yaml --teachers o/teachers --out o'
