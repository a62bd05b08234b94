"""The BERT study's fine-tuning phase and report: which checkpoints are fine-tuned, and the fine-tuned
time-to-target and speedups against hand computations on synthetic run records (2 seeds)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from benchmarks.bert.report import build, finetune_series, finetune_stats
from benchmarks.bert.study import FINETUNE_METRIC, finetune_jobs
from benchmarks.study.spec import load_study

MLM = 'eval/MaskedAccuracy'
T1 = 12.706  # t(0.975, 1)

STUDY = """
name: bert_syn
runs_root: {root}
baseline: baseline
metric: eval/MaskedAccuracy
seeds: [0, 1]
runs:
  - {{name: baseline, recipe: yamls/sotu/tiny_bert.yaml, tags: [baseline]}}
  - {{name: kd-kl-30, recipe: yamls/sotu/tiny_bert_kd_30.yaml, tags: [kd, early_stop]}}
"""


def write_pretraining(folder: Path, points: list[tuple[int, float, float]], checkpoints: bool = True) -> None:
    """A pre-training run folder: config, one record per (step, train wall-clock, MLM accuracy), summary, and empty
    checkpoint files at those steps (plus the latest-rank0.pt link Composer makes)."""
    folder.mkdir(parents=True)
    (folder / 'config.yaml').write_text(yaml.safe_dump({'run_dir': str(folder), 'max_duration': '1000ba',
                                                        'optimizer': {'lr': 0.002}, 'algorithms': {}}))
    lines = [{'step': s, 'train_wct_s': t, 'total_wct_s': t + 1, 'cpu_s': t, 'metrics': {MLM: a}}
             for s, t, a in points]
    (folder / 'record.jsonl').write_text(''.join(json.dumps(x) + '\n' for x in lines))
    (folder / 'summary.json').write_text(json.dumps({**lines[-1], 'finished': True, 'final_metrics':
                                                     lines[-1]['metrics']}))
    if checkpoints:
        (folder / 'checkpoints').mkdir()
        for s, _, _ in points:
            (folder / 'checkpoints' / f'ep0-ba{s}-rank0.pt').write_bytes(b'')
        (folder / 'checkpoints' / 'latest-rank0.pt').symlink_to(f'ep0-ba{points[-1][0]}-rank0.pt')


def write_finetuned(folder: Path, score: float) -> None:
    folder.mkdir(parents=True)
    (folder / 'config.yaml').write_text(yaml.safe_dump({'run_dir': str(folder), 'max_duration': '2ep'}))
    (folder / 'record.jsonl').write_text(json.dumps({'step': 10, 'train_wct_s': 5.0,
                                                     'metrics': {FINETUNE_METRIC: score}}) + '\n')
    (folder / 'summary.json').write_text(json.dumps({'finished': True, 'train_wct_s': 5.0,
                                                     'final_metrics': {FINETUNE_METRIC: score}}))


@pytest.fixture
def study_root(tmp_path):
    """Seed 0: baseline final at step 1000, 50 s; KD checkpoints 500..1000 at 5 s a 100 steps from 27 s.
    Seed 1: baseline final 60 s. MLM accuracies make KD cross the baseline's final value by hand-known times."""
    root = tmp_path / 'runs'
    steps = list(range(100, 1001, 100))
    for seed, base_t in ((0, 50.0), (1, 60.0)):
        s = root / f'seed{seed}'
        write_pretraining(s / 'baseline', [(st, base_t * st / 1000, 0.05 + 0.1 * st / 1000) for st in steps])
        write_pretraining(s / 'kd-kl-30', [(st, 2.0 + 5.0 * st / 100, 0.06 + 0.1 * st / 1000) for st in steps])
    study = tmp_path / 'study.yaml'
    study.write_text(STUDY.format(root=root))
    return root, study


def test_finetune_jobs_pick_the_students_fractions_and_the_baselines_end(study_root):
    root, study_path = study_root
    jobs = finetune_jobs(load_study(str(study_path)), str(root))
    by: dict[tuple[int, str], list[int]] = {}
    for j in jobs:
        by.setdefault((j.seed, j.run), []).append(j.step)
    assert by[(0, 'baseline')] == [1000] and by[(1, 'baseline')] == [1000]
    assert by[(0, 'kd-kl-30')] == [500, 600, 700, 800, 1000]  # FRACTIONS: 0.5, 0.6, 0.7, 0.8, 1.0
    assert [j.seed for j in jobs][:6] == [0] * 6  # seed by seed, as the study ran
    only = finetune_jobs(load_study(str(study_path)), str(root), fractions=(0.5,), runs=['nothing'])
    assert [(j.run, j.step) for j in only] == [('baseline', 1000)] * 2  # the baseline's final checkpoint always
    job = next(j for j in jobs if j.run == 'kd-kl-30' and j.step == 600 and j.seed == 1)
    assert job.checkpoint == root / 'seed1' / 'kd-kl-30' / 'checkpoints' / 'ep0-ba600-rank0.pt'
    assert job.out == root / 'seed1' / 'finetune' / 'kd-kl-30' / 'ba600'


def test_finetuned_time_to_target_and_speedup_by_hand(study_root, tmp_path):
    root, study_path = study_root
    study = load_study(str(study_path))
    # seed 0: baseline's final checkpoint fine-tunes to 0.80 (pre-training 50 s); KD at steps 500 (27 s) 0.78,
    # 600 (32 s) 0.81 -> crossing at 27 + (0.80 - 0.78) / (0.81 - 0.78) * 5 = 30.333 s -> speedup 50 / 30.333.
    # seed 1: baseline 0.82 (60 s); KD's first checkpoint (500, 27 s) already 0.83 -> 27 s -> speedup 60 / 27.
    write_finetuned(root / 'seed0' / 'finetune' / 'baseline' / 'ba1000', 0.80)
    write_finetuned(root / 'seed1' / 'finetune' / 'baseline' / 'ba1000', 0.82)
    for seed, scores in ((0, [0.78, 0.81, 0.82]), (1, [0.83, 0.84, 0.84])):
        for step, score in zip((500, 600, 1000), scores):
            write_finetuned(root / f'seed{seed}' / 'finetune' / 'kd-kl-30' / f'ba{step}', score)
    series = finetune_series(study, str(root))
    assert series['kd-kl-30'].curves[0] == [(27.0, 0.78), (32.0, 0.81), (52.0, 0.82)]
    stats = finetune_stats(series, 'baseline')
    s0, s1 = 50 / (27 + 2 / 3 * 5), 60 / 27
    assert stats['kd-kl-30']['ttt'] == pytest.approx([27 + 2 / 3 * 5, 27.0])
    assert stats['kd-kl-30']['speedup'] == pytest.approx([s0, s1])
    assert stats['baseline']['speedup'] == pytest.approx([1.0, 1.0])
    out = tmp_path / 'report'
    summary = build(str(root), str(study_path), str(out))
    report = (out / 'report.md').read_text()
    # a ratio: geometric mean and exp of the t-interval of the logs (sd of two logs = |l0 - l1| / sqrt(2))
    log_mean = (math.log(s0) + math.log(s1)) / 2
    half = T1 * abs(math.log(s0) - math.log(s1)) / math.sqrt(2) / math.sqrt(2)
    gm, lo, hi = math.exp(log_mean), math.exp(log_mean - half), math.exp(log_mean + half)
    assert f'{gm:.2f} [{lo:.2f}, {hi:.2f}]x' in report and gm == pytest.approx(math.sqrt(s0 * s1))
    # 1.4 is inside the interval: "within noise"
    assert "kd-kl-30 reaches the baseline's fine-tuned score >= 1.4x faster** (the seed's KD-30% on GLUE: 1.42x): " \
           '**within noise**' in report
    assert 'finetune/' not in report.split('## Pre-training')[1].split('## Fine-tuned')[0]  # not pre-training runs
    # MLM: KD's accuracy 0.06 + 0.1 s/1000 reaches the baseline's final 0.15 at step 900 (47 s) vs 50 / 60 s
    assert summary['mlm']['kd-kl-30']['speedup'] == pytest.approx([50 / 47, 60 / 47])
    regen = out / 'again'
    build(str(out / 'runs'), str(study_path), str(regen))
    assert (regen / 'summary.json').read_text().count('"speedup"') == (out / 'summary.json').read_text().count(
        '"speedup"')
    again = json.loads((regen / 'summary.json').read_text())
    assert again['finetuned'] == json.loads((out / 'summary.json').read_text())['finetuned']


def test_finetune_runs_each_unfinished_job_through_train_stage(study_root, monkeypatch):
    import recipes.core.cli as cli
    from benchmarks.bert import study as bert_study

    root, study_path = study_root
    seen = []
    monkeypatch.setattr(cli, 'train_stage', lambda cfg: seen.append(cfg))
    write_finetuned(root / 'seed0' / 'finetune' / 'baseline' / 'ba1000', 0.80)  # finished: skipped
    assert bert_study.main([str(study_path), '--fractions', '0.5', '--only', 'kd-kl-30']) == 0
    assert len(seen) == 3  # seed 0: KD at 500; seed 1: baseline at 1000, KD at 500
    first = seen[0]
    assert str(first['model']['pretrained']).endswith('seed0/kd-kl-30/checkpoints/ep0-ba500-rank0.pt')
    assert str(first['run_dir']).endswith('seed0/finetune/kd-kl-30/ba500') and first['seed'] == 0
    assert first['save_folder'] is None and first['run_name'] == 'finetune-s0-kd-kl-30-ba500'
    assert bert_study.main([str(study_path.parent / 'missing.yaml')]) == 2


def test_finetune_checks_every_job_before_the_first_trains(study_root, monkeypatch, capsys):
    import recipes.core.cli as cli
    from benchmarks.bert import study as bert_study

    root, study_path = study_root
    seen = []
    monkeypatch.setattr(cli, 'train_stage', lambda cfg: seen.append(cfg))
    assert bert_study.main([str(study_path), '--fractions', '0.5', '--set', 'optimizer.lrr=0.1']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and 'optimizer.lrr' in err and '\n' not in err, err
    assert seen == []  # no fine-tune trained before the bad key was found
